"""How a keep / drop decision is settled: the holdout's gain, read against its own noise, and a default.

A solve's holdout is small (134 persons of utkmask18's 933), and macro F1 over 18 classes on so few persons
moves a lot with which persons happen to be in it: resampling the holdout's persons, the gain of one
decision has a standard deviation of 0.007-0.017 for one more member of a vote, 0.025-0.035 for the age rule
and 0.045 for person pooling (the 60-minute solve of docs/results.md). A gain inside ``NOISE_Z`` of those
deviations says nothing, and taking it at face value kept and dropped stages at random: on 467 persons no
model saw, the holdout's sign was right for 2 of 6 decisions of that solve. So:

- the holdout decides where its gain is clear (``|gain| > NOISE_Z * noise``);
- elsewhere the stage's ``DEFAULTS`` entry decides: what the stage did to the submission on persons no model
  saw, in the runs docs/results.md lists.

Without a holdout (``--holdout-share 0``) there is no noise estimate: the OOF proxy's sign decides.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.metrics import macro_f1
from ..core.tables import PROB_COLUMNS
from .holdout import Holdout, holdout_row_of

NOISE_Z = 2.0
NOISE_RESAMPLES = 200

# stage kind -> (kept when the holdout cannot tell, the evidence: gains on persons no model saw)
DEFAULTS = {
    "faces": (True, "external faces: +0.070 and +0.158 at 60 min on two splits (synthesis fold 0: OOF +0.03)"),
    "member": (True, "one more member, as submitted: +0.015, -0.004, +0.004 at 60 min; +0.004 to +0.021 at 20 min"),
    "weighted vote": (False, "one measurement (+0.019 at 60 min): the plain soft vote stays"),
    "pseudo-label round": (True, "labels from the submission, as submitted: +0.008 (30 min), -0.002 (60 min, split 2)"),
    "person consistency": (True, "+0.077 at 20 min, +0.033 at 30 min, +0.039 with the rule at 60 min"),
    "face attributes": (True, "+0.084 at 20 min, +0.058 at 60 min, +0.050 at 20 min on a second split"),
    "decision rule": (True, "+0.036 at 30 min, +0.028 per photo and +0.050 after pooling at 60 min"),
}


def gain_noise(
    holdout: Holdout,
    with_table: pd.DataFrame,
    without_table: pd.DataFrame,
    with_probs: np.ndarray | None = None,
    without_probs: np.ndarray | None = None,
    resamples: int = NOISE_RESAMPLES,
    seed: int = 0,
) -> float:
    """Standard deviation of the holdout's macro-F1 gain (with minus without) over resamples of its persons,
    both candidates scored on the same resampled persons. Tables are eval-view ``test_probs``; ``*_probs``
    (aligned with their table) replace the tables' probabilities, e.g. person-pooled ones."""
    found = [holdout_row_of(with_table), holdout_row_of(without_table)]
    answers = holdout.answers
    answers = answers[answers["image_id"].isin(found[0].index) & answers["image_id"].isin(found[1].index)]
    labels = answers["label"].to_numpy(np.int64)
    predicted = [
        _predicted_classes(table, probs, rows.loc[answers["image_id"]].to_numpy())
        for table, probs, rows in ((with_table, with_probs, found[0]), (without_table, without_probs, found[1]))
    ]
    persons = answers["person_id"].to_numpy()
    names, person_of_photo = np.unique(persons, return_inverse=True)
    photos_of = [np.flatnonzero(person_of_photo == p) for p in range(len(names))]
    rng = np.random.default_rng(seed)
    gains = []
    for _ in range(resamples):
        rows = np.concatenate([photos_of[p] for p in rng.integers(0, len(names), len(names))])
        gains.append(macro_f1(labels[rows], predicted[0][rows]) - macro_f1(labels[rows], predicted[1][rows]))
    return float(np.std(gains))


def settle(gain: float, noise: float | None, kind: str) -> tuple[bool, bool]:
    """(kept, clear): the holdout's sign where its gain is clear of its noise, the kind's default elsewhere;
    ``noise`` None (no holdout) lets the sign decide."""
    if noise is None:
        return gain > 0, True
    clear = abs(gain) > NOISE_Z * noise
    return (gain > 0 if clear else DEFAULTS[kind][0]), clear


def _predicted_classes(table: pd.DataFrame, probs: np.ndarray | None, rows: np.ndarray) -> np.ndarray:
    """The argmax class of ``rows`` of ``table`` (of ``probs``, aligned with it, where given)."""
    values = table[PROB_COLUMNS].to_numpy(np.float64) if probs is None else np.asarray(probs)
    return values[rows].argmax(axis=1)
