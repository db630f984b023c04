"""`maskcls solve` end to end on the demo data with a tiny backbone: --dry-run prints only the plan; a solve
killed with SIGKILL in the middle of a member continues with --resume, keeping what was finished."""

import json
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import invoke, kill_when, make_real_mask_folder
from typer.testing import CliRunner

from maskcls.cli import app

pytestmark = pytest.mark.slow
TINY_SOLVE = ["--candidate", "test_efficientnet@32", "--set", "model.pretrained=none", "--set", "train.batch_size=32"]


def test_dry_run_prints_only_the_plan(demo_dir, tmp_path):
    result = invoke(
        "solve",
        "--train",
        demo_dir / "train",
        "--eval",
        demo_dir / "eval",
        "--budget",
        "5m",
        "--out",
        tmp_path / "solve",
        "--dry-run",
        *TINY_SOLVE,
    )
    assert (
        "measured test_efficientnet at 32 px" in result.output and "plan: preset best, budget 5.0 min" in result.output
    )
    assert "calibrate: test_efficientnet at 32 px [1/1] · done in" in result.output  # progress while measuring
    assert "member_ce" in result.output and "persons" in result.output
    saved = json.loads((tmp_path / "solve" / "plan.json").read_text())
    assert saved["dry_run"] is True and saved["settings"]["holdout_share"] == 0.15
    members = [s["name"] for s in saved["plan"]["stages"] if s["kind"] == "member"]
    assert "member_ce" in members


def test_solve_refuses_a_budget_it_cannot_meet(demo_dir, tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "solve",
            "--train",
            str(demo_dir / "train"),
            "--eval",
            str(demo_dir / "eval"),
            "--budget",
            "2s",
            "--out",
            str(tmp_path / "solve"),
            *TINY_SOLVE,
        ],
    )
    assert result.exit_code == 2 and "too small" in result.output


