"""The competition metric (macro F1 over the 18 classes) and the per-head scores, from probability tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .labels import NUM_CLASSES, decode


def classification_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Macro F1 and accuracy of the 18-class argmax, plus accuracy and macro F1 of mask, gender and age.

    Macro F1 averages over the classes present in labels or predictions (scikit-learn's default), as
    the competition scored it.
    """
    from sklearn.metrics import accuracy_score, f1_score  # scikit-learn loads only where scores are computed

    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return {}
    predicted = np.asarray(probs).argmax(axis=1)
    metrics = {
        "macro_f1": float(f1_score(labels, predicted, average="macro")),
        "accuracy": float(accuracy_score(labels, predicted)),
    }
    for head, truth, guess in zip(("mask", "gender", "age"), decode(labels), decode(predicted), strict=False):
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
    labels: np.ndarray,
    head_probs: np.ndarray,
    head: str,
    true_ages: np.ndarray | None = None,
    predicted_ages: np.ndarray | None = None,
) -> dict[str, float]:
    """Scores of a single-head model (mask, gender or age): macro F1 and accuracy of that head, and for
    age regression the mean absolute error in years."""
    from sklearn.metrics import accuracy_score, f1_score  # scikit-learn loads only where scores are computed

    truth = decode(np.asarray(labels, dtype=np.int64))[("mask", "gender", "age").index(head)]
    guess = np.asarray(head_probs).argmax(axis=1)
    metrics = {
        "macro_f1": float(f1_score(truth, guess, average="macro")),
        "accuracy": float(accuracy_score(truth, guess)),
    }
    if predicted_ages is not None and true_ages is not None:
        known = np.asarray(true_ages) >= 0
        if known.any():
            metrics["age_mae"] = float(np.abs(np.asarray(predicted_ages)[known] - np.asarray(true_ages)[known]).mean())
    return metrics


class ScoreError(ValueError):
    """A submission or answer file that cannot be scored as asked; the message names the file."""


def score_submission(
    submission_csv: str | Path, answers_csv: str | Path, allow_partial: bool = False
) -> dict[str, float | int]:
    """Metrics of a ``submission.csv`` (ImageID, ans) against the true classes per ImageID.

    The answers may use ``label`` or the competition's own ``ans`` column. Every answer must have a
    submitted class and every submitted ImageID an answer; with ``allow_partial`` the photos both
    name are scored, and the counts of the others are part of the result.
    """
    submission = _read_classes(submission_csv, ("ans",), "submission")
    answers = _read_classes(answers_csv, ("label", "ans"), "answers")
    unknown = submission.index.difference(answers.index)
    missing = answers.index.difference(submission.index)
    if (len(unknown) or len(missing)) and not allow_partial:
        parts = []
        if len(missing):
            parts.append(
                f"covers {len(answers) - len(missing)} of the {len(answers)} photos in {answers_csv} "
                f"({len(missing)} missing, e.g. {', '.join(missing[:3])})"
            )
        if len(unknown):
            parts.append(
                f"has {len(unknown)} ImageID(s) that {answers_csv} does not know (e.g. {', '.join(unknown[:3])})"
            )
        raise ScoreError(
            f"{submission_csv} " + " and ".join(parts) + "; pass --allow-partial to score the photos both files name"
        )
    common = submission.index.intersection(answers.index, sort=False)
    if not len(common):
        raise ScoreError(f"{submission_csv} and {answers_csv} have no ImageID in common: nothing to score")
    truth, guess = answers.loc[common].to_numpy(), submission.loc[common].to_numpy()
    scores: dict[str, float | int] = classification_metrics(truth, np.eye(NUM_CLASSES)[guess])
    scores["photos_scored"] = int(len(common))
    if allow_partial:
        scores["answers_not_submitted"] = int(len(missing))
        scores["unknown_image_ids"] = int(len(unknown))
    return scores


