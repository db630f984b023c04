"""maskcls import: UTKFace names, a generic CSV and folder-per-class layouts round-trip into --extra
manifests, face lists and the competition layout; bad rows are reported with their line and reason."""

from __future__ import annotations

import filecmp
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from maskcls.cli import app
from maskcls.core.labels import AgeThresholds, Mask
from maskcls.data.importers import import_photos, parse_utkface_name, read_photos
from maskcls.data.layout import DataError, read_extra, read_train

runner = CliRunner(env={"COLUMNS": "300"})


def _photo(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(path)
    return path


def test_utkface_names_parse_and_bad_names_say_why():
    assert parse_utkface_name("65_0_2_20170116174525125.jpg.chip.jpg") == (65, "male", "Asian")
    assert parse_utkface_name("/x/y/25_1_4_2017.jpg") == (25, "female", "Other")
    for name, reason in (
        ("face.jpg", "not age_gender_race_date"),
        ("200_0_0_1.jpg", "impossible age 200"),
        ("30_2_0_1.jpg", "gender code 2"),
        ("30_0_7_1.jpg", "race code 7"),
    ):
        with pytest.raises(ValueError, match=reason):
            parse_utkface_name(name)


def test_utkface_folder_round_trips_to_faces_and_extra(tmp_path):
    folder = tmp_path / "utk"
    good = {
        "65_0_2_1.jpg": (65, "male", "Asian"),
        "25_1_0_2.jpg": (25, "female", "White"),
        "sub/40_1_1_3.png": (40, "female", "Black"),
    }
    for k, name in enumerate(good):
        _photo(folder / name, k)
    _photo(folder / "holiday.jpg")
    with pytest.raises(DataError, match=r"holiday.jpg: file name is not age_gender_race_date"):
        import_photos(folder, tmp_path / "faces.csv", "faces")
    assert not (tmp_path / "faces.csv").exists()  # fail: nothing written

    summary = import_photos(folder, tmp_path / "faces.csv", "faces", on_bad_row="skip")
    assert summary["photos"] == 3 and len(summary["problems"]) == 1
    faces = pd.read_csv(tmp_path / "faces.csv")
    assert {row.path.split("utk/")[1]: (row.age, row.gender, row.race) for row in faces.itertuples()} == good
    assert "holiday.jpg" in (tmp_path / "faces.csv.problems.csv").read_text()
    again, problems = read_photos(tmp_path / "faces.csv")  # the face list reads back as the same labels
    assert not problems and sorted(again["age"]) == [25, 40, 65]

    import_photos(folder, tmp_path / "extra.csv", "extra", mask="not_wear", on_bad_row="skip")
    extra, problems = read_extra(tmp_path / "extra.csv")
    assert not problems and len(extra) == 3 and (extra["mask"] == Mask.NOT_WEAR).all()
    by_age = extra.set_index("age")
    assert (
        by_age.loc[65, "gender"] == 0
        and by_age.loc[65, "age_group"] == 2
        and by_age.loc[25, "gender"] == 1
        and by_age.loc[40, "age_group"] == 1
    )


def test_generic_csv_reports_bad_rows_by_line(tmp_path):
    for k in range(3):
        _photo(tmp_path / f"p{k}.jpg", k)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "in.csv").write_text(
        "path,gender,age,mask\n"
        "p0.jpg,female,70,wear\n"
        "p1.jpg,f,31,no_mask\n"
        "p2.jpg,robot,20,wear\n"
        "p0.jpg,male,old,wear\n"
        "missing.jpg,male,20,wear\n"
        "notes.txt,male,20,wear\n"
        "p1.jpg,male,20,sideways\n"
    )
    with pytest.raises(DataError) as failure:
        import_photos(tmp_path / "in.csv", tmp_path / "out.csv", "extra")
    message = str(failure.value)
    for line, reason in (
        (4, "unknown gender 'robot'"),
        (5, "age 'old' is not an integer"),
        (6, "missing.jpg is missing"),
        (7, "not an image file"),
        (8, "unknown mask state 'sideways'"),
    ):
        assert re.search(rf"in\.csv:{line}: [^\n]*{re.escape(reason)}", message), (line, reason)
    summary = import_photos(
        tmp_path / "in.csv", tmp_path / "out.csv", "extra", on_bad_row="skip", thresholds=AgeThresholds(30, 58)
    )
    assert summary["photos"] == 2
    extra = pd.read_csv(tmp_path / "out.csv")
    assert extra["label"].tolist() == [0 * 6 + 1 * 3 + 2, 2 * 6 + 1 * 3 + 1] and extra["image_id"].tolist() == [
        "p0.jpg",
        "p1.jpg",
    ]