def test_solve_killed_mid_member_resumes_and_finishes(demo_dir, tmp_path):
    out = tmp_path / "solve"
    command = [
        sys.executable,
        "-m",
        "maskcls",
        "solve",
        "--train",
        str(demo_dir / "train"),
        "--eval",
        str(demo_dir / "eval"),
        "--budget",
        "10m",
        "--out",
        str(out),
        "--preset",
        "fast",
        "--max-epochs",
        "1",
        "--quiet",
        "--real-masks",
        str(make_real_mask_folder(demo_dir, tmp_path / "real")),
        *TINY_SOLVE,
    ]
    first_fold = out / "members" / "ce" / "fold_0" / "fold.json"
    kill_when(command, first_fold)
    plan = json.loads((out / "plan.json").read_text())["plan"]
    member = next(s for s in plan["stages"] if s["kind"] == "member")
    assert member["status"] == "running" and not (out / "members" / "ce" / "summary.json").exists()
    kept = first_fold.stat().st_mtime_ns

    result = invoke("solve", "--resume", out, "--quiet")
    assert "submission" in result.output
    assert first_fold.stat().st_mtime_ns == kept  # the finished fold was kept, not retrained
    plan = json.loads((out / "plan.json").read_text())["plan"]
    assert [s["status"] for s in plan["stages"]] == ["done"] * len(plan["stages"])
    member = next(s for s in plan["stages"] if s["kind"] == "member")
    assert member["result"]["resumed"] and member["planned_minutes"] > 0 and member["actual_minutes"] > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["members"][0]["oof_macro_f1"] == pytest.approx(
        json.loads((out / "members" / "ce" / "summary.json").read_text())["oof_macro_f1"]
    )
    assert {"without", "known_persons", "clustered_groups"} <= set(summary["persons"]["oof"])
    assert summary["final"]["directory"].endswith("final") and (out / "final" / "ensemble.json").is_file()
    info = pd.read_csv(demo_dir / "eval" / "info.csv", dtype=str)
    submission = pd.read_csv(out / "submission.csv", dtype=str)
    test_probs = pd.read_csv(out / "test_probs.csv", dtype={"image_id": str})
    assert submission["ImageID"].tolist() == info["ImageID"].tolist() == test_probs["image_id"].tolist()
    probs = test_probs[[f"p{i}" for i in range(18)]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    submitted = test_probs[[f"submitted_p{i}" for i in range(18)]].to_numpy()
    assert np.array_equal(submission["ans"].astype(int), submitted.argmax(axis=1))  # what was kept, written down
    if not summary["persons"]["kept"] and not summary["persons"]["rule"]["kept"]:
        assert np.allclose(submitted, probs)
    assert summary["report"]["written"], summary["report"]
    # Decisions are taken on the holdout (persons no member trained on), with the OOF proxy's gain beside it.
    holdout = summary["holdout"]
    assert holdout["persons"] > 0 and 0 <= holdout["macro_f1"] <= 1 and "gender_accuracy" in holdout
    persons = next(d for d in summary["decisions"] if d["stage"] == "person consistency")
    assert persons["measured_on"].startswith("holdout of") and {"gain", "proxy_gain", "holdout_gain"} <= set(persons)
    rule = next(d for d in summary["decisions"] if d["stage"] == "decision rule")
    assert rule["measured_on"] == persons["measured_on"] and len(rule["offsets"]) == 3 and rule["offsets"][0] == 0
    assert holdout["decision_rule"] == (summary["persons"]["rule"]["part"] if rule["kept"] else None)
    # Each group's unmasked photo read by the face models, judged on the same holdout, its evidence kept for finish.
    faces = next(d for d in summary["decisions"] if d["stage"] == "face attributes")
    assert faces["measured_on"] == persons["measured_on"] and {"gain", "proxy_gain", "noise"} <= set(faces)
    assert holdout["face_attributes"] == faces["kept"] == summary["persons"]["face_attributes"]["kept"]
    # Members are judged on the same holdout as the persons stage will submit it.
    lead = next(d for d in summary["decisions"] if d.get("reason") == "the first member")
    assert lead["measured_on"] == (
        f"{persons['measured_on']}, as submitted: each person's face evidence added and photos pooled by person"
    )
    evidence = pd.read_csv(out / "persons" / "face_evidence.csv", dtype={"image_id": str})
    assert set(info["ImageID"]) <= set(evidence["image_id"]) and len(evidence) == len(evidence["image_id"].unique())
    attributes = pd.read_csv(out / "persons" / "face_attributes.csv", dtype={"path": str})
    assert len(attributes) == len(set(attributes["path"])) > 0  # each photo read once
    folds = pd.read_csv(out / "members" / "ce" / "folds.csv", dtype=str)
    held = set(pd.read_csv(out / "holdout" / "answers.csv", dtype=str)["person_id"])
    assert held and held.isdisjoint(folds["person_id"])  # no member trained or validated on a holdout person
    assert (out / "report" / "index.html").is_file() and "evaluation report:" in result.output
    # the final model's mask head on real-mask photos, a setting the resumed solve kept
    assert summary["real_masks"]["photos"] == 12 and 0 <= summary["real_masks"]["accuracy"] <= 1
    assert "mask head on 12 real photos" in result.output


def test_every_member_recipe_loads_with_the_planned_settings():
    """A member's recipe file and overrides, with the plan's settings on top, make a valid recipe (a typo in a
    recipe that only long plans reach would otherwise surface an hour into a solve)."""
    from maskcls.solver.plan import MEMBER_RECIPES, Stage
    from maskcls.solver.run import MEMBER_DEFAULTS, SolveSettings, member_config

    settings = SolveSettings(train_dir="train", eval_dir="eval", overrides=list(MEMBER_DEFAULTS))
    for recipe in MEMBER_RECIPES:
        stage = Stage(f"member_{recipe}", "member", 1.0, recipe, "tf_efficientnet_lite0", "none", 96, 2, 3, "flip")
        config = member_config(settings, stage)
        assert (config.data.image_size, config.train.epochs, config.cv.folds) == (96, 2, 3), recipe
        assert (config.model.freeze_stages, config.tta.name) == (3, "flip"), recipe
        assert config.labels.train_age_soft_years == 2, recipe
    hard = SolveSettings(
        train_dir="train", eval_dir="eval", overrides=[*MEMBER_DEFAULTS, "labels.train_age_soft_years=0"]
    )
    assert member_config(hard, stage).labels.train_age_soft_years == 0  # the user's --set comes last and wins
    assert (
        member_config(
            settings, Stage("w", "member", 1.0, "wild", "tf_efficientnet_lite0", "none", 96, 2, 3)
        ).augment.jpeg
        > 0
    )
