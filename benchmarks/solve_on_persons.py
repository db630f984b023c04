"""A whole `maskcls solve` scored on persons it never saw, and every decision it took checked on them.

    python benchmarks/solve_on_persons.py ../shared/data/utkmask18/train --budget 20m --out runs/solve_persons_20 \
        [--eval ../shared/data/utkmask18/eval] [--score-only] [-- more maskcls solve options]

A share of the training persons (``--test-share``, stratified, all 7 photos of each) becomes an eval split with
known answers; the solve runs on the rest, with its own holdout inside. Printed, and written to
``OUT/persons_report.json``: the plan (planned vs actual minutes), the submission's macro F1, accuracy, gender
and age accuracy and 60+ recall on the test persons, and for every decision its OOF proxy gain, its holdout gain
and its real gain on the test persons (the ``with`` / ``without`` directories' predictions of them). Members and
votes are judged per photo inside solve (before the persons stage exists); their ``test_gain`` is per photo too,
and ``test_gain_submitted`` is the same pair put through the submission's recipe (face evidence, rule, pooling).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from maskcls.core.labels import decode
from maskcls.core.metrics import classification_metrics
from maskcls.core.tables import PROB_COLUMNS, SUBMITTED_COLUMNS, read_test_probs
from maskcls.ensemble.person_consistency import person_consistent_probs, read_groups
from maskcls.persons.attributes import with_evidence
from maskcls.solver.decision_rule import submitted_probs
from maskcls.solver.face_evidence import read_evidence
from maskcls.solver.holdout import make_holdout
from maskcls.solver.recipe import submission_recipe

PERSON_STAGES = ("person consistency", "face attributes", "decision rule")


def scores(labels: np.ndarray, probs: np.ndarray) -> dict:
    metrics = classification_metrics(labels, probs)
    old = decode(labels)[2] == 2
    metrics["old_recall"] = float((decode(probs.argmax(1))[2][old] == 2).mean()) if old.any() else float("nan")
    return {key: round(value, 4) for key, value in metrics.items()}


def table_scores(test_probs: pd.DataFrame, answers: pd.DataFrame, probs: np.ndarray | None = None) -> dict:
    index = pd.Series(np.arange(len(test_probs)), index=test_probs["image_id"].to_numpy())
    rows = index.loc[answers["image_id"]].to_numpy()
    values = test_probs[PROB_COLUMNS].to_numpy(np.float64) if probs is None else probs
    return scores(answers["label"].to_numpy(np.int64), values[rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("train", type=Path, help="a train/ folder in the competition layout")
    parser.add_argument("--budget", default="20m")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--eval",
        type=Path,
        default=None,
        help="an eval/ folder predicted alongside the test persons: its rows of the submission and test_probs "
        "are written to OUT/eval_split/ (scored by whoever has its answers)",
    )
    parser.add_argument("--test-share", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--score-only",
        action="store_true",
        help="score the solve already in OUT/solve (e.g. one resumed with other decisions) without running it",
    )
    args, solve_args = parser.parse_known_args()  # the rest goes to `maskcls solve` (after --, or as is)
    solve_args = [a for a in solve_args if a != "--"]

    split = make_holdout(args.train, args.eval, args.out, args.test_share, args.seed, prefix="test/", folder="split")
    print(f"test persons: {split.persons} ({len(split.answers)} photos); the solve trains on the rest")
    solve_dir = args.out / "solve"
    views = ["--train", str(split.train_dir), "--eval", str(split.eval_dir)]
    command = [sys.executable, "-m", "maskcls", "solve", *views, "--budget", args.budget, "--out", str(solve_dir)]
    command += ["--force", *solve_args]
    if not args.score_only:
        subprocess.run(command, check=True)

    summary = json.loads((solve_dir / "summary.json").read_text())
    answers = split.answers
    submitted = read_test_probs(solve_dir / "test_probs.csv")
    final_probs = submitted[SUBMITTED_COLUMNS].to_numpy(np.float64)
    report = {
        "budget": args.budget,
        "spent_minutes": summary["spent_minutes"],
        "test_persons": split.persons,
        "plan": [
            {
                k: s.get(k)
                for k in ("stage", "status", "planned_minutes", "actual_minutes", "backbone", "size", "epochs", "folds")
            }
            for s in summary["stages"]
        ],  # fmt: skip
        "submission_on_test": table_scores(submitted, answers, final_probs),
        "holdout_inside_solve": summary.get("holdout"),
        "decisions": [],
    }
    # The persons stage decided on the combination before the pseudo-label round (which runs after it).
    pseudo = next((d for d in summary["decisions"] if d["stage"] == "pseudo-label round" and "without" in d), None)
    decided_on = Path(pseudo["without"]) if pseudo else solve_dir / "final"
    for decision in summary["decisions"]:
        entry = {k: decision.get(k) for k in ("stage", "kept", "proxy_gain", "holdout_gain")}
        if decision["stage"] == "pseudo-label round" and "with" in decision:  # judged as submitted, as solve did
            tables = [read_test_probs(Path(decision[key]) / "test_probs.csv") for key in ("with", "without")]
            recipe = submission_recipe(summary["persons"], tables[1]["image_id"])
            with_it, without = (table_scores(t, answers, recipe(t[PROB_COLUMNS].to_numpy(np.float64))) for t in tables)
            entry["test_gain"] = round(with_it["macro_f1"] - without["macro_f1"], 4)
        elif "with" in decision:  # members and votes: per photo, as the holdout judged them, and as submitted
            tables = [read_test_probs(Path(decision[key]) / "test_probs.csv") for key in ("with", "without")]
            with_it, without = (table_scores(t, answers) for t in tables)
            entry["test_gain"] = round(with_it["macro_f1"] - without["macro_f1"], 4)
            recipe = submission_recipe(summary["persons"], tables[1]["image_id"])
            with_it, without = (table_scores(t, answers, recipe(t[PROB_COLUMNS].to_numpy(np.float64))) for t in tables)
            entry["test_gain_submitted"] = round(with_it["macro_f1"] - without["macro_f1"], 4)
        elif decision["stage"] in PERSON_STAGES and summary.get("persons"):
            persons = summary["persons"]
            final = read_test_probs(decided_on / "test_probs.csv")
            raw = final[PROB_COLUMNS].to_numpy(np.float64)
            groups = read_groups(persons["groups"], final["image_id"])
            pool = partial(person_consistent_probs, groups=groups, group_size=persons["group_size"])
            faces = persons.get("face_attributes") or {}
            added = with_evidence(raw, read_evidence(faces["evidence"], final["image_id"])) if faces else raw
            if decision["stage"] == "person consistency":
                with_it, without = pool(raw), raw
            elif decision["stage"] == "face attributes":  # on top of pooling where it was kept
                pool = pool if persons["kept"] else (lambda probs: probs)
                with_it, without = pool(added), pool(raw)
            else:  # the rule, per photo before pooling where pooling was kept, as the submission applies it
                pool = pool if persons["kept"] else None
                raw = added if faces.get("kept") else raw
                without = submitted_probs(raw, None, pool)
                with_it = submitted_probs(raw, {**persons["rule"], "kept": True}, pool)
            entry["test_gain"] = round(
                table_scores(final, answers, with_it)["macro_f1"] - table_scores(final, answers, without)["macro_f1"], 4
            )
        report["decisions"].append(entry)
    if args.eval is not None:  # the real eval photos' rows, as a submission of this solve
        eval_split = args.out / "eval_split"
        eval_split.mkdir(exist_ok=True)
        submission = pd.read_csv(solve_dir / "submission.csv", dtype=str, keep_default_na=False)
        submission[~submission["ImageID"].str.startswith("test/")].to_csv(eval_split / "submission.csv", index=False)
        submitted[~submitted["image_id"].str.startswith("test/")].to_csv(eval_split / "test_probs.csv", index=False)
        report["eval_split"] = str(eval_split)
    (args.out / "persons_report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