def test_folder_per_class_round_trip_and_unknown_folders(tmp_path):
    source = tmp_path / "classes"
    _photo(source / "mask_worn" / "70_0_0_1.jpg", 1)
    _photo(source / "incorrect_mask" / "22_1_2_1.jpg", 2)
    _photo(source / "without_mask" / "45_1_3_1.jpg", 3)
    _photo(source / "sunglasses" / "30_0_0_1.jpg", 4)
    _photo(source / "loose.jpg", 5)
    summary = import_photos(source, tmp_path / "extra.csv", "extra", on_bad_row="skip")
    reasons = " ".join(p.reason for p in summary["problems"])
    assert "'sunglasses' is not a mask class" in reasons and "outside the class folders" in reasons
    extra, _ = read_extra(tmp_path / "extra.csv")
    labels = dict(zip(extra["image_id"], extra["label"], strict=False))
    assert labels == {
        "extra:mask_worn/70_0_0_1.jpg": 2,
        "extra:incorrect_mask/22_1_2_1.jpg": 6 + 3,
        "extra:without_mask/45_1_3_1.jpg": 12 + 3 + 1,
    }


def test_unlabelled_class_folders_take_labels_from_a_labels_csv(tmp_path):
    source = tmp_path / "classes"
    worn = _photo(source / "mask_worn" / "a.jpg", 1)
    plain = _photo(source / "no_mask" / "b.jpg", 2)
    with pytest.raises(DataError, match="no gender, age for --to extra"):
        import_photos(source, tmp_path / "extra.csv", "extra")
    (tmp_path / "labels.csv").write_text(f"path,gender,age\n{worn},male,66\n{plain},female,19\n")
    import_photos(source, tmp_path / "extra.csv", "extra", labels=tmp_path / "labels.csv")
    assert pd.read_csv(tmp_path / "extra.csv")["label"].tolist() == [2, 2 * 6 + 3]


def test_competition_layout_round_trips(demo_dir, tmp_path):
    original, _ = read_train(demo_dir / "train")
    persons = original["person_id"].unique()[:4]
    part = original[original["person_id"].isin(persons)]
    table = pd.DataFrame(
        {
            "path": part["path"],
            "person": part["person_id"],
            "gender": np.where(part["gender"] == 1, "female", "male"),
            "age": part["age"],
            "race": part["race"],
            "mask": part["mask"].map({0: "wear", 1: "incorrect", 2: "not_wear"}),
        }
    )
    table.to_csv(tmp_path / "export.csv", index=False)
    summary = import_photos(tmp_path / "export.csv", tmp_path / "layout", "layout")
    assert summary["persons"] == 4 and summary["photos"] == 28
    imported, problems = read_train(tmp_path / "layout")
    assert not problems
    key = ["person_id", "stem"]
    merged = imported.merge(part, on=key, suffixes=("", "_original"))
    assert len(merged) == 28 and (merged["label"] == merged["label_original"]).all()
    assert all(filecmp.cmp(a, b, shallow=False) for a, b in zip(merged["path"], merged["path_original"], strict=False))

    table[table["path"] != part["path"].iloc[0]].to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(DataError, match="has 4 worn, 1 incorrect and 1 unmasked photos"):
        import_photos(tmp_path / "short.csv", tmp_path / "layout2", "layout")


def test_import_cli(tmp_path):
    folder = tmp_path / "utk"
    _photo(folder / "61_1_0_1.jpg")
    result = runner.invoke(app, ["import", str(folder), "--out", str(tmp_path / "extra.csv"), "--mask", "incorrect"])
    assert result.exit_code == 0, result.output
    assert "imported 1 photos" in result.output and pd.read_csv(tmp_path / "extra.csv")["label"].tolist() == [6 + 3 + 2]
    again = runner.invoke(app, ["import", str(folder), "--out", str(tmp_path / "extra.csv")])
    assert again.exit_code == 2 and "exists; use --force" in again.output
    bad = runner.invoke(app, ["import", str(folder), "--out", str(tmp_path / "x.csv"), "--to", "spreadsheet"])
    assert bad.exit_code == 2 and "unknown import target 'spreadsheet'" in bad.output
