"""Soft age targets (``labels.train_age_soft_years``) against the solve's own, as submitted, on persons no model saw.

    python benchmarks/train_age_soft.py runs/solve_persons_20 runs/solve_persons_20s13 --years 2 \
        --work runs/age_soft [--out benchmarks/results/train_age_soft.json]

Each argument is a finished ``solve_on_persons.py`` folder. Its lead member (``solve/members/ce``) is trained
again from its own ``config.yaml``, on the same photos (the solve's training view and extra faces), folds and
seed, with soft age targets of ``--years``; the only difference is the targets of persons near the age cuts
(solves before solve's default changed trained hard targets, later ones two years; training is
deterministic on the CPU: two solves that planned the same lead wrote the same predictions). Both leads, each
alone, are scored on the test persons and on solve's holdout, per photo and as submitted (the finished solve's
face evidence, decision rule and pooling, as in ``member_pairs.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from retrain_lead import compare_leads, retrain_lead


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
    compare_leads(
        args.solves,
        lambda run: train_soft_lead(run, args.years, args.work),
        ("solve's lead", f"soft targets, {args.years:g} years"),
        report,
        args.out,
    )


if __name__ == "__main__":
    main()
