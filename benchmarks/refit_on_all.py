"""The lead trained on all of solve's training persons, its holdout's too, against the lead solve submits, as
submitted, on persons no model saw.

    python benchmarks/refit_on_all.py runs/solve_persons_30 runs/solve_persons_30s13 --work runs/refit \
        [--out benchmarks/results/refit_on_all.json]

Each argument is a finished ``solve_on_persons.py`` folder. solve keeps 15 % of its training persons as the holdout
its decisions are taken on, so the members it submits never train on them (docs/solve.md). Here the lead
(``solve/members/ce``) is trained again from its own config, extra faces and seed on every training person of the
solve (``split/train``), and both leads, each alone, are scored on the test persons per photo and as submitted
(the finished solve's face evidence, decision rule and pooling, as in ``member_pairs.py``). The refitted lead has
seen the holdout, so only the test persons' columns compare the two.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from member_pairs import scores
from retrain_lead import retrain_lead

TEST_KEYS = ("test", "test_submitted", "test_submitted_age")


def test_scores(run: Path, member: Path) -> dict:
    """``member_pairs.scores`` of one member, the test persons' columns only."""
    return {key: value for key, value in scores(run, [member]).items() if key in TEST_KEYS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("solves", type=Path, nargs="+", help="solve_on_persons.py output folders")
    parser.add_argument("--work", type=Path, required=True, help="where the refitted leads are trained")
    parser.add_argument("--out", type=Path, help="write the table as JSON here")
    args = parser.parse_args()
    report = {"command": sys.argv}
    for run in args.solves:
        held_out = test_scores(run, run / "solve" / "members" / "ce")
        refit = test_scores(run, retrain_lead(run, args.work / run.name, data=run / "split" / "train"))
        gain = {key: round(refit[key] - held_out[key], 4) for key in TEST_KEYS}
        report[run.name] = {"lead without the holdout": held_out, "lead on all persons": refit, "gain": gain}
        print(run.name, json.dumps(report[run.name]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
