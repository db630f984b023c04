"""data.face_crop: photos are cut to the face found while the cache is decoded; the boxes live in the
cache (whose key includes the setting); photos without a face are used whole and counted in the
train / predict output and the run summary."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_DATA, TINY
from drawn_faces import noise_photo
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from maskcls.cli import app
from maskcls.core.config import DataConfig
from maskcls.core.tables import PROB_COLUMNS
from maskcls.data.cache import build_cache, cache_directory
from maskcls.data.framing import FaceCrop, Framing
from maskcls.export.runtime import OnnxModel
from maskcls.serve.app import create_app
from maskcls.serve.settings import ServeSettings

PLAIN_FACES = SHARED_DATA / "plain_faces"
runner = CliRunner(env={"COLUMNS": "300"})


@pytest.mark.skipif(not PLAIN_FACES.is_dir(), reason=f"shared data not found at {PLAIN_FACES}")
def test_face_is_found_cropped_and_cached_with_its_box(tmp_path):
    pytest.importorskip("dlib")
    face = Image.open(PLAIN_FACES / "images" / "00000.jpg").convert("RGB")
    scene = Image.new("RGB", (320, 240), (90, 120, 90))
    scene.paste(face, (170, 60))  # the face fills x 170..298, y 60..188
    scene.save(tmp_path / "scene.png")
    Image.fromarray(noise_photo(120)).save(tmp_path / "noise.png")
    frame = pd.DataFrame(
        {"image_id": ["scene", "noise"], "path": [str(tmp_path / "scene.png"), str(tmp_path / "noise.png")]}
    )
    crop = FaceCrop(margin=0.1, detector="hog", upsample=1, pad=0.0)
    cache = build_cache(frame, (48, 48), tmp_path / "cache", framing=Framing(face=crop), progress=False)
    x0, y0, x1, y1 = (int(v) for v in cache.faces[0].split())
    assert 165 <= x0 < x1 <= 305 and 55 <= y0 < y1 <= 195 and x1 - x0 > 60
    assert cache.faces[1] == "none" and cache.face_found().tolist() == [True, False]
    pixels = cache.array()
    background = np.array([90, 120, 90])
    assert (
        np.abs(pixels[0].reshape(-1, 3) - background).sum(axis=1).min() > 10
        or np.abs(pixels[0].astype(int) - background).mean() > 30
    )
    whole = np.asarray(Image.fromarray(noise_photo(120)).resize((48, 48), Image.Resampling.BILINEAR))
    assert np.array_equal(pixels[1], whole)  # no face: the whole photo
    again = build_cache(frame, (48, 48), tmp_path / "cache", framing=Framing(face=crop), progress=False)
    assert again.directory == cache.directory and again.faces == cache.faces  # read back from the index
    keys = {
        cache_directory(frame, (48, 48), tmp_path, framing=Framing(face=c))
        for c in (
            None,
            crop,
            FaceCrop(margin=0.3, detector="hog", upsample=1, pad=0.0),
            FaceCrop(margin=0.1, detector="hog", upsample=1, pad=0.25),
        )
    }
    assert len(keys) == 4


def test_face_crop_reaches_train_predict_export_and_serve(demo_dir, tmp_path):
    pytest.importorskip("dlib")
    overrides = [o for o in TINY if not o.startswith("train.epochs")] + [
        "train.epochs=1",
        "cv.train_folds=[0]",
        "data.face_crop=true",
        "data.face_detector=hog",
        "data.face_upsample=0",
    ]
    args = ["train", "--data", str(demo_dir / "train"), "--out", str(tmp_path / "run"), "--quiet"]
    for override in overrides:
        args += ["--set", override]
    trained = runner.invoke(app, args)
    assert trained.exit_code == 0, trained.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    counts = summary["face_crop"]
    assert counts["photos"] == 420 and 0 <= counts["no_face"] <= 420
    assert f"face crop: no face found in {counts['no_face']} of 420 photos" in trained.output
    predicted = runner.invoke(
        app,
        [
            "predict",
            "--run",
            str(tmp_path / "run"),
            "--data",
            str(demo_dir / "eval"),
            "--out",
            str(tmp_path / "pred"),
            "--quiet",
        ],
    )
    assert predicted.exit_code == 0, predicted.output
    probs = pd.read_csv(tmp_path / "pred" / "test_probs.csv")
    assert set(probs["face_found"]) <= {0.0, 1.0}
    no_face = int((probs["face_found"] == 0).sum())
    assert json.loads((tmp_path / "pred" / "predict.json").read_text())["face_crop"] == {
        "photos": len(probs),
        "no_face": no_face,
    }
    assert f"face crop: no face found in {no_face} of {len(probs)} photos" in predicted.output

    # the exported model records the face crop and its runtime and the service crop as training did
    exported = runner.invoke(
        app, ["export", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "model.onnx"), "--quiet"]
    )
    assert exported.exit_code == 0, exported.output
    model = OnnxModel(tmp_path / "model.onnx")
    assert model.metadata.input.framing == Framing.from_config(
        DataConfig(face_crop=True, face_detector="hog", face_upsample=0)
    )
    onnx = runner.invoke(
        app,
        [
            "predict",
            "--onnx",
            str(tmp_path / "model.onnx"),
            "--data",
            str(demo_dir / "eval"),
            "--out",
            str(tmp_path / "onnx"),
            "--quiet",
        ],
    )
    assert onnx.exit_code == 0, onnx.output
    onnx_probs = pd.read_csv(tmp_path / "onnx" / "test_probs.csv")
    assert onnx_probs["face_found"].tolist() == probs["face_found"].tolist()
    assert np.abs(onnx_probs[PROB_COLUMNS].to_numpy() - probs[PROB_COLUMNS].to_numpy()).max() < 1e-4
    photo = demo_dir / "eval" / "images" / probs["image_id"][0]
    with TestClient(create_app(ServeSettings(onnx=tmp_path / "model.onnx"), (model, "onnxruntime"))) as client:
        answer = client.post("/predict", files={"file": (photo.name, photo.read_bytes(), "image/jpeg")})
    assert answer.status_code == 200, answer.text
    assert (
        np.abs(np.array(answer.json()["probabilities"]) - probs.loc[0, PROB_COLUMNS].to_numpy(dtype=float)).max() < 1e-4
    )
