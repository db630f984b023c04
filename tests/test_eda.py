"""The EDA page: summary, tables, person-level views, train vs eval, duplicates; and the training plots."""

import re
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import invoke
from PIL import Image, ImageEnhance

from maskcls.analysis.duplicates import near_pairs, person_pairs
from maskcls.analysis.eda import class_table, eda_report, persons_by_gender_and_age
from maskcls.core.plots import confusion_figure, training_curves
from maskcls.data.layout import read_train


@pytest.fixture(scope="module")
def odd_data(demo_dir, tmp_path_factory):
    """The demo set with a face filed under two persons, a training photo in eval, and eval photos made brighter."""
    root = tmp_path_factory.mktemp("odd")
    shutil.copytree(demo_dir / "train", root / "train")
    shutil.copytree(demo_dir / "eval", root / "eval")
    people = sorted((root / "train" / "images").iterdir())
    shutil.copy(people[0] / "normal.jpg", people[1] / "normal.jpg")
    info = pd.read_csv(root / "eval" / "info.csv")
    for name in info["ImageID"][1:]:
        path = root / "eval" / "images" / name
        ImageEnhance.Brightness(Image.open(path).convert("RGB")).enhance(1.6).save(path, quality=95)
    shutil.copy(people[5] / "mask3.jpg", root / "eval" / "images" / info["ImageID"][0])
    return root, people


@pytest.fixture(scope="module")
def odd_report(odd_data, tmp_path_factory):
    root, _ = odd_data
    out = tmp_path_factory.mktemp("odd_report")
    invoke("eda", root / "train", "--eval", root / "eval", "--out", out, "--quiet")
    return out, (out / "index.html").read_text()


def test_page_references_only_files_it_wrote(odd_report):
    out, page = odd_report
    images = re.findall(r"<img src='([^']+)'", page)
    assert {
        "class_counts.png",
        "persons_gender_age.png",
        "age_by_gender.png",
        "brightness.png",
        "duplicates.jpg",
        "samples.jpg",
    } <= set(images)
    assert all((out / name).is_file() for name in images)


def test_summary_names_rare_classes_imbalance_and_what_is_odd(odd_report, odd_data):
    _, page = odd_report
    _, people = odd_data
    summary = page.split('<div class="summary">')[1].split("</div>")[0]
    assert "Rarest classes:" in summary and "imbalance ratio" in summary
    assert "1 pair(s) of training persons share near-identical photos" in summary and "1 identical files" in summary
    assert "1 eval photo(s) nearly identical to training photos" in summary
    assert "eval brightness differs from train" in summary


def test_page_has_the_tables_a_data_scientist_expects(odd_report, odd_data):
    _, page = odd_report
    _, people = odd_data
    for heading in (
        "Persons per gender and age group",
        "Photos per person",
        "Photo sizes",
        "Colour per channel",
        "Normalisation constants these photos imply",
        "Training persons who share photos",
    ):
        assert heading in page, heading
    pairs_table = page.split("Training persons who share photos")[1]
    assert people[0].name.split("_")[0] in pairs_table and people[1].name.split("_")[0] in pairs_table


def test_class_and_person_tables(demo_dir):
    manifest, _ = read_train(demo_dir / "train")
    classes = class_table(manifest)
    assert (
        len(classes) == 18 and classes["photos"].sum() == len(manifest) and classes["share"].sum() == pytest.approx(1.0)
    )
    assert classes["largest / this"].min() == 1.0
    cross = persons_by_gender_and_age(manifest.drop_duplicates("person_id"))
    assert cross.loc["all", "all"] == manifest["person_id"].nunique() == cross.loc[["male", "female"], "all"].sum()


def test_clean_demo_data_has_no_false_duplicates(demo_dir, tmp_path):
    page = eda_report(demo_dir / "train", tmp_path, eval_dir=demo_dir / "eval", progress=False).read_text()
    assert "Nothing odd found" in page and "<b>None found.</b>" in page
    assert not (tmp_path / "duplicates.jpg").exists()


def test_near_pairs_within_and_across():
    hashes = np.array([0b0, 0b1, 0b111, 2**63 + 2**62 + 2**61], dtype=np.uint64)
    i, j, distance = near_pairs(hashes, max_distance=2)
    assert list(zip(i, j, distance, strict=False)) == [(0, 1, 1), (1, 2, 2)]
    i, j, distance = near_pairs(np.array([0b11], dtype=np.uint64), hashes, max_distance=1)
    assert list(zip(i, j, distance, strict=False)) == [(0, 1, 1), (0, 2, 1)]
    pairs = pd.DataFrame(
        {"kind": ["train-train"] * 3, "person_a": ["b", "a", "c"], "person_b": ["a", "b", "d"], "distance": [0, 2, 1]}
    )
    assert person_pairs(pairs).to_dict("records") == [
        {"person_a": "a", "person_b": "b", "photo_pairs": 2, "closest": 0},
        {"person_a": "c", "person_b": "d", "photo_pairs": 1, "closest": 1},
    ]


def test_training_curves_label_axes_and_mark_each_folds_best_epoch():
    metrics = pd.DataFrame(
        {
            "fold": [0, 0, 0, 1, 1, 1],
            "epoch": [0, 1, 2] * 2,
            "train_loss": [2, 1.5, 1.2, 2.1, 1.4, 1.1],
            "val_loss": [2.2, 1.8, 1.9, 2.0, 1.7, 1.6],
            "val_macro_f1": [0.2, 0.5, 0.4, 0.3, 0.35, 0.6],
        }
    )
    figure = training_curves(metrics)
    loss, f1 = figure.axes[:2]
    assert loss.get_ylabel() == "loss" and f1.get_ylabel() == "validation macro F1"
    stars = [(line.get_xdata()[0], line.get_ydata()[0]) for line in f1.lines if line.get_marker() == "*"]
    assert stars == [(1, 0.5), (2, 0.6)]
    assert [text.get_text() for text in f1.get_legend().get_texts()] == [
        "fold 0",
        "fold 1",
        "train loss",
        "validation loss",
        "best epoch (kept)",
    ]


def test_confusion_figure_shows_recall_per_class_beside_the_matrix():
    labels = np.array([0, 0, 0, 1, 1, 5])
    predicted = np.array([0, 0, 1, 1, 1, 4])
    figure = confusion_figure(labels, predicted)
    side = next(axis for axis in figure.axes if axis.get_title() == "recall per class")
    widths = [patch.get_width() for patch in side.patches]
    assert len(widths) == 18 and widths[0] == pytest.approx(2 / 3) and widths[1] == 1.0 and widths[5] == 0.0
    assert "n=3" in " ".join(text.get_text() for text in side.texts)
