"""The submission's decision rule: prior matching of the age groups (``prior_match.py``) on the final
combination's per-photo probabilities, before person pooling where pooling was kept.

The offsets are matched on the eval and holdout photos together, without their labels; the holdout's macro F1
of the submission with and without the rule says whether it is kept. The proxy is the same rule on the final
combination's out-of-fold table, matched to the training shares there.

One candidate, matched per photo and pooled afterwards: choosing among candidates (gender x age as well) on a
holdout with a handful of old persons learns the holdout (docs/solve.md, "The decision rule").
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from ..core.metrics import macro_f1
from ..core.tables import PROB_COLUMNS
from ..ensemble.prior_match import apply_offsets, label_shares, match_priors
from .holdout import Holdout, holdout_scores

PART = "age"


def submitted_probs(raw: np.ndarray, rule: dict | None, pool: Callable[[np.ndarray], np.ndarray] | None):
    """What the submission takes the argmax of: ``raw`` with the rule's offsets (when kept), then pooled per
    person (when ``pool`` is given)."""
    probs = apply_offsets(raw, np.asarray(rule["offsets"]), rule["part"]) if rule and rule.get("kept") else raw
    return pool(probs) if pool is not None else probs


def rule_candidate(
    test_probs: pd.DataFrame,
    raw: np.ndarray,
    pool: Callable[[np.ndarray], np.ndarray] | None,
    oof: pd.DataFrame,
    train_labels: np.ndarray,
    holdout: Holdout | None,
    part: str = PART,
) -> tuple[dict, dict]:
    """Scores without the rule, and the rule's offsets, the training shares it matched and its scores (``oof``
    always; ``holdout``, the holdout's full scores in ``holdout_scores`` and the submitted probabilities with and
    without the rule in ``probs``, where there is a holdout)."""
    oof_probs = oof[PROB_COLUMNS].to_numpy(np.float64)
    oof_labels = oof["label"].to_numpy(np.int64)
    shares = label_shares(train_labels, part)
    offsets = match_priors(raw, shares, part)
    oof_adjusted = apply_offsets(oof_probs, match_priors(oof_probs, shares, part), part)
    baseline = {"oof": round(macro_f1(oof_labels, oof_probs.argmax(axis=1)), 4)}
    scores = {"oof": round(macro_f1(oof_labels, oof_adjusted.argmax(axis=1)), 4)}
    candidate = {"part": part, "offsets": [round(float(o), 4) for o in offsets], "shares": shares.round(4).tolist()}
    if holdout is not None:
        without_rule = submitted_probs(raw, None, pool)
        baseline["holdout"] = holdout_scores(test_probs, holdout, without_rule)["macro_f1"]
        with_rule = submitted_probs(raw, {**candidate, "kept": True}, pool)
        candidate["holdout_scores"] = holdout_scores(test_probs, holdout, with_rule)
        candidate["probs"] = (with_rule, without_rule)  # the submission's probabilities with and without it
        scores["holdout"] = candidate["holdout_scores"]["macro_f1"]
    return baseline, {**candidate, "scores": scores}
