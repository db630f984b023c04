"""The one module that knows a trained directory: its kind, its file names, its members, the run behind it.

Kinds (``directory_kind``):

- ``run``: a k-fold run (``maskcls train``): ``config.yaml``, ``folds.csv``, ``run.json``, one ``fold_<k>/``
  per fold (``model.safetensors``, ``model.json``, ``metrics.csv``, ``fold.json``), then ``oof.csv`` and
  ``summary.json`` when every fold has finished.
- ``ensemble``: ``ensemble.json`` lists its member directories (``maskcls ensemble``).
- ``combination``: ``combine.json`` names a source directory per head (``maskcls train --age-config``).
- ``solve``: ``plan.json`` and ``summary.json`` of ``maskcls solve``; its chosen combination is in ``final/``.
- ``onnx``: an exported ``.onnx`` file (``maskcls export``), its metadata inside the file.

Any trained directory gets ``test_probs.csv``, ``submission.csv`` and ``predict.json`` from ``maskcls predict``.
Ensembles and combinations train nothing themselves; their label schema, data folder and label fixes are
those of the k-fold runs they were built from.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .config import LabelsConfig

CONFIG_FILE = "config.yaml"
FOLDS_FILE = "folds.csv"
RUN_FILE = "run.json"
SUMMARY_FILE = "summary.json"
OOF_FILE = "oof.csv"
TEST_PROBS_FILE = "test_probs.csv"
SUBMISSION_FILE = "submission.csv"
PREDICT_FILE = "predict.json"
PREDICT_SKIPPED_FILE = "predict_skipped.csv"
SKIPPED_FILE = "skipped.csv"
ENSEMBLE_FILE = "ensemble.json"
COMBINE_FILE = "combine.json"
PLAN_FILE = "plan.json"
CALIBRATION_FILE = "calibration.json"
LABEL_FIXES_FILE = "label_fixes.csv"
MODEL_WEIGHTS_FILE = "model.safetensors"
MODEL_META_FILE = "model.json"
FOLD_METRICS_FILE = "metrics.csv"
FOLD_FILE = "fold.json"
LAST_CHECKPOINT_FILE = "last.ckpt"
SOLVE_FINAL_DIR = "final"
ONNX_SUFFIX = ".onnx"

KINDS = ("run", "ensemble", "combination", "solve", "onnx")


class RunError(RuntimeError):
    """A trained directory that cannot be used as asked (exists already, incomplete, inconsistent)."""


class CalibrationError(ValueError):
    """A run without a stored temperature, or one fitted on another OOF table."""


def fold_dir(run_dir: str | Path, fold: int) -> Path:
    """Where fold ``fold`` of a k-fold run keeps its model and metrics."""
    return Path(run_dir) / f"fold_{fold}"


def finished_fold_records(run_dir: str | Path) -> list[Path]:
    """The ``fold.json`` of every fold that finished training."""
    return sorted(Path(run_dir).glob(f"fold_*/{FOLD_FILE}"))


def directory_kind(path: str | Path) -> str:
    """``run``, ``ensemble``, ``combination``, ``solve`` or ``onnx`` (see the module docstring)."""
    path = Path(path)
    if path.suffix == ONNX_SUFFIX and path.is_file():
        return "onnx"
    if (path / ENSEMBLE_FILE).is_file():
        return "ensemble"
    if (path / COMBINE_FILE).is_file():
        return "combination"
    if (path / PLAN_FILE).is_file():
        return "solve"
    return "run"


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def read_summary(directory: str | Path) -> dict:
    """``summary.json`` of a trained directory (a finished run, ensemble, combination or solve)."""
    return read_json(Path(directory) / SUMMARY_FILE)


def ensemble_members(directory: str | Path) -> list[Path]:
    """The member directories of an ensemble, in their order."""
    return [Path(member["path"]) for member in read_json(Path(directory) / ENSEMBLE_FILE)["members"]]


def combination_sources(directory: str | Path) -> dict[str, Path]:
    """Head name (``mask``, ``gender``, ``age``) -> the directory a combination takes it from."""
    return {head: Path(source) for head, source in read_json(Path(directory) / COMBINE_FILE)["sources"].items()}


def solve_final(directory: str | Path) -> Path:
    """The combination a solve chose (an ensemble directory)."""
    return Path(directory) / SOLVE_FINAL_DIR


def kfold_runs(directory: str | Path) -> list[Path]:
    """Every k-fold run behind ``directory``, each once, in order (a run is its own)."""
    directory = Path(directory)
    kind = directory_kind(directory)
    if kind == "ensemble":
        nested = [run for member in ensemble_members(directory) for run in kfold_runs(member)]
    elif kind == "combination":
        nested = [
            run for source in dict.fromkeys(combination_sources(directory).values()) for run in kfold_runs(source)
        ]
    elif kind == "solve":
        nested = kfold_runs(solve_final(directory))
    else:
        nested = [directory]
    return list(dict.fromkeys(nested))


def kfold_run_of(directory: str | Path, head: str = "age") -> Path:
    """The first k-fold run behind ``directory``: itself for a run, an ensemble's first member's, a solve's final
    combination's, and a combination's ``head`` source's (by default age, whose thresholds decide the age groups)."""
    directory = Path(directory)
    kind = directory_kind(directory)
    if kind == "ensemble":
        return kfold_run_of(ensemble_members(directory)[0], head)
    if kind == "combination":
        return kfold_run_of(combination_sources(directory)[head], head)
    if kind == "solve":
        return kfold_run_of(solve_final(directory), head)
    return directory


