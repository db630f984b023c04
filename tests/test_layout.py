"""The layout reader finds every problem, names the file and the reason, and fail/skip does what it says."""

import shutil

import pandas as pd
import pytest
from PIL import Image

from maskcls.core.config import load_config
from maskcls.data.layout import DataError, read_eval, read_train
from maskcls.training.kfold import prepare_training_data


def _edit_csv(train_dir, change):
    table = pd.read_csv(train_dir / "train.csv", dtype=str)
    change(table)
    table.to_csv(train_dir / "train.csv", index=False)
    return table


def _reasons(problems):
    return [f"{p.file} :: {p.reason}" for p in problems]


def test_good_layout_reads_cleanly(demo_dir):
    manifest, problems = read_train(demo_dir / "train")
    assert problems == []
    assert len(manifest) == 60 * 7
    assert manifest["image_id"].is_unique
    assert (manifest.groupby("person_id").size() == 7).all()
    assert set(manifest["stem"]) == {"mask1", "mask2", "mask3", "mask4", "mask5", "incorrect_mask", "normal"}
    assert manifest["label"].between(0, 17).all()


def test_missing_columns_stop_with_the_names(train_copy):
    _edit_csv(train_copy, lambda t: t.drop(columns=["age", "gender"], inplace=True))
    with pytest.raises(DataError, match=r"train.csv: missing column\(s\) gender, age"):
        read_train(train_copy)


def test_missing_csv(tmp_path):
    with pytest.raises(DataError, match="train.csv: file not found"):
        read_train(tmp_path)


@pytest.mark.parametrize(
    "column, value, reason",
    [
        ("gender", "robot", "unknown gender 'robot'"),
        ("age", "forty", "age 'forty' is not an integer"),
        ("age", "4.5", "age '4.5' is not an integer"),
        ("age", "-3", "impossible age -3"),
        ("age", "340", "impossible age 340"),
    ],
)
def test_bad_person_rows_name_the_csv_line(train_copy, column, value, reason):
    _edit_csv(train_copy, lambda t: t.__setitem__(column, [value] + list(t[column][1:])))
    manifest, problems = read_train(train_copy)
    assert any("train.csv:2" in p.file and reason in p.reason for p in problems), _reasons(problems)
    assert len(manifest) == 59 * 7  # that person is left out, the others are kept


def test_duplicate_ids(train_copy):
    table = _edit_csv(train_copy, lambda t: t.__setitem__("id", [t["id"][1]] + list(t["id"][1:])))
    _, problems = read_train(train_copy)
    duplicated = [p for p in problems if "duplicate id" in p.reason]
    assert {p.file.rsplit(":", 1)[1] for p in duplicated} == {"2", "3"}
    assert table["id"][0] in duplicated[0].reason


def test_missing_extra_duplicated_and_non_image_files(train_copy):
    folder = sorted((train_copy / "images").iterdir())[0]
    (folder / "mask3.jpg").unlink()
    shutil.copy(folder / "mask1.jpg", folder / "mask1.png")
    shutil.copy(folder / "mask2.jpg", folder / "mask9.jpg")
    (folder / "notes.txt").write_text("hello")
    manifest, problems = read_train(train_copy)
    reasons = _reasons(problems)
    assert any(str(folder) in r and "missing photo 'mask3'" in r for r in reasons), reasons
    assert any("photo 'mask1' appears 2 times" in r for r in reasons), reasons
    assert any("mask9.jpg" in r and "unexpected photo name 'mask9'" in r for r in reasons), reasons
    assert any("notes.txt" in r and "not an image file" in r for r in reasons), reasons
    person = manifest[manifest["path"].str.startswith(str(folder))]
    assert sorted(person["stem"]) == ["incorrect_mask", "mask2", "mask4", "mask5", "normal"]


def test_missing_person_folder(train_copy):
    folder = sorted((train_copy / "images").iterdir())[0]
    shutil.rmtree(folder)
    _, problems = read_train(train_copy)
    assert any(str(folder) in p.file and "person folder missing" in p.reason for p in problems)


def test_eval_layout_problems(demo_dir, tmp_path):
    eval_dir = tmp_path / "eval"
    shutil.copytree(demo_dir / "eval", eval_dir)
    info, problems = read_eval(eval_dir)
    assert problems == [] and len(info) == 6 * 7
    table = pd.read_csv(eval_dir / "info.csv")
    (eval_dir / "images" / table["ImageID"][0]).unlink()
    pd.concat([table, table.iloc[[1]]]).to_csv(eval_dir / "info.csv", index=False)
    _, problems = read_eval(eval_dir)
    reasons = _reasons(problems)
    assert any(table["ImageID"][0] in r and "missing" in r for r in reasons), reasons
    assert any("appears more than once" in r for r in reasons), reasons


def _damage_images(train_copy):
    folders = sorted((train_copy / "images").iterdir())
    truncated = folders[0] / "mask1.jpg"
    truncated.write_bytes(truncated.read_bytes()[:300])
    garbage = folders[1] / "normal.jpg"
    garbage.write_bytes(b"not really a jpeg")
    rgba = folders[2] / "mask2.jpg"
    rgba.unlink()
    Image.new("RGBA", (96, 128), (10, 200, 10, 128)).save(folders[2] / "mask2.png")
    return truncated, garbage


def test_fail_stops_before_training_and_lists_every_bad_image(train_copy):
    truncated, garbage = _damage_images(train_copy)
    cfg = load_config(None, ["data.image_size=32", "data.on_bad_image=fail"])
    with pytest.raises(DataError) as info:
        prepare_training_data(train_copy, cfg, progress=False)
    message = str(info.value)
    assert "2 problem(s)" in message and "nothing was trained" in message
    assert f"{truncated}: corrupt or truncated" in message
    assert f"{garbage}: not an image file" in message
    assert "--on-bad-image skip" in message


def test_skip_leaves_bad_images_out_and_keeps_converted_ones(train_copy):
    truncated, garbage = _damage_images(train_copy)
    cfg = load_config(None, ["data.image_size=32", "data.on_bad_image=skip"])
    data = prepare_training_data(train_copy, cfg, progress=False)
    assert len(data.manifest) == 60 * 7 - 2
    assert {p.file for p in data.problems} == {str(truncated), str(garbage)}
    assert data.manifest["path"].str.endswith("mask2.png").sum() == 1  # RGBA PNG converted, not rejected
