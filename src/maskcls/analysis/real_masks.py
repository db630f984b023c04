"""The mask head on real photos: does a model trained on drawn masks recognise masks people really wear?

A real-mask folder holds photos and a ``labels.csv`` with ``path`` (relative to the folder) and ``mask``
(``wear``, ``incorrect`` or ``not_wear``), like ``../shared/data/realmask``. A masked photo counts as
right when the mask head says worn or worn incorrectly (web photos rarely say which of the two it is);
where some photos are labelled ``incorrect``, their recall is reported as well.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..core.labels import Mask, head_probabilities
from ..data.layout import DataError
from ..inference.predict import predict_table

LABELS_FILE = "labels.csv"
MASK_NAMES = {"wear": Mask.WEAR, "incorrect": Mask.INCORRECT, "not_wear": Mask.NOT_WEAR}


def read_real_masks(folder: str | Path) -> pd.DataFrame:
    """``image_id``, ``path`` and ``mask`` (a ``Mask`` value) of every photo in ``folder``'s ``labels.csv``;
    a missing file or column, an unknown mask name or a missing photo is a ``DataError`` naming it."""
    folder = Path(folder)
    labels_csv = folder / LABELS_FILE
    if not labels_csv.is_file():
        raise DataError(f"{labels_csv}: not found; a real-mask folder needs a labels.csv with path,mask")
    labels = pd.read_csv(labels_csv, dtype=str, keep_default_na=False)
    missing = [column for column in ("path", "mask") if column not in labels]
    if missing:
        raise DataError(f"{labels_csv}: missing column(s) {', '.join(missing)}; found {', '.join(labels.columns)}")
    if labels.empty:
        raise DataError(f"{labels_csv}: no photos listed")
    unknown = sorted(set(labels["mask"]) - set(MASK_NAMES))
    if unknown:
        raise DataError(f"{labels_csv}: unknown mask label(s) {unknown}; use {', '.join(MASK_NAMES)}")
    paths = [folder / p for p in labels["path"]]
    absent = [str(p) for p in paths if not p.is_file()]
    if absent:
        raise DataError(f"{labels_csv}: {len(absent)} listed photo(s) missing, first {absent[0]}")
    return pd.DataFrame(
        {
            "image_id": labels["path"],
            "path": [str(p) for p in paths],
            "mask": [int(MASK_NAMES[m]) for m in labels["mask"]],
        }
    )


def real_mask_scores(mask_probs: np.ndarray, truth: np.ndarray) -> dict:
    """Masked-or-not accuracy of mask-head probabilities ``(N, 3)`` against ``truth`` (``Mask`` values), with the
    recall of each side and, where some photos are labelled incorrect, theirs; unreadable (NaN) rows are left
    out and counted."""
    mask_probs, truth = np.asarray(mask_probs, dtype=np.float64), np.asarray(truth)
    readable = np.all(np.isfinite(mask_probs), axis=1)
    predicted, truth = mask_probs[readable].argmax(axis=1), truth[readable]
    masked, truly_masked = predicted != int(Mask.NOT_WEAR), truth != int(Mask.NOT_WEAR)
    right = masked == truly_masked
    scores = {
        "photos": int(readable.sum()),
        "unreadable": int((~readable).sum()),
        "accuracy": round(float(right.mean()), 4) if len(right) else None,
        "mask_worn_recall": round(float(right[truly_masked].mean()), 4) if truly_masked.any() else None,
        "no_mask_recall": round(float(right[~truly_masked].mean()), 4) if (~truly_masked).any() else None,
    }
    incorrect = truth == int(Mask.INCORRECT)
    if incorrect.any():
        scores["incorrect_recall"] = round(float((predicted[incorrect] == int(Mask.INCORRECT)).mean()), 4)
    return scores


def real_mask_accuracy(run_dir: str | Path, folder: str | Path, progress: bool = False, **predict_options) -> dict:
    """``real_mask_scores`` of any trained directory's predictions of the photos in a real-mask ``folder``."""
    photos = read_real_masks(folder)
    prediction = predict_table(run_dir, photos[["image_id", "path"]], progress=progress, **predict_options)
    mask_probs = head_probabilities(prediction.probs)["mask"]
    return {"folder": str(Path(folder).resolve()), **real_mask_scores(mask_probs, photos["mask"].to_numpy())}
