"""Person-level stratified k-fold: all photos of one person land in the same fold.

Splitting photos instead of people lets a model recognise a face it trained on, and validation lies.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold


def assign_folds(manifest: pd.DataFrame, n_folds: int, seed: int) -> np.ndarray:
    """Fold index (0..n_folds-1) of every manifest row, stratified by ``label``, grouped by ``person_id``."""
    persons = manifest["person_id"].nunique()
    if not 2 <= n_folds <= persons:
        raise ValueError(f"cv.folds must be between 2 and the number of persons ({persons}), got {n_folds}")
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = np.full(len(manifest), -1, dtype=np.int64)
    with warnings.catch_warnings():
        # Rare classes with fewer persons than folds are expected on small data; the split stays valid.
        warnings.filterwarnings("ignore", message="The least populated class")
        for fold, (_, val_idx) in enumerate(
            splitter.split(np.zeros(len(manifest)), manifest["label"], manifest["person_id"])
        ):
            folds[val_idx] = fold
    return folds
