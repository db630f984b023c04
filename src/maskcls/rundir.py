"""What kind of trained directory a path is (a k-fold run, an ensemble, a combination), and the k-fold run behind it.

Ensembles and combinations train nothing themselves; their label schema, data folder and label fixes are those of
the k-fold runs they were built from.
"""

from __future__ import annotations

import json
from pathlib import Path

from .config import LabelsConfig

ENSEMBLE_FILE = "ensemble.json"
COMBINE_FILE = "combine.json"


def directory_kind(directory: str | Path) -> str:
    """``ensemble``, ``combination`` or ``run``."""
    directory = Path(directory)
    if (directory / ENSEMBLE_FILE).is_file():
        return "ensemble"
    if (directory / COMBINE_FILE).is_file():
        return "combination"
    return "run"


def kfold_run_of(directory: str | Path) -> Path:
    """The first k-fold run behind ``directory`` (itself for a run; an ensemble's first member; a combination's age
    source, whose thresholds decide the age groups)."""
    directory = Path(directory)
    kind = directory_kind(directory)
    if kind == "ensemble":
        return kfold_run_of(json.loads((directory / ENSEMBLE_FILE).read_text())["members"][0]["path"])
    if kind == "combination":
        return kfold_run_of(json.loads((directory / COMBINE_FILE).read_text())["sources"]["age"])
    return directory


def run_labels(directory: str | Path) -> LabelsConfig:
    """The label schema (age thresholds) the k-fold run behind ``directory`` was trained with."""
    run = kfold_run_of(directory)
    summary = json.loads((run / "summary.json").read_text())
    meta = json.loads((run / f"fold_{summary['folds'][0]['fold']}" / "model.json").read_text())
    return LabelsConfig.model_validate(meta["labels"])


def run_record(directory: str | Path) -> dict:
    """``run.json`` of the k-fold run behind ``directory`` (its data folder, extra photos, label fixes), or {}."""
    path = kfold_run_of(directory) / "run.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def run_label_fixes(directory: str | Path) -> Path | None:
    """The copy of the label fixes the k-fold run behind ``directory`` trained with, if any."""
    run = kfold_run_of(directory)
    return run / "label_fixes.csv" if run_record(run).get("label_fixes") else None