def _read_classes(path: str | Path, columns: tuple[str, ...], what: str) -> pd.Series:
    """``ImageID`` -> class (0..17) from the first of ``columns`` the file has, checked."""
    path = Path(path)
    if not path.is_file():
        raise ScoreError(f"{what} file not found: {path}")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ScoreError(f"{path}: not a readable CSV file ({err})") from None
    column = next((c for c in columns if c in table.columns), None)
    if "ImageID" not in table.columns or column is None:
        raise ScoreError(
            f"{path}: needs the columns ImageID and {' or '.join(columns)}; found {', '.join(table.columns) or 'none'}"
        )
    duplicated = table["ImageID"][table["ImageID"].duplicated()]
    if len(duplicated):
        raise ScoreError(f"{path}: ImageID '{duplicated.iloc[0]}' appears more than once")
    values = table[column].str.strip()
    bad = ~values.str.fullmatch(r"\d+") | (pd.to_numeric(values, errors="coerce") >= NUM_CLASSES)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ScoreError(f"{path}:{row + 2}: {column} '{table[column].iloc[row]}' is not a class 0..{NUM_CLASSES - 1}")
    return pd.Series(values.astype(int).to_numpy(), index=pd.Index(table["ImageID"], name="ImageID"), name=column)


_EPS = 1e-12


_LOG_T_BOUNDS = (np.log(0.05), np.log(20.0))


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)`` per row; NaN rows (unreadable photos) stay NaN."""
    probs = np.asarray(probs, dtype=np.float64)
    logits = np.log(np.clip(probs, _EPS, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=1, keepdims=True)


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean ``-log p(true class)``."""
    probs = np.asarray(probs, dtype=np.float64)
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], _EPS, 1.0))))


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the NLL of ``labels`` (bounded to 0.05..20, searched on log T)."""
    from scipy.optimize import minimize_scalar

    log_probs = np.log(np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1.0))
    labels = np.asarray(labels, dtype=np.int64)

    def nll(log_t: float) -> float:
        logits = log_probs / np.exp(log_t)
        logits = logits - logits.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(logits).sum(axis=1)) - logits[np.arange(len(labels)), labels]))

    return float(np.exp(minimize_scalar(nll, bounds=_LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-4}).x))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Top-1 ECE: the photo-weighted mean gap between confidence and accuracy over equal-width confidence bins."""
    table = reliability_table(probs, labels, bins)
    return float(
        np.sum(table["count"] * np.abs(table["accuracy"] - table["confidence"])) / max(table["count"].sum(), 1)
    )


def reliability_table(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> dict[str, np.ndarray]:
    """Per confidence bin: ``count``, mean ``confidence`` and ``accuracy`` of the top-1 class (empty bins: count 0)."""
    probs = np.asarray(probs, dtype=np.float64)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(labels)
    index = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore"):
        mean_confidence = np.bincount(index, weights=confidence, minlength=bins) / count
        accuracy = np.bincount(index, weights=correct.astype(np.float64), minlength=bins) / count
    return {
        "lower": np.arange(bins) / bins,
        "count": count,
        "confidence": np.nan_to_num(mean_confidence),
        "accuracy": np.nan_to_num(accuracy),
    }


def predictive_entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each row ``(N,)``; 0 for a one-hot row, log(K) for a uniform one over K classes."""
    probs = _check_probs(probs)
    return -np.sum(probs * np.log(np.where(probs > 0, probs, 1.0)), axis=-1)


def margin(probs: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability of each row ``(N,)``: small means a near coin-flip between two classes."""
    top_two = np.sort(_check_probs(probs), axis=-1)[..., -2:]
    return top_two[..., 1] - top_two[..., 0]


def disagreement(member_probs: np.ndarray) -> np.ndarray:
    """Mutual information ``(N,)`` from ``(M, N, K)``: entropy of the mean minus the mean member entropy.

    The members may be ensemble members, fold models, or Monte-Carlo dropout passes.
    """
    member_probs = np.asarray(member_probs, dtype=np.float64)
    if member_probs.ndim != 3 or member_probs.shape[2] < 2:
        raise ValueError(f"member probabilities must have shape (M, N, K), got {member_probs.shape}")
    gap = predictive_entropy(member_probs.mean(axis=0)) - predictive_entropy(member_probs).mean(axis=0)
    return np.maximum(gap, 0.0)  # never below 0 mathematically; clip rounding noise


def _check_probs(probs: np.ndarray) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim == 0 or probs.shape[-1] < 2:
        raise ValueError(f"probabilities must have one column per class, got shape {probs.shape}")
    return probs
