"""The tables every stage exchanges, keyed by image id: out-of-fold and test probabilities.

``oof.csv``: image_id, person_id, fold, label, p0..p17 (one row per training photo, predicted by the
model that did not train on it). ``test_probs.csv``: image_id, p0..p17 (extra columns, such as
``entropy``, may follow). Readers here check the columns at the door.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .labels import NUM_CLASSES

PROB_COLUMNS = [f"p{i}" for i in range(NUM_CLASSES)]
# Probability columns of single-head runs (separate mask / gender / age models).
HEAD_COLUMNS = {"mask": ["m0", "m1", "m2"], "gender": ["g0", "g1"], "age": ["a0", "a1", "a2"]}
OOF_COLUMNS = ["image_id", "person_id", "fold", "label", *PROB_COLUMNS]
TEST_COLUMNS = ["image_id", *PROB_COLUMNS]
# A solve's test_probs.csv: the probabilities its submission takes the argmax of (after every kept stage).
SUBMITTED_COLUMNS = [f"submitted_p{i}" for i in range(NUM_CLASSES)]


class TableError(ValueError):
    """A probability table with missing columns or impossible values."""


def read_oof(path: str | Path) -> pd.DataFrame:
    return _read(path, OOF_COLUMNS, {"image_id": str, "person_id": str})


def read_test_probs(path: str | Path) -> pd.DataFrame:
    return _read(path, TEST_COLUMNS, {"image_id": str})


def probs_of(frame: pd.DataFrame) -> np.ndarray:
    """The ``(N, 18)`` probability block of an OOF or test table."""
    return frame[PROB_COLUMNS].to_numpy(dtype=np.float64)


def with_probs(frame: pd.DataFrame, probs: np.ndarray) -> pd.DataFrame:
    """``frame``'s key columns followed by ``probs`` as p0..p17 (replacing any it had)."""
    keys = frame.drop(columns=[c for c in frame.columns if c in PROB_COLUMNS]).reset_index(drop=True)
    return pd.concat([keys, pd.DataFrame(np.asarray(probs), columns=PROB_COLUMNS)], axis=1)


def answers_of(probs: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """The class of each row: the argmax of ``probs``, ``fallback`` where a row is NaN (an unreadable photo)."""
    probs = np.asarray(probs, dtype=np.float64)
    readable = np.all(np.isfinite(probs), axis=1)
    return np.where(readable, np.nan_to_num(probs, nan=-1.0).argmax(axis=1), np.asarray(fallback).astype(np.int64))


def _read(path: str | Path, columns: list[str], dtypes: dict) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise TableError(f"{path}: file not found")
    frame = pd.read_csv(path, dtype=dtypes)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise TableError(f"{path}: missing column(s) {', '.join(missing)}")
    if frame["image_id"].duplicated().any():
        raise TableError(
            f"{path}: image_id '{frame['image_id'][frame['image_id'].duplicated()].iloc[0]}' appears more than once"
        )
    return frame
