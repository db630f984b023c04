"""`maskcls solve`'s pseudo-label round, after the persons stage: its labels are the submission's answers (face
evidence, rule and pooling as decided), it trains one more member with them, and it is judged on the holdout
through the same recipe. A finished tiny solve gets a pseudo-label round added to its plan and is resumed."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import invoke
from test_solve import TINY_SOLVE

from maskcls.core.metrics import macro_f1
from maskcls.core.tables import PROB_COLUMNS, SUBMITTED_COLUMNS, read_test_probs
from maskcls.solver import run as solve_run
from maskcls.solver.recipe import submission_recipe

pytestmark = pytest.mark.slow


def test_a_pseudo_label_round_learns_the_submissions_answers_and_is_judged_as_submitted(
    demo_dir, tmp_path, monkeypatch
):
    out = tmp_path / "solve"
    solve = ["solve", "--train", demo_dir / "train", "--eval", demo_dir / "eval", "--out", out, "--quiet"]
    invoke(*solve, "--budget", "10m", "--preset", "fast", "--max-epochs", "1", *TINY_SOLVE)
    saved = json.loads((out / "plan.json").read_text())
    stages = saved["plan"]["stages"]
    lead = next(s for s in stages if s["kind"] == "member")
    stages.insert(
        [s["kind"] for s in stages].index("finish"),
        {**lead, "name": "pseudo_ce", "kind": "pseudo", "status": "planned", "actual_minutes": None, "result": {}},
    )
    stages[-1].update(status="planned", actual_minutes=None, result={})
    (out / "plan.json").write_text(json.dumps(saved))
    before = read_test_probs(out / "final" / "test_probs.csv")  # the combination the persons stage decided on
    summary = json.loads((out / "summary.json").read_text())
    submitted_before = submission_recipe(summary["persons"], before["image_id"])(before[PROB_COLUMNS].to_numpy())
    # A one-epoch tiny model is never 90 % sure: take every photo, up to the per-class cap.
    monkeypatch.setattr(solve_run, "PSEUDO_THRESHOLD", 1e-6)

    invoke("solve", "--resume", out, "--budget", "30m", "--quiet")

    plan = json.loads((out / "plan.json").read_text())["plan"]
    assert [s["status"] for s in plan["stages"]] == ["done"] * len(plan["stages"])
    labels = pd.read_csv(out / "pseudo" / "pseudo.csv", dtype={"image_id": str})
    assert len(labels) and not labels["image_id"].str.startswith("holdout/").any()  # never the holdout's photos
    rows = pd.Series(np.arange(len(before)), index=before["image_id"]).loc[labels["image_id"]].to_numpy()
    assert labels["label"].tolist() == submitted_before[rows].argmax(axis=1).tolist()  # the submission's answers
    assert (out / "members" / "ce_pseudo" / "summary.json").is_file()

    summary = json.loads((out / "summary.json").read_text())
    assert [d["stage"] for d in summary["decisions"]][-1] == "pseudo-label round"  # after the persons stage
    decision = summary["decisions"][-1]
    assert decision["measured_on"].startswith("holdout of") and {"gain", "proxy_gain", "noise"} <= set(decision)
    with_it = read_test_probs(f"{decision['with']}/test_probs.csv")
    recipe = submission_recipe(summary["persons"], with_it["image_id"])
    answers = pd.read_csv(out / "holdout" / "answers.csv", dtype={"image_id": str}).set_index("image_id")["label"]
    held = with_it["image_id"].isin(answers.index).to_numpy()
    truth = answers.loc[with_it["image_id"][held]].to_numpy()
    scored = macro_f1(truth, recipe(with_it[PROB_COLUMNS].to_numpy())[held].argmax(axis=1))
    assert decision["scores"]["holdout"] == pytest.approx(scored, abs=1e-4)  # judged through the recipe
    assert decision["baseline"]["holdout"] == pytest.approx(
        macro_f1(truth, submitted_before[held].argmax(axis=1)), abs=1e-4
    )
    # The submission follows the decision: the combination with the pseudo-label member only where it was kept.
    members = summary["final"]["members"]
    assert any(m.endswith("ce_pseudo") for m in members) == decision["kept"]
    final = read_test_probs(out / "final" / "test_probs.csv")
    written = pd.read_csv(out / "test_probs.csv", dtype={"image_id": str})
    expected = submission_recipe(summary["persons"], final["image_id"])(final[PROB_COLUMNS].to_numpy())
    expected = pd.DataFrame(expected, index=final["image_id"]).loc[written["image_id"]].to_numpy()
    assert np.allclose(written[SUBMITTED_COLUMNS].to_numpy(), expected, atol=1e-6)
