"""Issue-4 workflow through the CLI: predict with TTA / MC dropout, ensemble, predict from an ensemble,
pseudo-labels into a new training round, and the active-learning export."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import invoke

from maskcls.core.tables import PROB_COLUMNS
from maskcls.engine.predictor import predict_outputs
from maskcls.inference.predict import load_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def predicted_runs(tiny_run, tiny_run_b, demo_dir):
    for run in (tiny_run, tiny_run_b):
        invoke("predict", "--run", run, "--data", demo_dir / "eval", "--quiet")
    return tiny_run, tiny_run_b


def test_tta_merges_the_mean_of_view_probabilities(tiny_run):
    run = load_run(tiny_run)
    model, data_cfg = run.models[0], run.data_cfg
    pixels = np.random.default_rng(0).integers(0, 255, (4, *data_cfg.cache_hw, 3), dtype=np.uint8)
    rows = np.arange(4)
    plain = predict_outputs(model, data_cfg, pixels, rows, progress=False)["probs"]
    flipped = predict_outputs(model, data_cfg, pixels[:, :, ::-1].copy(), rows, progress=False)["probs"]
    both = predict_outputs(model, data_cfg, pixels, rows, progress=False, tta="flip")["probs"]
    assert np.allclose(both, (plain + flipped) / 2, atol=1e-5)  # centre crop of a mirrored photo = mirrored centre crop
    logits_merge = predict_outputs(model, data_cfg, pixels, rows, progress=False, tta="flip", merge="mean_logits")[
        "probs"
    ]
    assert np.allclose(logits_merge.sum(1), 1, atol=1e-5) and not np.allclose(logits_merge, both)


def test_reevaluate_with_tta_keeps_the_models_and_redoes_the_oof(tiny_run, tmp_path):
    invoke("reevaluate", "--run", tiny_run, "--tta", "none", "--out", tmp_path / "same", "--quiet")
    original, same = pd.read_csv(tiny_run / "oof.csv"), pd.read_csv(tmp_path / "same" / "oof.csv")
    assert np.allclose(original[PROB_COLUMNS].to_numpy(), same[PROB_COLUMNS].to_numpy(), atol=1e-5)
    invoke("reevaluate", "--run", tiny_run, "--tta", "flip", "--out", tmp_path / "flip", "--quiet")
    flipped = pd.read_csv(tmp_path / "flip" / "oof.csv")
    assert flipped["image_id"].tolist() == original["image_id"].tolist()
    assert not np.allclose(original[PROB_COLUMNS].to_numpy(), flipped[PROB_COLUMNS].to_numpy(), atol=1e-4)
    assert json.loads((tmp_path / "flip" / "fold_0" / "model.json").read_text())["tta"]["name"] == "flip"
    assert load_run(tmp_path / "flip").meta["tta"]["name"] == "flip"


def test_predict_with_tta_and_mc_dropout_adds_uncertainty_columns(tiny_run, demo_dir, tmp_path):
    invoke(
        "predict",
        "--run",
        tiny_run,
        "--data",
        demo_dir / "eval",
        "--out",
        tmp_path,
        "--tta",
        "flip",
        "--mc-dropout",
        "3",
        "--quiet",
    )
    table = pd.read_csv(tmp_path / "test_probs.csv")
    for column in ("entropy", "disagreement", "mc_mutual_information"):
        assert column in table and (table[column] >= 0).all()
    expected = -(table[PROB_COLUMNS].to_numpy() * np.log(np.clip(table[PROB_COLUMNS].to_numpy(), 1e-12, 1))).sum(1)
    assert np.allclose(table["entropy"], expected, atol=1e-4)


@pytest.mark.parametrize(
    "method, extra",
    [("soft", []), ("stack", ["--learner", "logreg", "--head-features"]), ("weighted", ["--adjust-thresholds"])],
)
def test_ensemble_directory_round_trips_through_predict(predicted_runs, demo_dir, tmp_path, method, extra):
    run_a, run_b = predicted_runs
    ensemble_dir = tmp_path / "ens"
    invoke(
        "ensemble",
        "--runs",
        run_a,
        "--runs",
        run_b,
        "--method",
        method,
        "--out",
        ensemble_dir,
        "--cv-splits",
        3,
        *extra,
    )
    summary = json.loads((ensemble_dir / "summary.json").read_text())
    for name in ("oof.csv", "test_probs.csv", "submission.csv", "summary.json", "ensemble.json"):
        assert (ensemble_dir / name).is_file()
    assert summary["method"] == method and 0 <= summary["oof_macro_f1"] <= 1
    invoke("predict", "--run", ensemble_dir, "--data", demo_dir / "eval", "--out", tmp_path / "again", "--quiet")
    built = pd.read_csv(ensemble_dir / "test_probs.csv")
    again = pd.read_csv(tmp_path / "again" / "test_probs.csv")
    assert np.allclose(built[PROB_COLUMNS].to_numpy(), again[PROB_COLUMNS].to_numpy(), atol=1e-5)
    assert (
        pd.read_csv(ensemble_dir / "submission.csv")["ans"].tolist()
        == pd.read_csv(tmp_path / "again" / "submission.csv")["ans"].tolist()
    )


def test_pseudo_labels_train_a_new_round_without_entering_validation(predicted_runs, demo_dir, tmp_path):
    run_a, _ = predicted_runs
    pseudo_csv = tmp_path / "pseudo.csv"
    result = invoke(
        "pseudo",
        "--from",
        run_a,
        "--data",
        demo_dir / "eval",
        "--threshold",
        0.2,
        "--max-per-class",
        2,
        "--out",
        pseudo_csv,
    )
    assert "pseudo-labels" in result.output
    picked = pd.read_csv(pseudo_csv)
    assert len(picked) > 0 and picked.groupby("label").size().max() <= 2 and (picked["confidence"] >= 0.2).all()
    assert all(p.endswith(i) for p, i in zip(picked["path"], picked["image_id"], strict=False))
    round_two = tmp_path / "round2"
    args = ["train", "--data", demo_dir / "train", "--out", round_two, "--extra", pseudo_csv, "--quiet"]
    for override in (
        "model.name=test_efficientnet",
        "model.pretrained=none",
        "data.image_size=[64, 48]",
        "train.epochs=2",
        "cv.folds=3",
        "cv.train_folds=[0]",
    ):
        args += ["--set", override]
    invoke(*args)
    folds = pd.read_csv(round_two / "folds.csv")
    extra = folds[folds["source"] == "extra"]
    assert len(extra) == len(picked) and (extra["fold"] == -1).all()
    oof = pd.read_csv(round_two / "oof.csv")
    assert not oof["image_id"].str.startswith("extra:").any()
    summary = json.loads((round_two / "summary.json").read_text())
    assert summary["extra_images"] == len(picked) and summary["folds"][0]["train_images"] == (folds["fold"] != 0).sum()


def test_uncertain_exports_a_csv_and_a_contact_sheet(predicted_runs, tmp_path):
    run_a, _ = predicted_runs
    invoke("uncertain", "--from", run_a, "--k", 5, "--out", tmp_path)
    ranked = pd.read_csv(tmp_path / "uncertain.csv")
    assert len(ranked) == 5 and ranked["entropy"].is_monotonic_decreasing
    probs = pd.read_csv(run_a / "test_probs.csv")
    assert ranked["entropy"].iloc[0] == pytest.approx(probs["entropy"].max())
    from PIL import Image

    assert Image.open(tmp_path / "uncertain.png").size[0] > 0
