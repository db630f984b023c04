"""Train a finished ``solve_on_persons.py`` run's lead member again with one thing changed (its settings or its
training persons), and predict solve's eval view with it: the helper of the lead-variant benchmarks
(``train_age_soft.py``, ``refit_on_all.py``).

The lead (``solve/members/ce``) is trained from its own ``config.yaml`` and extra faces, so with nothing changed
it is the same run (training is deterministic on the CPU: two solves that planned the same lead wrote the same
predictions).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


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
