"""The competition metric (macro F1 over the 18 classes) and the per-head scores, from probability tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score

from .labels import decode


def classification_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Macro F1 and accuracy of the 18-class argmax, plus accuracy and macro F1 of mask, gender and age.

    Macro F1 averages over the classes present in labels or predictions (scikit-learn's default), as
    the competition scored it.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return {}
    predicted = np.asarray(probs).argmax(axis=1)
    metrics = {
        "macro_f1": float(f1_score(labels, predicted, average="macro")),
        "accuracy": float(accuracy_score(labels, predicted)),
    }
    for head, truth, guess in zip(("mask", "gender", "age"), decode(labels), decode(predicted)):
        metrics[f"{head}_accuracy"] = float(accuracy_score(truth, guess))
        metrics[f"{head}_macro_f1"] = float(f1_score(truth, guess, average="macro"))
    return metrics


def score_submission(submission_csv: str | Path, answers_csv: str | Path) -> dict[str, float]:
    """Metrics of a ``submission.csv`` (ImageID, ans) against a table of true ``label`` per ImageID."""
    submission = pd.read_csv(submission_csv, dtype={"ImageID": str})
    answers = pd.read_csv(answers_csv, dtype={"ImageID": str})
    for table, path, column in ((submission, submission_csv, "ans"), (answers, answers_csv, "label")):
        missing = {"ImageID", column} - set(table.columns)
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    merged = submission.merge(answers, on="ImageID", how="left")
    if merged["label"].isna().any():
        raise ValueError(f"{answers_csv} has no answer for {int(merged['label'].isna().sum())} submitted ImageID(s)")
    one_hot = np.eye(18)[merged["ans"].astype(int)]
    return classification_metrics(merged["label"].astype(int).to_numpy(), one_hot)
