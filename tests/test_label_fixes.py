"""Label fixes: an overlay on train.csv (never modified), validated at the door, recorded in the run; runs on fixed
folds (cv.folds_file)."""

import hashlib
import json

import pandas as pd
import pytest
from conftest import TINY, invoke

from maskcls.core.labels import Mask, encode
from maskcls.data.folds import folds_from_file
from maskcls.data.label_fixes import UNKNOWN_AGE, apply_label_fixes, read_label_fixes, read_train_with_fixes
from maskcls.data.layout import DataError, read_train


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def persons(demo_dir):
    table = pd.read_csv(demo_dir / "train" / "train.csv", dtype=str)
    return table.iloc[:4].reset_index(drop=True)


def write_fixes(path, rows):
    pd.DataFrame(rows, columns=["person_id", "image_id", "field", "value", "note"]).to_csv(path, index=False)
    return path


def good_rows(persons):
    flip = "female" if persons.at[0, "gender"] == "male" else "male"
    folder = persons.at[2, "path"]
    return [
        (persons.at[0, "id"], "", "gender", flip, "looks the other way"),
        (persons.at[1, "id"], "", "age", "65", ""),
        (persons.at[2, "id"], f"{folder}/normal", "mask", "incorrect", "swapped"),
        ("", f"{folder}/incorrect_mask", "mask", "not_wear", "swapped"),
        (persons.at[3, "id"], "", "age_group", "<30", ""),
    ]


def test_fixes_change_only_the_named_labels_and_never_train_csv(demo_dir, persons, tmp_path):
    train_csv = demo_dir / "train" / "train.csv"
    before = sha256(train_csv)
    fixes = read_label_fixes(write_fixes(tmp_path / "fixes.csv", good_rows(persons)), demo_dir / "train")
    manifest, _ = read_train(demo_dir / "train")
    fixed, changes = apply_label_fixes(manifest, fixes)
    assert sha256(train_csv) == before
    by_id = fixed.set_index("image_id")
    first = fixed[fixed["person_id"] == persons.at[0, "id"]]
    assert (first["gender"] != manifest.loc[first.index, "gender"]).all() and len(first) == 7
    second = fixed[fixed["person_id"] == persons.at[1, "id"]]
    assert (second["age"] == 65).all() and (second["age_group"] == 2).all()
    folder = persons.at[2, "path"]
    assert (
        by_id.at[f"{folder}/normal", "mask"] == Mask.INCORRECT
        and by_id.at[f"{folder}/incorrect_mask", "mask"] == Mask.NOT_WEAR
    )
    fourth = fixed[fixed["person_id"] == persons.at[3, "id"]]
    assert (fourth["age_group"] == 0).all() and (fourth["age"] == UNKNOWN_AGE).all()
    assert (
        fixed["label"] == encode(fixed["mask"].to_numpy(), fixed["gender"].to_numpy(), fixed["age_group"].to_numpy())
    ).all()
    untouched = ~fixed["person_id"].isin(persons["id"])
    assert fixed[untouched].equals(manifest[untouched])
    assert set(changes["field"]) >= {"gender", "age", "mask"} and (changes["old"] != changes["new"]).all()


@pytest.mark.parametrize(
    "row, message",
    [
        (("nobody", "", "gender", "male", ""), "unknown person 'nobody'"),
        (("", "no_such_folder/normal", "mask", "wear", ""), "unknown photo 'no_such_folder/normal'"),
        (("{id}", "", "gender", "robot", ""), "gender 'robot' is not male or female"),
        (("{id}", "", "age", "-3", ""), "age '-3' is not an integer"),
        (("{id}", "", "age_group", "old", ""), "age_group 'old' is not 0, 1, 2"),
        (("", "{path}/normal", "mask", "chin", ""), "mask 'chin' is not one of"),
        (("{id}", "", "race", "x", ""), "unknown field 'race'"),
        (("", "{path}/mask9", "mask", "wear", ""), "unknown photo"),
        (("{id}", "{path}/normal", "gender", "male", ""), "leave image_id empty"),
    ],
)
def test_bad_fixes_are_refused_with_file_line_and_reason(demo_dir, persons, tmp_path, row, message):
    row = tuple(value.format(id=persons.at[0, "id"], path=persons.at[0, "path"]) for value in row)
    path = write_fixes(tmp_path / "fixes.csv", [good_rows(persons)[1], row])
    with pytest.raises(DataError) as error:
        read_label_fixes(path, demo_dir / "train")
    assert message in str(error.value) and f"{path}:3" in str(error.value)


