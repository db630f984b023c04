"""The mask renderer: where each wear mode puts the mask, on drawn faces and on real ones (dlib landmarks)."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from conftest import SHARED_DATA
from drawn_faces import drawn_face
from matplotlib.path import Path as Polygon
from PIL import Image, ImageDraw

from maskcls.synth.render import (
    COLOURS,
    KINDS,
    WEAR_MODES,
    MaskStyle,
    TemplateError,
    estimate_yaw,
    load_templates,
    mask_outline,
    random_style,
    render_mask,
)

NOSE_TIP, MOUTH = 30, list(range(48, 68))
PLAIN_FACES = SHARED_DATA / "plain_faces"


def _styles():
    return [MaskStyle(kind, next(iter(COLOURS[kind].values())), next(iter(COLOURS[kind]))) for kind in KINDS]


def _covered(rendered, landmarks, indices) -> np.ndarray:
    """Mask coverage at the landmark pixels."""
    height, width = rendered.alpha.shape
    points = np.round(landmarks[indices]).astype(int)
    return rendered.alpha[points[:, 1].clip(0, height - 1), points[:, 0].clip(0, width - 1)]


def _check_wear(image, landmarks, seed=0):
    """Covered: more than 90 % of the landmark's pixel under the mask; uncovered: less than 25 % (edges are soft)."""
    rng = np.random.default_rng(seed)
    for style in _styles():
        correct = render_mask(image, landmarks, style, "correct", rng)
        assert (_covered(correct, landmarks, [NOSE_TIP] + MOUTH) > 0.9).all(), style.name
        for wear in ("nose_exposed", "mouth_only"):
            rendered = render_mask(image, landmarks, style, wear, rng)
            assert _covered(rendered, landmarks, [NOSE_TIP])[0] < 0.25, (style.name, wear)
            assert (_covered(rendered, landmarks, MOUTH) > 0.9).all(), (style.name, wear)
        chin = render_mask(image, landmarks, style, "chin", rng)
        assert (_covered(chin, landmarks, [NOSE_TIP] + MOUTH) < 0.25).all(), style.name
        assert _covered(chin, landmarks, [8])[0] > 0.5, style.name  # the chin itself is covered


@pytest.mark.parametrize("yaw", [0.0, 0.3, -0.3])
def test_wear_modes_cover_what_they_should_on_drawn_faces(yaw):
    image, landmarks = drawn_face(128, yaw)
    _check_wear(image, landmarks)


def test_outline_polygon_contains_nose_and_mouth_only_when_worn_correctly():
    _, landmarks = drawn_face(128)
    correct = Polygon(mask_outline(landmarks, "correct"))
    assert correct.contains_points(landmarks[[NOSE_TIP] + MOUTH]).all()
    below_nose = Polygon(mask_outline(landmarks, "nose_exposed"))
    assert not below_nose.contains_point(landmarks[NOSE_TIP]) and below_nose.contains_points(landmarks[MOUTH]).all()
    on_chin = Polygon(mask_outline(landmarks, "chin"))
    assert not on_chin.contains_points(landmarks[[NOSE_TIP] + MOUTH]).any()


def test_yaw_estimate_follows_the_foreshortened_side():
    assert abs(estimate_yaw(drawn_face(128)[1])) < 0.02
    assert estimate_yaw(drawn_face(128, 0.4)[1]) > 0.1
    assert estimate_yaw(drawn_face(128, -0.4)[1]) < -0.1


def test_render_changes_only_the_mask_region_and_is_deterministic():
    image, landmarks = drawn_face(128)
    style = MaskStyle("cloth", COLOURS["cloth"]["navy"], "navy", "dots", (250, 250, 250))
    first = render_mask(image, landmarks, style, "correct", np.random.default_rng(5))
    again = render_mask(image, landmarks, style, "correct", np.random.default_rng(5))
    other = render_mask(image, landmarks, style, "correct", np.random.default_rng(6))
    assert np.array_equal(first.image, again.image) and not np.array_equal(first.image, other.image)
    untouched = first.alpha == 0
    assert np.array_equal(first.image[untouched], image[untouched])
    assert untouched[:30].all()  # the eyes and above stay as they were
    assert first.image.dtype == np.uint8 and first.image.shape == image.shape


def test_random_styles_cover_every_kind_and_name_themselves():
    rng = np.random.default_rng(0)
    styles = [random_style(rng) for _ in range(200)]
    assert {s.kind for s in styles} == set(KINDS)
    assert all(s.name.startswith(s.kind) for s in styles)
    assert any(s.pattern != "solid" for s in styles if s.kind == "cloth")
    with pytest.raises(ValueError, match="unknown wear mode"):
        mask_outline(drawn_face()[1], "upside_down")


def _draw_template(folder, colour=(255, 0, 255)):
    image = Image.new("RGBA", (200, 120), (0, 0, 0, 0))
    ImageDraw.Draw(image).rounded_rectangle((0, 0, 199, 119), radius=20, fill=colour + (255,))
    image.save(folder / "magenta.png")
    anchors = {
        "top_left": [2, 5],
        "top_middle": [100, 1],
        "top_right": [197, 5],
        "bottom_left": [5, 115],
        "bottom_middle": [100, 118],
        "bottom_right": [195, 115],
    }
    (folder / "magenta.yaml").write_text(yaml.safe_dump({"image": "magenta.png", "anchors": anchors}))
    return folder


def test_user_template_is_warped_onto_the_face(tmp_path):
    (template,) = load_templates(_draw_template(tmp_path))
    image, landmarks = drawn_face(128)
    rendered = render_mask(
        image,
        landmarks,
        MaskStyle("template", (0, 0, 0), template.name, template=template),
        "correct",
        np.random.default_rng(0),
    )
    nose = np.round(landmarks[NOSE_TIP]).astype(int)
    red, green, blue = rendered.image[nose[1] + 3, nose[0]].astype(int)
    assert red > green + 60 and blue > green + 60  # magenta, shaded
    assert (_covered(rendered, landmarks, [NOSE_TIP] + MOUTH) > 0.9).all()


def test_bad_templates_are_refused_with_the_file_named(tmp_path):
    with pytest.raises(TemplateError, match="not found"):
        load_templates(tmp_path / "nowhere")
    with pytest.raises(TemplateError, match="no template"):
        load_templates(tmp_path)
    _draw_template(tmp_path)
    spec = yaml.safe_load((tmp_path / "magenta.yaml").read_text())
    del spec["anchors"]["bottom_middle"]
    (tmp_path / "magenta.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(TemplateError, match=r"magenta.yaml: missing anchor\(s\) bottom_middle"):
        load_templates(tmp_path)
    spec["anchors"]["bottom_middle"] = [500, 10]
    (tmp_path / "magenta.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(TemplateError, match="outside the 200x120 image"):
        load_templates(tmp_path)


@pytest.mark.skipif(not PLAIN_FACES.is_dir(), reason=f"shared data not found at {PLAIN_FACES}")
def test_wear_modes_on_real_faces_with_dlib_landmarks():
    pytest.importorskip("dlib")
    from maskcls.data.faces import FaceFinder
    from maskcls.data.images import read_image

    finder = FaceFinder("hog", 1)
    checked = 0
    for path in sorted((PLAIN_FACES / "images").glob("*.jpg"))[::150][:6]:
        image = read_image(path)
        faces = finder.find(image)
        if len(faces) != 1:
            continue
        _check_wear(image, faces[0].landmarks, seed=checked)
        checked += 1
    assert checked >= 4


def test_every_wear_mode_is_known():
    assert set(WEAR_MODES) == {"correct", "nose_exposed", "chin", "mouth_only"}
