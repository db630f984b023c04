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

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.artifacts import CALIBRATION_FILE, OOF_FILE, file_sha256
from ..core.io import write_json
from ..core.metrics import (
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability_table,
)
from ..core.plots import plt
from ..core.tables import probs_of, read_oof


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
        return {
            "temperature": self.temperature,
            "nll_before": self.nll_before,
            "nll_after": self.nll_after,
            "ece_before": self.ece_before,
            "ece_after": self.ece_after,
            "note": self.note,
        }


def calibration_report(
    probs: np.ndarray,
    labels: np.ndarray,
    person_ids: np.ndarray | None = None,
    temperature: float | None = None,
    splits: int = 5,
    seed: int = 0,
) -> CalibrationReport:
    """ECE and NLL before and after temperature scaling.

    With ``temperature`` given (fitted elsewhere, e.g. on a run's OOF and applied to new labelled photos), it is
    applied as it is. Otherwise the "after" numbers are honest: each row is scaled by a temperature fitted on other
    persons (``splits`` person-grouped folds); the reported temperature is the one fitted on all rows.
    """
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    if temperature is not None:
        after, note = (
            apply_temperature(probs, temperature),
            f"temperature {temperature:.3f} fitted on the run's out-of-fold predictions",
        )
    else:
        from ..core.crossfit import cross_fit

        temperature = fit_temperature(probs, labels)
        groups = person_ids if person_ids is not None else np.arange(len(labels))
        splits = min(splits, len(np.unique(groups)))
        after, _ = cross_fit(
            lambda fit, score: apply_temperature(probs[score], fit_temperature(probs[fit], labels[fit])),
            labels,
            groups,
            splits,
            seed,
        )
        note = f"after: each photo scaled by a temperature fitted on other persons ({splits} person-grouped splits)"
    return CalibrationReport(
        temperature,
        negative_log_likelihood(probs, labels),
        negative_log_likelihood(after, labels),
        expected_calibration_error(probs, labels),
        expected_calibration_error(after, labels),
        reliability_table(probs, labels),
        reliability_table(after, labels),
        note,
    )


def calibrate_run(run_dir: str | Path) -> dict:
    """Fit the temperature on ``run_dir/oof.csv`` and store it (with the OOF table's hash) in ``calibration.json``."""
    run_dir = Path(run_dir)
    oof_path = run_dir / OOF_FILE
    oof = read_oof(oof_path)
    labels = oof["label"].to_numpy(dtype=np.int64)
    report = calibration_report(probs_of(oof), labels, oof["person_id"].to_numpy())
    record = {
        **report.scores(),
        "fitted_on": str(oof_path.resolve()),
        "oof_sha256": file_sha256(oof_path),
        "photos": int(len(oof)),
    }
    write_json(run_dir / CALIBRATION_FILE, record)
    return record


def reliability_figure(report: CalibrationReport):
    """Reliability diagram before and after temperature scaling, with the photos per bin underneath."""
    figure, (axis, counts) = plt.subplots(2, 1, figsize=(6, 6), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    width = 1.0 / len(report.reliability_before["count"])
    for table, label, colour in (
        (report.reliability_before, f"before (ECE {report.ece_before:.3f})", "#dd8452"),
        (report.reliability_after, f"after T={report.temperature:.2f} (ECE {report.ece_after:.3f})", "#4c72b0"),
    ):
        used = table["count"] > 0
        axis.plot(table["confidence"][used], table["accuracy"][used], marker="o", color=colour, label=label)
        counts.bar(table["lower"] + width / 2, table["count"], width=width * 0.9, alpha=0.5, color=colour)
    axis.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    axis.set(ylabel="accuracy", title="reliability (top-1 class)", xlim=(0, 1), ylim=(0, 1))
    axis.legend(fontsize=8)
    counts.set(xlabel="confidence", ylabel="photos")
    figure.tight_layout()
    return figure
