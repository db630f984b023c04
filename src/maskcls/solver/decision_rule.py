"""The submission's decision rule: prior matching of the age groups, or of gender x age (``prior_match.py``),
on the probabilities the submission would take the argmax of (person-pooled where pooling was kept).

Each candidate's offsets are matched on the eval and holdout photos together, without their labels; the
holdout's macro F1 then says what each does to the submission. The proxy is the same rule on the final
combination's out-of-fold table, matched to the training shares there.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.metrics import macro_f1
from ..core.tables import PROB_COLUMNS
from ..ensemble.prior_match import PARTS, apply_offsets, label_shares, match_priors
from .holdout import Holdout, holdout_scores


def rule_candidates(
    test_probs: pd.DataFrame,
    submitted: np.ndarray,
    oof: pd.DataFrame,
    train_labels: np.ndarray,
    holdout: Holdout | None,
) -> tuple[dict, list[dict]]:
    """Scores without a rule, and per part (``age``, ``gender_age``) its offsets, the training shares it
    matched and its scores (``oof`` always, ``holdout`` where there is one)."""
    oof_probs = oof[PROB_COLUMNS].to_numpy(np.float64)
    oof_labels = oof["label"].to_numpy(np.int64)
    baseline = {"oof": round(macro_f1(oof_labels, oof_probs.argmax(axis=1)), 4)}
    if holdout is not None:
        baseline["holdout"] = holdout_scores(test_probs, holdout, submitted)["macro_f1"]
    candidates = []
    for part in PARTS:
        shares = label_shares(train_labels, part)
        offsets = match_priors(submitted, shares, part)
        oof_adjusted = apply_offsets(oof_probs, match_priors(oof_probs, shares, part), part)
        scores = {"oof": round(macro_f1(oof_labels, oof_adjusted.argmax(axis=1)), 4)}
        entry = {"part": part, "offsets": [round(float(o), 4) for o in offsets], "shares": shares.round(4).tolist()}
        if holdout is not None:
            entry["holdout_scores"] = holdout_scores(test_probs, holdout, apply_offsets(submitted, offsets, part))
            scores["holdout"] = entry["holdout_scores"]["macro_f1"]
        candidates.append({**entry, "scores": scores})
    return baseline, candidates
