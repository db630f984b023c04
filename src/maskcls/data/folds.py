"""Folds fixed by the user: another run's ``folds.csv`` read back (person_id, fold), checked against the manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..core.artifacts import FOLDS_FILE
from .layout import DataError


def folds_from_file(manifest: pd.DataFrame, folds_csv: str | Path, n_folds: int) -> np.ndarray:
    """Fold index of every manifest row from another run's ``folds.csv`` (person_id, fold): the same persons in the
    same folds, whatever the labels now are (e.g. after label fixes), so two runs compare on equal terms."""

    folds_csv = Path(folds_csv)
    if not folds_csv.is_file():
        raise DataError(f"cv.folds_file: {folds_csv} not found (a run's {FOLDS_FILE})")
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
