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
import sys
from pathlib import Path

from retrain_lead import compare_leads, retrain_lead


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("solves", type=Path, nargs="+", help="solve_on_persons.py output folders")
    parser.add_argument("--work", type=Path, required=True, help="where the refitted leads are trained")
    parser.add_argument("--out", type=Path, help="write the table as JSON here")
    args = parser.parse_args()
    compare_leads(
        args.solves,
        lambda run: retrain_lead(run, args.work / run.name, data=run / "split" / "train"),
        ("lead without the holdout", "lead on all persons"),
        {"command": sys.argv},
        args.out,
        keys=("test", "test_submitted", "test_submitted_age"),
    )


if __name__ == "__main__":
    main()