def run_labels(directory: str | Path) -> LabelsConfig:
    """The label schema (age thresholds) the k-fold run behind ``directory`` was trained with."""
    run = kfold_run_of(directory)
    summary = read_summary(run)
    meta = read_json(fold_dir(run, summary["folds"][0]["fold"]) / MODEL_META_FILE)
    return LabelsConfig.model_validate(meta["labels"])


def run_record(directory: str | Path) -> dict:
    """``run.json`` of the k-fold run behind ``directory`` (its data folder, extra photos, label fixes), or {}."""
    path = kfold_run_of(directory) / RUN_FILE
    return read_json(path) if path.is_file() else {}


def run_label_fixes(directory: str | Path) -> Path | None:
    """The copy of the label fixes the k-fold run behind ``directory`` trained with, if any."""
    run = kfold_run_of(directory)
    return run / LABEL_FIXES_FILE if run_record(run).get("label_fixes") else None


def check_trained_dir(directory: str | Path) -> None:
    """Refuse what cannot predict, telling apart a folder that is no run at all from a run that did not finish."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RunError(f"run directory not found: {directory}")
    if any((directory / name).is_file() for name in (SUMMARY_FILE, ENSEMBLE_FILE, COMBINE_FILE)):
        return
    if (directory / CONFIG_FILE).is_file() and (directory / RUN_FILE).is_file():
        raise RunError(
            f"{directory} is an unfinished run (no {SUMMARY_FILE} yet): "
            f"continue it with `maskcls train --resume {directory}`"
        )
    looks_like = ""
    if (directory / "info.csv").is_file():
        looks_like = " It looks like an eval folder: pass it as --data, and a trained run as --run."
    elif (directory / "train.csv").is_file():
        looks_like = (
            f" It looks like a training folder: train on it first (`maskcls train --data {directory} --out runs/NAME`)."
        )
    raise RunError(
        f"{directory} is not a maskcls run (it has no {SUMMARY_FILE}, {ENSEMBLE_FILE} or {COMBINE_FILE}): "
        "give --run a folder made by `maskcls train`, `maskcls ensemble` or `maskcls train --age-config`."
        f"{looks_like}"
    )


def predicted_for(directory: str | Path, eval_dir: str | Path) -> bool:
    """Whether ``directory/test_probs.csv`` holds predictions of ``eval_dir``: written by ``maskcls predict`` for it,
    or an ensemble built from members that all were."""
    directory, eval_dir = Path(directory), Path(eval_dir).resolve()
    if not (directory / TEST_PROBS_FILE).is_file():
        return False
    if (directory / PREDICT_FILE).is_file():
        return Path(read_json(directory / PREDICT_FILE)["data"]) == eval_dir
    if (directory / ENSEMBLE_FILE).is_file():
        return all(predicted_for(member, eval_dir) for member in ensemble_members(directory))
    return False


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def stored_temperature(run_dir: str | Path) -> float:
    """The temperature ``maskcls calibrate`` stored for ``run_dir``; refused if the OOF table changed since."""
    run_dir = Path(run_dir)
    path = run_dir / CALIBRATION_FILE
    if not path.is_file():
        raise CalibrationError(f"{run_dir} has no {CALIBRATION_FILE}: run `maskcls calibrate --run {run_dir}` first")
    record = read_json(path)
    oof_path = run_dir / OOF_FILE
    if oof_path.is_file() and file_sha256(oof_path) != record.get("oof_sha256"):
        raise CalibrationError(
            f"{run_dir}/{OOF_FILE} changed since {path} was written: run `maskcls calibrate --run {run_dir}` again"
        )
    return float(record["temperature"])