def test_contradicting_rows_and_missing_columns_are_refused(demo_dir, persons, tmp_path):
    person = persons.at[0, "id"]
    path = write_fixes(tmp_path / "fixes.csv", [(person, "", "age", "20", ""), (person, "", "age", "70", "")])
    with pytest.raises(DataError, match="contradicts an earlier row"):
        read_label_fixes(path, demo_dir / "train")
    (tmp_path / "short.csv").write_text("person_id,value\nx,1\n")
    with pytest.raises(DataError, match="missing column"):
        read_label_fixes(tmp_path / "short.csv", demo_dir / "train")
    with pytest.raises(DataError, match="not found"):
        read_label_fixes(tmp_path / "absent.csv", demo_dir / "train")


def test_cli_errors_name_the_fixes_file(demo_dir, persons, tmp_path):
    from typer.testing import CliRunner

    from maskcls.cli import app

    path = write_fixes(tmp_path / "fixes.csv", [("nobody", "", "gender", "male", "")])
    result = CliRunner().invoke(
        app, ["train", "--data", str(demo_dir / "train"), "--out", str(tmp_path / "run"), "--label-fixes", str(path)]
    )
    assert result.exit_code == 2 and "unknown person 'nobody'" in result.output and "fixes.csv:2" in result.output
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_train_with_fixes_records_them_and_keeps_train_csv(demo_dir, persons, tmp_path):
    train_csv = demo_dir / "train" / "train.csv"
    before = sha256(train_csv)
    fixes_csv = write_fixes(tmp_path / "fixes.csv", good_rows(persons))
    args = ["train", "--data", demo_dir / "train", "--out", tmp_path / "run", "--quiet", "--label-fixes", fixes_csv]
    for override in TINY + ["train.epochs=1", "cv.train_folds=[0]"]:
        args += ["--set", override]
    invoke(*args)
    run = tmp_path / "run"
    assert sha256(train_csv) == before
    record = json.loads((run / "run.json").read_text())["label_fixes"]
    assert record["sha256"] == sha256(fixes_csv) and record["rows"] == 5 and record["path"] == str(fixes_csv.resolve())
    assert sha256(run / "label_fixes.csv") == sha256(fixes_csv)
    expected, _, _ = read_train_with_fixes(demo_dir / "train", fixes_csv=fixes_csv)
    folds = pd.read_csv(run / "folds.csv", dtype={"image_id": str})
    assert folds.set_index("image_id")["label"].equals(expected.set_index("image_id").loc[folds["image_id"], "label"])
    changes = pd.read_csv(run / "label_changes.csv", dtype={"person_id": str})
    assert (changes[changes["field"] == "gender"]["person_id"] == persons.at[0, "id"]).sum() == 7
    assert set(changes.loc[changes["field"] == "mask", "image_id"]) == {
        f"{persons.at[2, 'path']}/normal",
        f"{persons.at[2, 'path']}/incorrect_mask",
    }

    # Same persons in the same folds, whatever the labels (cv.folds_file): the unfixed manifest gets the fixed run's
    # folds.
    manifest, _ = read_train(demo_dir / "train")
    again = pd.Series(folds_from_file(manifest, run / "folds.csv", 3), index=manifest["image_id"])
    assert again.equals(folds.set_index("image_id")["fold"].loc[again.index])
    with pytest.raises(DataError, match="cv.folds=5"):
        folds_from_file(manifest, run / "folds.csv", 5)
    with pytest.raises(DataError, match="no fold for 1 person"):
        folds_from_file(
            manifest.assign(person_id=manifest["person_id"].where(manifest.index > 0, "newcomer")), run / "folds.csv", 3
        )

    # reevaluating the run judges it on the labels it trained with, and keeps the fixes
    invoke("reevaluate", "--run", run, "--tta", "flip", "--out", tmp_path / "flip", "--quiet")
    oof = pd.read_csv(tmp_path / "flip" / "oof.csv", dtype={"image_id": str})
    assert oof.set_index("image_id")["label"].equals(expected.set_index("image_id").loc[oof["image_id"], "label"])
    assert sha256(tmp_path / "flip" / "label_fixes.csv") == sha256(fixes_csv)

    # eda reads the same overlay
    invoke("eda", demo_dir / "train", "--out", tmp_path / "eda", "--label-fixes", fixes_csv)
    assert "label fixes" in (tmp_path / "eda" / "index.html").read_text()
    assert sha256(train_csv) == before
