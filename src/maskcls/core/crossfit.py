"""Cross-fitting: out-of-sample predictions of anything fitted on rows, split by person.

A learner fitted and scored on the same rows looks better than it is. ``cross_fit`` splits the rows by
person (stratified by class), fits on the other persons' rows only and predicts each split, so every
returned row comes from a model that never saw that row nor any other photo of the same person.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from .folds import assign_folds
from .labels import NUM_CLASSES


def person_splits(labels: np.ndarray, person_ids: np.ndarray, n_splits: int = 5, seed: int = 0) -> np.ndarray:
    """Split id (0..n_splits-1) of every row: grouped by person, stratified by class (``assign_folds``)."""
    labels = np.asarray(labels)
    person_ids = np.asarray(person_ids)
    if len(person_ids) != len(labels):
        raise ValueError(f"{len(person_ids)} person ids for {len(labels)} labels")
    return assign_folds(pd.DataFrame({"label": labels, "person_id": person_ids}), n_splits, seed)


def cross_fit(
    fit_predict: Callable[[np.ndarray, np.ndarray], np.ndarray],
    labels: np.ndarray,
    person_ids: np.ndarray,
    n_splits: int = 5,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-sample ``(N, 18)`` probabilities and the split id of every row.

    ``fit_predict(fit_rows, score_rows)`` fits on the ``fit_rows`` indices only and returns probabilities
    for ``score_rows``. The two index sets never share a row or a person; that is checked, not assumed.
    """
    person_ids = np.asarray(person_ids)
    split_ids = person_splits(labels, person_ids, n_splits, seed)
    probs = np.full((len(split_ids), NUM_CLASSES), np.nan)
    for split in np.unique(split_ids):
        score_rows = np.flatnonzero(split_ids == split)
        fit_rows = np.flatnonzero(split_ids != split)
        shared = np.intersect1d(person_ids[fit_rows], person_ids[score_rows])
        if shared.size:
            raise RuntimeError(f"split {split}: person '{shared[0]}' is in both the fitting and the scoring rows")
        predicted = np.asarray(fit_predict(fit_rows, score_rows), dtype=np.float64)
        if predicted.shape != (len(score_rows), NUM_CLASSES):
            raise ValueError(
                f"split {split}: fit_predict returned shape {predicted.shape}, "
                f"expected {(len(score_rows), NUM_CLASSES)}"
            )
        probs[score_rows] = predicted
    return probs, split_ids
