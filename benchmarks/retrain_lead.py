"""Train a finished ``solve_on_persons.py`` run's lead member again with one thing changed (its settings or its
training persons), and predict solve's eval view with it: the helper of the lead-variant benchmarks
(``train_age_soft.py``, ``refit_on_all.py``), and on its own the benchmark of any other setting:

    python benchmarks/retrain_lead.py runs/solve_persons_30 --set model.name=tf_efficientnet_lite2 \
        --work runs/lite2 [--out benchmarks/results/lead_lite2.json]

Both leads, each alone, are scored on the test persons and solve's holdout, per photo and as submitted (the
finished solve's face evidence, decision rule and pooling, as in ``member_pairs.py``).

The lead (``solve/members/ce``) is trained from its own ``config.yaml`` and extra faces, so with nothing changed
it is the same run (training is deterministic on the CPU: two solves that planned the same lead wrote the same
predictions).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from member_pairs import scores


def maskcls(*args) -> None:
    subprocess.run([sys.executable, "-m", "maskcls", *(str(a) for a in args)], check=True)


def retrain_lead(run: Path, out: Path, settings: Sequence[str] = (), data: Path | None = None) -> Path:
    """``run``'s lead trained again into ``out`` with ``settings`` (``--set`` overrides) on ``data`` (default: the
    persons it trained on); returns the folder holding its predictions of solve's eval view (test persons and
    holdout). Finished parts are reused, so an interrupted benchmark resumes."""
    lead = run / "solve" / "members" / "ce"
    sources = json.loads((lead / "run.json").read_text())
    if not (out / "summary.json").is_file():
        extras = [part for extra in sources.get("extra") or [] for part in ("--extra", extra)]
        sets = [part for setting in settings for part in ("--set", setting)]
        maskcls("train", "--data", data or sources["data"], "--config", lead / "config.yaml", *extras, *sets,
                "--out", out, "--force", "--quiet")  # fmt: skip
    predicted = out / "predicted"
    if not (predicted / "test_probs.csv").is_file():
        view = json.loads((lead / "predict.json").read_text())["data"]
        maskcls("predict", "--run", out, "--data", view, "--out", predicted, "--quiet")
    return predicted


def compare_leads(
    solves: Sequence[Path],
    retrained: Callable[[Path], Path],
    names: tuple[str, str],
    report: dict,
    out: Path | None = None,
    keys: Sequence[str] | None = None,
) -> dict:
    """For each solve, its lead and ``retrained(run)`` (a folder of eval-view predictions), each alone, scored as
    ``member_pairs.scores`` does (only ``keys`` where given), and the gain, under ``names`` in ``report``; printed
    as they come and written to ``out`` as JSON."""
    for run in solves:
        before = scores(run, [run / "solve" / "members" / "ce"])
        after = scores(run, [retrained(run)])
        before, after = ({k: v for k, v in s.items() if keys is None or k in keys} for s in (before, after))
        gain = {key: round(after[key] - before[key], 4) for key in before}
        report[run.name] = {names[0]: before, names[1]: after, "gain": gain}
        print(run.name, json.dumps(report[run.name]), flush=True)
    if out:
        out.write_text(json.dumps(report, indent=2) + "\n")
    return report


def retrain_arguments(doc: str, what_set_does: str, trained: str) -> argparse.Namespace:
    """The command line of the benchmarks that train finished solves' leads again: the solves, ``--set`` overrides
    (``what_set_does``), ``--work`` (where ``trained`` are trained) and ``--out``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("solves", type=Path, nargs="+", help="solve_on_persons.py output folders")
    parser.add_argument("--set", dest="settings", action="append", required=True, metavar="KEY=VALUE",
                        help=f"{what_set_does} (repeatable)")  # fmt: skip
    parser.add_argument("--work", type=Path, required=True, help=f"where the {trained} are trained")
    parser.add_argument("--out", type=Path, help="write the table as JSON here")
    return parser.parse_args()


def main() -> None:
    args = retrain_arguments(__doc__, "a config override of the retrained lead", "retrained leads")
    compare_leads(
        args.solves,
        lambda run: retrain_lead(run, args.work / run.name, args.settings),
        ("solve's lead", " ".join(args.settings)),
        {"command": sys.argv, "settings": args.settings},
        args.out,
    )


if __name__ == "__main__":
    main()
