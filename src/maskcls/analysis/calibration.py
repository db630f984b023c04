"""Calibration: does a predicted 0.9 come true 9 times in 10? Expected calibration error, reliability
diagrams, and temperature scaling fitted on out-of-fold predictions.

Tables hold probabilities, not logits. ``log p`` is a valid logit vector (softmax(log p) = p), so scaling it by
``1 / T`` is exactly temperature scaling for a softmax head, and for the three-head model (p = product of three
softmaxes) it scales each head's logits by the same ``1 / T``. One temperature never changes a row's argmax, so
accuracy and macro F1 stay as they are; only the confidence moves.

``maskcls calibrate --run RUN`` fits the temperature on the run's ``oof.csv`` and stores it in
``RUN/calibration.json``; ``maskcls predict --calibrate`` applies it to new predictions.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import write_json
from ..tables import probs_of, read_oof

CALIBRATION_FILE = "calibration.json"
_EPS = 1e-12
_LOG_T_BOUNDS = (np.log(0.05), np.log(20.0))


class CalibrationError(ValueError):
    """A run without a stored temperature, or one fitted on another OOF table."""


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)`` per row; NaN rows (unreadable photos) stay NaN."""
    probs = np.asarray(probs, dtype=np.float64)
    logits = np.log(np.clip(probs, _EPS, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=1, keepdims=True)


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean ``-log p(true class)``."""
    probs = np.asarray(probs, dtype=np.float64)
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], _EPS, 1.0))))


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the NLL of ``labels`` (bounded to 0.05..20, searched on log T)."""
    from scipy.optimize import minimize_scalar

    log_probs = np.log(np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1.0))
    labels = np.asarray(labels, dtype=np.int64)

    def nll(log_t: float) -> float:
        logits = log_probs / np.exp(log_t)
        logits = logits - logits.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(logits).sum(axis=1)) - logits[np.arange(len(labels)), labels]))

    return float(np.exp(minimize_scalar(nll, bounds=_LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-4}).x))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Top-1 ECE: the photo-weighted mean gap between confidence and accuracy over equal-width confidence bins."""
    table = reliability_table(probs, labels, bins)
    return float(np.sum(table["count"] * np.abs(table["accuracy"] - table["confidence"])) / max(table["count"].sum(), 1))


def reliability_table(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> dict[str, np.ndarray]:
    """Per confidence bin: ``count``, mean ``confidence`` and ``accuracy`` of the top-1 class (empty bins: count 0)."""
    probs = np.asarray(probs, dtype=np.float64)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(labels)
    index = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore"):
        mean_confidence = np.bincount(index, weights=confidence, minlength=bins) / count
        accuracy = np.bincount(index, weights=correct.astype(np.float64), minlength=bins) / count
    return {"lower": np.arange(bins) / bins, "count": count, "confidence": np.nan_to_num(mean_confidence), "accuracy": np.nan_to_num(accuracy)}


@dataclass
class CalibrationReport:
    """Before / after temperature scaling on one table of predictions."""

    temperature: float
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float
    reliability_before: dict
    reliability_after: dict
    note: str

    def scores(self) -> dict:
        return {"temperature": self.temperature, "nll_before": self.nll_before, "nll_after": self.nll_after,
                "ece_before": self.ece_before, "ece_after": self.ece_after, "note": self.note}


def calibration_report(
    probs: np.ndarray, labels: np.ndarray, person_ids: np.ndarray | None = None, temperature: float | None = None, splits: int = 5, seed: int = 0
) -> CalibrationReport:
    """ECE and NLL before and after temperature scaling.

    With ``temperature`` given (fitted elsewhere, e.g. on a run's OOF and applied to new labelled photos), it is
    applied as it is. Otherwise the "after" numbers are honest: each row is scaled by a temperature fitted on other
    persons (``splits`` person-grouped folds); the reported temperature is the one fitted on all rows.
    """
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    if temperature is not None:
        after, note = apply_temperature(probs, temperature), f"temperature {temperature:.3f} fitted on the run's out-of-fold predictions"
    else:
        from ..ensemble.stacking import cross_fit

        temperature = fit_temperature(probs, labels)
        groups = person_ids if person_ids is not None else np.arange(len(labels))
        splits = min(splits, len(np.unique(groups)))
        after, _ = cross_fit(lambda fit, score: apply_temperature(probs[score], fit_temperature(probs[fit], labels[fit])), labels, groups, splits, seed)
        note = f"after: each photo scaled by a temperature fitted on other persons ({splits} person-grouped splits)"
    return CalibrationReport(
        temperature, negative_log_likelihood(probs, labels), negative_log_likelihood(after, labels),
        expected_calibration_error(probs, labels), expected_calibration_error(after, labels),
        reliability_table(probs, labels), reliability_table(after, labels), note,
    )


def calibrate_run(run_dir: str | Path) -> dict:
    """Fit the temperature on ``run_dir/oof.csv`` and store it (with the OOF table's hash) in ``calibration.json``."""
    run_dir = Path(run_dir)
    oof_path = run_dir / "oof.csv"
    oof = read_oof(oof_path)
    labels = oof["label"].to_numpy(dtype=np.int64)
    report = calibration_report(probs_of(oof), labels, oof["person_id"].to_numpy())
    record = {**report.scores(), "fitted_on": str(oof_path.resolve()), "oof_sha256": _sha256(oof_path), "photos": int(len(oof))}
    write_json(run_dir / CALIBRATION_FILE, record)
    return record


def stored_temperature(run_dir: str | Path) -> float:
    """The temperature ``calibrate_run`` stored for ``run_dir``; refused if the OOF table changed since."""
    run_dir = Path(run_dir)
    path = run_dir / CALIBRATION_FILE
    if not path.is_file():
        raise CalibrationError(f"{run_dir} has no {CALIBRATION_FILE}: run `maskcls calibrate --run {run_dir}` first")
    record = json.loads(path.read_text())
    oof_path = run_dir / "oof.csv"
    if oof_path.is_file() and _sha256(oof_path) != record.get("oof_sha256"):
        raise CalibrationError(f"{run_dir}/oof.csv changed since {path} was written: run `maskcls calibrate --run {run_dir}` again")
    return float(record["temperature"])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
