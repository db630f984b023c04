"""A decision rule for macro F1: move the class boundaries until the eval set's predicted shares of each age
group (or gender x age group) match the training set's.

Macro F1 weighs the rare 60+ classes as much as the common ones, and a model that is unsure about age puts
most of the 60+ persons into 30-59: the argmax of its probabilities predicts far fewer old persons than
there are. One offset per age group (log scale, shared by every mask and gender) is raised or lowered until
the share of photos whose argmax falls in each group equals the training share. It is fitted on the eval
photos' own predictions, without their labels, so it cannot overfit a labelled holdout, and a holdout
predicted alongside scores it honestly. Applied after person pooling, every photo of a person moves together.
"""

from __future__ import annotations

import numpy as np

from ..core.labels import NUM_CLASSES

# Which part of the label each rule balances: the class index's age group, or its gender x age group.
PARTS = {"age": 3, "gender_age": 6}
STEPS = 400
RATE = 0.05
MAX_OFFSET = 4.0  # a class scaled by more than e^4 (55x) is no longer a boundary moved but an answer forced
_FLOOR = 1e-3  # keeps log(share) finite for a group no photo is predicted in


def part_of_classes(part: str) -> np.ndarray:
    """The group (0..k-1) of each of the 18 classes under ``part``."""
    if part not in PARTS:
        raise ValueError(f"unknown part '{part}'; choose from {', '.join(PARTS)}")
    return np.arange(NUM_CLASSES) % PARTS[part]


def label_shares(labels: np.ndarray, part: str) -> np.ndarray:
    """Share of ``labels`` (class indices) in each group of ``part``."""
    groups = part_of_classes(part)[np.asarray(labels, dtype=np.int64)]
    return np.bincount(groups, minlength=PARTS[part]) / max(len(groups), 1)


def apply_offsets(probs: np.ndarray, offsets: np.ndarray, part: str) -> np.ndarray:
    """``probs`` with each class scaled by ``exp(offset of its group)``, renormalised; NaN rows stay NaN."""
    groups = part_of_classes(part)
    probs = np.asarray(probs, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.float64)
    if offsets.shape != (PARTS[part],):
        raise ValueError(f"the '{part}' rule needs {PARTS[part]} offsets, got shape {offsets.shape}")
    scaled = probs * np.exp(offsets[groups])
    return scaled / scaled.sum(axis=1, keepdims=True)


def match_priors(probs: np.ndarray, shares: np.ndarray, part: str, steps: int = STEPS) -> np.ndarray:
    """Offsets (one per group, the first 0) under which the argmax of ``probs`` predicts each group of ``part``
    about as often as ``shares`` says; NaN rows take no part.

    A fixed number of damped steps on the log ratio of wanted to predicted share, from all zeros: no
    randomness, so the same predictions always give the same offsets.
    """
    groups = part_of_classes(part)
    probs = np.asarray(probs, dtype=np.float64)
    shares = np.asarray(shares, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != NUM_CLASSES:
        raise ValueError(f"probabilities must have shape (N, {NUM_CLASSES}), got {probs.shape}")
    if shares.shape != (PARTS[part],) or not np.isclose(shares.sum(), 1.0) or (shares < 0).any():
        raise ValueError(f"the '{part}' rule needs {PARTS[part]} shares that sum to 1, got {shares.tolist()}")
    readable = probs[np.all(np.isfinite(probs), axis=1)]
    offsets = np.zeros(PARTS[part])
    if not len(readable):
        return offsets
    wanted = np.log(shares + _FLOOR)
    for _ in range(steps):
        predicted = groups[(readable * np.exp(offsets[groups])).argmax(axis=1)]
        predicted_shares = np.bincount(predicted, minlength=PARTS[part]) / len(readable)
        offsets += RATE * (wanted - np.log(predicted_shares + _FLOOR))
        offsets = np.clip(offsets - offsets[0], -MAX_OFFSET, MAX_OFFSET)
    return offsets
