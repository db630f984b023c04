"""Pseudo-labels: unlabelled (eval) photos the ensemble is confident about, to add to the next training round.

A plain confidence threshold mostly picks the easy, common classes (masked young people); a per-class
cap keeps the added labels from swamping the rare ones.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.labels import NUM_CLASSES, AgeThresholds, class_names
from ..core.tables import PROB_COLUMNS


def select_pseudo_labels(
    test_probs: pd.DataFrame, threshold: float = 0.9, max_per_class: int | None = None
) -> pd.DataFrame:
    """Rows (image_id, label, confidence) whose top probability is >= ``threshold``.

    With ``max_per_class``, each class keeps its most confident rows only (ties keep table order).
    Rows without probabilities (NaN: photos that could not be read) are never picked. The result is
    ordered by class, then by confidence, highest first.
    """
    missing = [c for c in ("image_id", *PROB_COLUMNS) if c not in test_probs.columns]
    if missing:
        raise ValueError(f"test probabilities table is missing column(s) {', '.join(missing)}")
    if not 0 < threshold <= 1:
        raise ValueError(f"pseudo-label threshold must be in (0, 1], got {threshold}")
    if max_per_class is not None and max_per_class < 1:
        raise ValueError(f"max_per_class must be >= 1 (or None for no cap), got {max_per_class}")
    probs = test_probs[PROB_COLUMNS].to_numpy(dtype=np.float64)
    readable = np.all(np.isfinite(probs), axis=1)
    confidence = np.where(readable, np.nan_to_num(probs, nan=0.0).max(axis=1), -np.inf)
    candidates = pd.DataFrame(
        {
            "image_id": test_probs["image_id"].to_numpy(),
            "label": np.nan_to_num(probs, nan=0.0).argmax(axis=1),
            "confidence": confidence,
        }
    )
    candidates = candidates[readable & (confidence >= threshold)]
    ranked = candidates.sort_values(["label", "confidence"], ascending=[True, False], kind="stable")
    if max_per_class is not None:
        ranked = ranked.groupby("label", sort=False).head(max_per_class)
    return ranked.reset_index(drop=True)


def pseudo_label_counts(selected: pd.DataFrame, thresholds: AgeThresholds = AgeThresholds()) -> pd.DataFrame:
    """How many pseudo-labels each of the 18 classes got (zeros included), with readable class names."""
    if "label" not in selected.columns:
        raise ValueError("selected pseudo-labels table has no 'label' column")
    counts = np.bincount(selected["label"].to_numpy(dtype=np.int64), minlength=NUM_CLASSES)
    return pd.DataFrame({"class": np.arange(NUM_CLASSES), "name": class_names(thresholds), "count": counts})
