"""`maskcls report`: one self-contained page with every section, for a linear run, a three-head run, an ensemble,
and predictions on a labelled folder."""

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import invoke

from maskcls.analysis.evaluation import gradcam_selection, per_class_table, top_confusions
from maskcls.analysis.report import SECTIONS, training_history
from maskcls.core.labels import AgeThresholds, class_names
from maskcls.core.tables import PROB_COLUMNS

pytestmark = pytest.mark.slow


def check_page(page: str, gradcam: bool):
    for key, title in SECTIONS.items():
        assert f"<section id='{key}'><h2>{title}</h2>" in page, key
    assert not re.search(r"""(src|href)=['"](?!data:|#)""", page)  # nothing outside the page: no scripts, fonts, files
    assert "<script" not in page and "@import" not in page and "url(" not in page
    images = re.findall(r"<img src='data:image/png;base64,", page)
    gradcam_section = page.split("<section id='gradcam'>")[1].split("</section>")[0]
    assert ("<img" in gradcam_section) == gradcam
    return len(images)


def test_report_of_a_linear_run(tiny_run, tmp_path):
    result = invoke(
        "report", "--run", tiny_run, "--out", tmp_path / "report", "--gradcam", "12", "--examples", "4", "--quiet"
    )
    page = (tmp_path / "report" / "index.html").read_text()
    assert check_page(page, gradcam=True) >= 8
    headline = json.loads((tmp_path / "report" / "report.json").read_text())
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert headline["macro_f1"] == pytest.approx(summary["oof_macro_f1"]) and headline["gradcam_overlays"] == 12
    assert "macro F1" in result.output and "costliest classes" in result.output
    per_class = pd.read_csv(tmp_path / "report" / "per_class.csv")
    assert per_class["macro_f1_cost"].sum() == pytest.approx(1 - summary["oof_macro_f1"], abs=1e-6)
    fairness = pd.read_csv(tmp_path / "report" / "fairness.csv")
    assert set(fairness["attribute"]) == {"gender", "age group", "race"}
    assert fairness.groupby("attribute")["photos"].sum().eq(summary["oof_images"]).all()
    metrics, learning_rates = training_history(tiny_run)
    assert set(learning_rates["fold"]) == set(metrics["fold"]) == {0, 1, 2} and (learning_rates["lr"] > 0).all()


def test_report_names_the_extra_photos_a_run_trained_with(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    record = json.loads((run / "run.json").read_text())
    sources = [
        {"path": "data/plain_synth", "kind": "layout", "persons": 3, "images": 21, "used_persons": 2, "used_images": 14}
    ]
    (run / "run.json").write_text(json.dumps({**record, "extra": ["data/plain_synth"], "extra_sources": sources}))
    invoke("report", "--run", run, "--out", tmp_path / "report", "--gradcam", "0", "--examples", "1", "--quiet")
    assert (
        "<th>extra photos</th><td>data/plain_synth (14 of 21 photos used)</td>"
        in (tmp_path / "report" / "index.html").read_text()
    )


def test_report_of_a_three_head_run_and_of_an_ensemble(tiny_run, tiny_run_b, tmp_path):
    invoke(
        "report", "--run", tiny_run_b, "--out", tmp_path / "three_head", "--gradcam", "6", "--examples", "3", "--quiet"
    )
    check_page((tmp_path / "three_head" / "index.html").read_text(), gradcam=True)

    invoke("ensemble", "--runs", tiny_run, "--runs", tiny_run_b, "--method", "soft", "--out", tmp_path / "ens")
    invoke("report", "--run", tmp_path / "ens", "--out", tmp_path / "ens_report", "--quiet")
    page = (tmp_path / "ens_report" / "index.html").read_text()
    check_page(page, gradcam=False)
    assert "an ensemble has no network of its own" in page
    assert (
        "<th>fitting wall time</th>" in page and "training wall time" not in page and "<th>learner</th>" not in page
    )  # a soft vote has no learner
    assert "<th>weights</th><td>0.500, 0.500</td>" in page
    members = pd.read_csv(tmp_path / "ens_report" / "members.csv")
    assert len(members) == 3 and members["macro_f1"].between(0, 1).all()
    assert members["member"].iloc[-1].startswith("ensemble")


def test_report_on_a_labelled_folder(tiny_run, demo_dir, tmp_path):
    invoke(
        "report",
        "--run",
        tiny_run,
        "--data",
        demo_dir / "train",
        "--out",
        tmp_path / "report",
        "--gradcam",
        "6",
        "--quiet",
    )
    headline = json.loads((tmp_path / "report" / "report.json").read_text())
    assert headline["judged"].startswith("predictions on") and headline["photos"] == 420
    assert "temperature" in headline["calibration"]["note"]
    check_page((tmp_path / "report" / "index.html").read_text(), gradcam=True)


def test_report_tables_on_a_known_table():
    labels = np.array([0, 0, 1, 1, 2, 6])
    predicted = np.array([0, 1, 1, 1, 2, 0])
    table = per_class_table(labels, predicted, class_names())
    assert (
        table.loc[0, "support"] == 2 and table.loc[1, "precision"] == pytest.approx(2 / 3) and table.loc[6, "f1"] == 0
    )
    from sklearn.metrics import f1_score

    assert table["macro_f1_cost"].sum() == pytest.approx(1 - f1_score(labels, predicted, average="macro"))
    confusions = top_confusions(labels, predicted, "mask", AgeThresholds())
    assert confusions.iloc[0][["true", "predicted", "photos"]].tolist() == ["incorrect", "wear", 1]
    probs = np.eye(18)[[0, 0, 6, 7, 12, 13, 1, 4]] * 0.9 + 0.1 / 18
    frame = pd.concat(
        [
            pd.DataFrame(
                {
                    "image_id": [f"p{i}/x" for i in range(8)],
                    "person_id": [f"p{i}" for i in range(8)],
                    "label": [0, 0, 6, 7, 12, 13, 0, 1],
                }
            ),
            pd.DataFrame(probs, columns=PROB_COLUMNS),
        ],
        axis=1,
    )
    chosen = gradcam_selection(frame, 2)
    assert set(chosen["outcome"]) == {"right", "wrong"} and (chosen.groupby(["head", "outcome"]).size() <= 2).all()
    wrong = chosen[chosen["outcome"] == "wrong"].groupby("head")["row"].apply(set)
    assert wrong["age"] == {6} and wrong["gender"] == {7} and "mask" not in wrong
