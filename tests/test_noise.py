"""Label-noise finder: the person-level rules and confident learning find planted errors; suggested fixes are valid."""

import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import invoke

from maskcls.analysis.noise import KINDS, SUSPECT_COLUMNS, NoiseError, find_label_noise, fixes_from_suspects
from maskcls.core.labels import Mask, encode
from maskcls.core.tables import PROB_COLUMNS
from maskcls.data.label_fixes import read_label_fixes
from maskcls.data.layout import read_train


def confident_probs(labels, sure=0.9, seed=0):
    """Probabilities that put ``sure`` on each row's class and spread the rest at random."""
    rng = np.random.default_rng(seed)
    rest = rng.dirichlet(np.ones(17), len(labels)) * (1 - sure)
    probs = np.zeros((len(labels), 18))
    for row, label in enumerate(labels):
        probs[row, np.arange(18) != label] = rest[row]
        probs[row, label] = sure
    return probs


@pytest.fixture
def planted(demo_dir):
    """The demo manifest with OOF-like probabilities of the true labels, and given labels with planted errors."""
    manifest, _ = read_train(demo_dir / "train")
    truth = manifest["label"].to_numpy()
    probs = confident_probs(truth)
    persons = manifest["person_id"].unique()
    gender_flipped, age_moved, swapped, mask_photo = persons[[3, 17]], persons[[8]], persons[[5, 30]], persons[40]
    given = manifest.copy()
    flip = given["person_id"].isin(gender_flipped)
    given.loc[flip, "gender"] = 1 - given.loc[flip, "gender"]
    move = given["person_id"].isin(age_moved)
    given.loc[move, "age_group"] = np.where(given.loc[move, "age_group"] == 0, 1, given.loc[move, "age_group"] - 1)
    for person in swapped:  # the files are swapped: each photo shows the other's mask state
        rows = given.index[(given["person_id"] == person) & given["stem"].isin(["normal", "incorrect_mask"])]
        probs[rows] = probs[rows[::-1]]
    wrong_mask = given.index[(given["person_id"] == mask_photo) & (given["stem"] == "mask1")][0]
    given.at[wrong_mask, "mask"] = Mask.NOT_WEAR
    given["label"] = encode(given["mask"].to_numpy(), given["gender"].to_numpy(), given["age_group"].to_numpy())
    table = pd.concat([given.reset_index(drop=True), pd.DataFrame(probs, columns=PROB_COLUMNS)], axis=1)
    return table, {
        "person_gender": set(gender_flipped),
        "person_age": set(age_moved),
        "swapped_pair": set(swapped),
        "photo_mask": {given.at[wrong_mask, "image_id"]},
    }


def test_person_rules_find_exactly_the_planted_errors(planted):
    table, truth = planted
    suspects = find_label_noise(table, confidence=0.8)
    assert list(suspects.columns) == SUSPECT_COLUMNS and set(suspects["kind"]) <= set(KINDS)
    for kind in ("person_gender", "person_age", "swapped_pair"):
        assert set(suspects.loc[suspects["kind"] == kind, "person_id"]) == truth[kind], kind
    assert (
        set(suspects.loc[suspects["kind"] == "photo_mask", "image_id"]) == truth["photo_mask"]
    )  # swapped photos are not repeated here
    gender = suspects[suspects["kind"] == "person_gender"]
    assert (gender["photos"] == 7).all() and (gender["score"] > 0.5).all() and gender["rank"].tolist() == [1, 2]
    # confident learning (cleanlab) flags the contradicted photos of the 18-class table
    flagged = set(suspects.loc[suspects["kind"] == "photo_class", "person_id"])
    assert truth["person_gender"] <= flagged and truth["swapped_pair"] <= flagged
    assert len(flagged) <= len(table["person_id"].unique()) // 4


def test_a_clean_table_has_no_person_suspects(demo_dir):
    manifest, _ = read_train(demo_dir / "train")
    table = pd.concat(
        [manifest, pd.DataFrame(confident_probs(manifest["label"].to_numpy()), columns=PROB_COLUMNS)], axis=1
    )
    suspects = find_label_noise(table)
    assert suspects[suspects["kind"] != "photo_class"].empty


def test_suggested_fixes_are_valid_fixes_and_undo_the_errors(planted, demo_dir, tmp_path):
    table, truth = planted
    suspects = find_label_noise(table)
    fixes = fixes_from_suspects(suspects)
    assert "photo_class" not in set(fixes["note"].str.split(" ").str[0])
    fixes.to_csv(tmp_path / "fixes.csv", index=False)
    read = read_label_fixes(tmp_path / "fixes.csv", demo_dir / "train")
    assert set(read.person_values) == truth["person_gender"] | truth["person_age"]
    swapped_folders = set(
        table.loc[table["person_id"].isin(truth["swapped_pair"]), "path"].map(lambda p: p.split("/")[-2])
    )
    assert {image_id for image_id in read.photo_masks if image_id.split("/")[0] in swapped_folders} == {
        f"{folder}/{stem}" for folder in swapped_folders for stem in ("normal", "incorrect_mask")
    }
    assert truth["photo_mask"] <= set(read.photo_masks)


@pytest.mark.slow
def test_noise_command_finds_planted_errors_with_a_trained_run(tiny_run, demo_dir, tmp_path):
    """A copy of the demo data with planted errors, judged by the OOF predictions of the tiny run. (The tiny model
    reads the demo's mask states too poorly to find swapped files; the swap rule is checked on the table above.)"""
    noisy = tmp_path / "train"
    shutil.copytree(demo_dir / "train", noisy)
    table = pd.read_csv(noisy / "train.csv", dtype=str)
    flipped = table["id"].iloc[[2, 11, 23]].tolist()
    table.loc[table["id"].isin(flipped), "gender"] = table.loc[table["id"].isin(flipped), "gender"].map(
        {"male": "female", "female": "male"}
    )
    table.to_csv(noisy / "train.csv", index=False)
    swapped = table["id"].iloc[[5, 40]].tolist()
    for folder in table.loc[table["id"].isin(swapped), "path"]:
        normal, incorrect = (
            next((noisy / "images" / folder).glob(f"{stem}.*")) for stem in ("normal", "incorrect_mask")
        )
        normal.rename(normal.with_name("tmp"))
        incorrect.rename(normal)
        normal.with_name("tmp").rename(incorrect)

    invoke("noise", "--run", tiny_run, "--data", noisy, "--out", tmp_path / "noise")
    suspects = pd.read_csv(tmp_path / "noise" / "noise.csv", dtype={"person_id": str})
    gender = suspects.loc[suspects["kind"] == "person_gender", "person_id"].tolist()
    assert len(set(gender[:6]) & set(flipped)) >= 2, gender  # at the top 2K
    assert (tmp_path / "noise" / "noise.png").is_file() and (tmp_path / "noise" / "suggested_fixes.csv").is_file()
    read_label_fixes(tmp_path / "noise" / "suggested_fixes.csv", noisy)


def test_bad_input_is_refused_with_the_reason(planted, tmp_path):
    from typer.testing import CliRunner

    from maskcls.cli import app

    table, _ = planted
    with pytest.raises(NoiseError, match=r"confidence must be in \[0.5, 1\)"):
        find_label_noise(table, confidence=1.0)
    (tmp_path / "run").mkdir()
    result = CliRunner().invoke(app, ["noise", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "noise")])
    assert result.exit_code == 2 and "oof.csv" in result.output and not (tmp_path / "noise").exists()
