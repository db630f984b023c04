"""The competition metric (macro F1 over the 18 classes) and the per-head scores, from probability tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score

from .labels import NUM_CLASSES, decode


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


def macro_f1(labels: np.ndarray, predicted: np.ndarray) -> float:
    """Macro F1 over the classes present in ``labels`` or ``predicted`` (as ``classification_metrics``), fast.

    Searches (weights, class scales, age cuts) score thousands of candidates; this skips scikit-learn's checks.
    """
    labels = np.asarray(labels, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    size = NUM_CLASSES * NUM_CLASSES
    confusion = np.bincount(labels * NUM_CLASSES + predicted, minlength=size).reshape(NUM_CLASSES, NUM_CLASSES)
    true_pos = np.diag(confusion).astype(np.float64)
    support, guessed = confusion.sum(axis=1), confusion.sum(axis=0)
    present = (support + guessed) > 0
    if not present.any():
        return 0.0
    return float(np.mean(2 * true_pos[present] / (support[present] + guessed[present])))


def head_metrics(
    labels: np.ndarray, head_probs: np.ndarray, head: str, true_ages: np.ndarray | None = None, predicted_ages: np.ndarray | None = None
) -> dict[str, float]:
    """Scores of a single-head model (mask, gender or age): macro F1 and accuracy of that head, and for
    age regression the mean absolute error in years."""
    truth = decode(np.asarray(labels, dtype=np.int64))[("mask", "gender", "age").index(head)]
    guess = np.asarray(head_probs).argmax(axis=1)
    metrics = {"macro_f1": float(f1_score(truth, guess, average="macro")), "accuracy": float(accuracy_score(truth, guess))}
    if predicted_ages is not None and true_ages is not None:
        known = np.asarray(true_ages) >= 0
        if known.any():
            metrics["age_mae"] = float(np.abs(np.asarray(predicted_ages)[known] - np.asarray(true_ages)[known]).mean())
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
