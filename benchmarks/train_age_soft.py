"""Soft age targets (``labels.train_age_soft_years``) against hard ones, as submitted, on persons no model saw.

    python benchmarks/train_age_soft.py runs/solve_persons_20 runs/solve_persons_20s13 --years 2 \
        --work runs/age_soft [--out benchmarks/results/train_age_soft.json]

Each argument is a finished ``solve_on_persons.py`` folder. Its lead member (``solve/members/ce``) is trained
again from its own ``config.yaml``, on the same photos (the solve's training view and extra faces), folds and
seed, with soft age targets; the only difference is the targets of persons near the age cuts (training is
deterministic on the CPU: two solves that planned the same lead wrote the same predictions). Both leads, each
alone, are scored on the test persons and on solve's holdout, per photo and as submitted (the finished solve's
face evidence, decision rule and pooling, as in ``member_pairs.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from member_pairs import scores
from retrain_lead import retrain_lead


def train_soft_lead(run: Path, years: float, work: Path) -> Path:
    """The solve's lead trained again with soft age targets; the folder holding its eval-view predictions."""
    return retrain_lead(run, work / run.name, [f"labels.train_age_soft_years={years:g}"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("solves", type=Path, nargs="+", help="solve_on_persons.py output folders")
    parser.add_argument("--years", type=float, default=2.0, help="labels.train_age_soft_years of the soft lead")
    parser.add_argument("--work", type=Path, required=True, help="where the soft leads are trained")
    parser.add_argument("--out", type=Path, help="write the table as JSON here")
    args = parser.parse_args()
    report = {"command": sys.argv, "years": args.years}
    for run in args.solves:
        hard = scores(run, [run / "solve" / "members" / "ce"])
        soft = scores(run, [train_soft_lead(run, args.years, args.work)])
        gain = {key: round(soft[key] - hard[key], 4) for key in hard}
        report[run.name] = {"hard": hard, "soft": soft, "gain": gain}
        print(run.name, json.dumps(report[run.name]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
