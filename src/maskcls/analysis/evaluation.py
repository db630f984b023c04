"""The tables of an evaluation, computed from labels and probabilities alone (``report.py`` draws and assembles them).

Per-class precision / recall / F1 with each class's cost to macro F1, confusion matrices of the classes and heads,
the most frequent mistakes, the most confident wrong predictions, and which photos to explain with Grad-CAM.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from ..core.labels import (
    GENDER_NAMES,
    HEAD_SIZES,
    MASK_NAMES,
    NUM_CLASSES,
    AgeThresholds,
    class_names,
    decode,
    head_probabilities,
)
from ..core.tables import probs_of

HEADS = ("mask", "gender", "age")


def per_class_table(labels: np.ndarray, predicted: np.ndarray, names: list[str]) -> pd.DataFrame:
    """Precision, recall, F1, support and predicted count per class, and ``macro_f1_cost`` = (1 - F1) / classes:
    what each class takes off macro F1 (the costs of the classes present add up to 1 - macro F1)."""
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=range(NUM_CLASSES), zero_division=0
    )
    guessed = np.bincount(predicted, minlength=NUM_CLASSES)
    present = (support + guessed) > 0
    cost = np.where(present, (1 - f1) / max(present.sum(), 1), 0.0)
    return pd.DataFrame(
        {
            "class": range(NUM_CLASSES),
            "name": names,
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": support,
            "predicted": guessed,
            "macro_f1_cost": cost,
        }
    )


def confusion_tables(labels: np.ndarray, predicted: np.ndarray) -> dict[str, np.ndarray]:
    """Confusion counts (rows: true, columns: predicted) of the 18 classes and of each head."""
    matrices = {"class": confusion_matrix(labels, predicted, labels=range(NUM_CLASSES))}
    for head, truth, guess in zip(HEADS, decode(labels), decode(predicted), strict=False):
        matrices[head] = confusion_matrix(truth, guess, labels=range(HEAD_SIZES[head]))
    return matrices


def head_names(head: str, thresholds: AgeThresholds) -> list[str]:
    return {
        "mask": list(MASK_NAMES),
        "gender": list(GENDER_NAMES),
        "age": list(thresholds.names()),
        "class": class_names(thresholds),
    }[head]


def top_confusions(
    labels: np.ndarray, predicted: np.ndarray, head: str, thresholds: AgeThresholds, n: int = 5
) -> pd.DataFrame:
    """The ``n`` most frequent (true, predicted) mistakes of a head (``class`` for the 18 classes), with their share of
    the true value."""
    if head == "class":
        truth, guess = np.asarray(labels), np.asarray(predicted)
    else:
        index = HEADS.index(head)
        truth, guess = decode(labels)[index], decode(predicted)[index]
    names = head_names(head, thresholds)
    matrix = confusion_matrix(truth, guess, labels=range(len(names)))
    wrong = [(matrix[t, p], t, p) for t in range(len(names)) for p in range(len(names)) if t != p and matrix[t, p] > 0]
    wrong.sort(reverse=True)
    return pd.DataFrame(
        [
            {
                "head": head,
                "true": names[t],
                "predicted": names[p],
                "photos": int(count),
                "share_of_true": count / max(matrix[t].sum(), 1),
            }
            for count, t, p in wrong[:n]
        ],
        columns=["head", "true", "predicted", "photos", "share_of_true"],
    )


def worst_predictions(table: pd.DataFrame, head: str, n: int) -> pd.DataFrame:
    """The ``n`` most confident wrong predictions of a head, one photo per person."""
    true_values, predicted_values, confidence = _head_columns(table, head)
    wrong = np.flatnonzero(predicted_values != true_values)
    order = wrong[np.argsort(-confidence[wrong], kind="stable")]
    rows = table.iloc[order].assign(
        head=head, true_value=true_values[order], predicted_value=predicted_values[order], confidence=confidence[order]
    )
    rows = rows.drop_duplicates("person_id").head(n)
    keep = ["head", "image_id", "person_id", "true_value", "predicted_value", "confidence"] + (
        ["path"] if "path" in rows else []
    )
    return rows[keep].reset_index(drop=True)


def _head_columns(table: pd.DataFrame, head: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True value, predicted value and the predicted value's probability of one head for every row."""
    marginals = head_probabilities(probs_of(table))[head]
    true_values = decode(table["label"].to_numpy(dtype=np.int64))[HEADS.index(head)]
    predicted_values = marginals.argmax(axis=1)
    return true_values, predicted_values, marginals.max(axis=1)


def gradcam_selection(table: pd.DataFrame, per_group: int, seed: int = 0) -> pd.DataFrame:
    """Photos to explain: per head, ``per_group`` right predictions (drawn at random, cycling over the true values)
    and the ``per_group`` most confident wrong ones (one per person). The target is the predicted value."""
    rng = np.random.default_rng(seed)
    chosen = []
    for head in HEADS:
        true_values, predicted_values, confidence = _head_columns(table, head)
        right = np.flatnonzero(predicted_values == true_values)
        pools = [list(rng.permutation(right[true_values[right] == value])) for value in range(HEAD_SIZES[head])]
        picked = []
        while len(picked) < per_group and any(pools):
            for pool in pools:
                if pool and len(picked) < per_group:
                    picked.append(pool.pop())
        wrong = worst_predictions(table, head, per_group)
        wrong_rows = table.index[table["image_id"].isin(wrong["image_id"])]
        wrong_rows = wrong_rows[np.argsort(-confidence[wrong_rows], kind="stable")]
        for outcome, rows in (("right", picked), ("wrong", list(wrong_rows))):
            for row in rows:
                chosen.append(
                    {
                        "head": head,
                        "outcome": outcome,
                        "row": int(row),
                        "target": int(predicted_values[row]),
                        "true_value": int(true_values[row]),
                        "confidence": float(confidence[row]),
                    }
                )
    return pd.DataFrame(chosen, columns=["head", "outcome", "row", "target", "true_value", "confidence"])
