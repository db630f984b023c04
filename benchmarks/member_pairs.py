"""Which second member helps the lead most, as submitted: each member of a finished solve voted with the lead alone.

    python benchmarks/member_pairs.py runs/mem20s13 runs/mem20 [--out benchmarks/results/member_pairs.json]

solve adds members one by one, each judged against the vote of those kept before it, so its decisions do not
compare recipes on equal terms. Here, for each ``solve_on_persons.py`` folder, the lead (``members/ce``) alone and
the soft vote of the lead with each other member are scored on the test persons and on solve's own holdout, per
photo and as submitted (the finished solve's recipe: its face evidence, decision rule and pooling; the evidence
and the rule's offsets were fitted on the final combination, the same for every pair).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from maskcls.core.labels import decode
from maskcls.core.metrics import macro_f1
from maskcls.core.tables import PROB_COLUMNS, read_test_probs
from maskcls.ensemble.build import build_ensemble
from maskcls.solver.recipe import submission_recipe


def scores(run: Path, members: list[Path]) -> dict:
    """Macro F1 of the soft vote of ``members`` on the test persons and the holdout, per photo and as submitted,
    and the age accuracy as submitted."""
    with tempfile.TemporaryDirectory() as tmp:
        source = members[0] if len(members) == 1 else Path(tmp)
        if len(members) > 1:
            build_ensemble(members, "soft", source)
        return table_scores(run, read_test_probs(source / "test_probs.csv"))


def table_scores(run: Path, table: pd.DataFrame) -> dict:
    """``scores`` of one table of eval-view probabilities (image_id, p0..p17)."""
    summary = json.loads((run / "solve" / "summary.json").read_text())
    answers = pd.concat([pd.read_csv(run / "split" / "answers.csv"), pd.read_csv(run / "solve/holdout/answers.csv")])
    truth = table["image_id"].map(dict(zip(answers["image_id"], answers["label"], strict=True))).to_numpy()
    per_photo = table[PROB_COLUMNS].to_numpy(np.float64)
    submitted = submission_recipe(summary["persons"], table["image_id"])(per_photo)
    result = {}
    for split in ("test", "holdout"):
        rows = table["image_id"].str.startswith(f"{split}/").to_numpy()
        labels = truth[rows].astype(np.int64)
        result[split] = round(macro_f1(labels, per_photo[rows].argmax(1)), 4)
        result[f"{split}_submitted"] = round(macro_f1(labels, submitted[rows].argmax(1)), 4)
        result[f"{split}_submitted_age"] = round(
            float((decode(labels)[2] == decode(submitted[rows].argmax(1))[2]).mean()), 4
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("solves", type=Path, nargs="+", help="solve_on_persons.py output folders")
    parser.add_argument("--out", type=Path, help="write the table as JSON here")
    args = parser.parse_args()
    report = {}
    for run in args.solves:
        folder = run / "solve" / "members"
        lead = folder / "ce"
        others = sorted(p for p in folder.iterdir() if p != lead and (p / "test_probs.csv").is_file())
        base = scores(run, [lead])
        report[run.name] = {"lead alone": base}
        for member in others:
            pair = scores(run, [lead, member])
            pair["gain_test_submitted"] = round(pair["test_submitted"] - base["test_submitted"], 4)
            pair["gain_holdout_submitted"] = round(pair["holdout_submitted"] - base["holdout_submitted"], 4)
            report[run.name][f"lead + {member.name}"] = pair
        report[run.name]["all members"] = scores(run, [lead, *others])
        print(run.name, json.dumps(report[run.name], indent=1), flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
