"""Person-level stratified k-fold: all photos of one person land in the same fold.

Splitting photos instead of people lets a model recognise a face it trained on, and validation lies.
"""

from __future__ import annotations

import warnings
from pathlib import Path

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
        for fold, (_, val_idx) in enumerate(splitter.split(np.zeros(len(manifest)), manifest["label"], manifest["person_id"])):
            folds[val_idx] = fold
    return folds


def folds_from_file(manifest: pd.DataFrame, folds_csv: str | Path, n_folds: int) -> np.ndarray:
    """Fold index of every manifest row from another run's ``folds.csv`` (person_id, fold): the same persons in the
    same folds, whatever the labels now are (e.g. after label fixes), so two runs compare on equal terms."""
    from .layout import DataError

    folds_csv = Path(folds_csv)
    if not folds_csv.is_file():
        raise DataError(f"cv.folds_file: {folds_csv} not found (a run's folds.csv)")
    table = pd.read_csv(folds_csv, dtype={"person_id": str})
    if not {"person_id", "fold"} <= set(table.columns):
        raise DataError(f"cv.folds_file: {folds_csv} needs the columns person_id and fold")
    table = table[table["fold"] >= 0]
    by_person = table.drop_duplicates("person_id").set_index("person_id")["fold"]
    if table.groupby("person_id")["fold"].nunique().gt(1).any():
        raise DataError(f"cv.folds_file: {folds_csv} puts one person in several folds")
    found = sorted(by_person.unique())
    if found != list(range(n_folds)):
        raise DataError(f"cv.folds_file: {folds_csv} has folds {found}, the recipe asks for cv.folds={n_folds}")
    missing = sorted(set(manifest["person_id"]) - set(by_person.index))
    if missing:
        raise DataError(f"cv.folds_file: {folds_csv} has no fold for {len(missing)} person(s), e.g. '{missing[0]}'")
    return by_person.loc[manifest["person_id"]].to_numpy(dtype=np.int64)
