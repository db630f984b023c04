"""Voting ensembles: (weighted) mean of member probabilities, and (weighted) majority vote of their argmax.

``fit_vote_weights`` learns the weights from out-of-fold probabilities; ``WeightedVote`` wraps it with the
same ``fit`` / ``predict_proba`` verbs as ``Stacker``, so both can be cross-fitted the same way.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from ..core.labels import NUM_CLASSES
from ..core.metrics import macro_f1
from .stacking import MemberProbs, check_member_probs

WEIGHT_OBJECTIVES = ("log_loss", "macro_f1")

# Hard vote: vote shares closer than _TIE are a tie; the tie's winner gets a _NUDGE (see hard_vote).
_TIE = 1e-9
_NUDGE = 1e-6


def soft_vote(probs_list: MemberProbs, weights: np.ndarray | None = None) -> np.ndarray:
    """Weighted mean ``(N, 18)`` of the members' probabilities (equal weights by default)."""
    members = check_member_probs(probs_list)
    return np.tensordot(_check_weights(weights, members.shape[0]), members, axes=1)


def hard_vote(probs_list: MemberProbs, weights: np.ndarray | None = None) -> np.ndarray:
    """Per row, the (weighted) share of members whose argmax is each class; rows sum to 1.

    Ties: among classes with equal vote shares (within 1e-9), the one with the highest weighted mean
    probability wins, and that row becomes ``(1 - 1e-6) * shares + 1e-6 * one_hot(winner)`` so ``argmax``
    picks it. Rows without a tie hold the exact shares.
    """
    members = check_member_probs(probs_list)
    weights = _check_weights(weights, members.shape[0])
    votes = np.eye(NUM_CLASSES)[members.argmax(axis=2)]  # (M, N, 18) one-hot
    shares = np.tensordot(weights, votes, axes=1)
    top = shares.max(axis=1, keepdims=True)
    tied = shares >= top - _TIE
    tied_rows = np.flatnonzero(tied.sum(axis=1) > 1)
    if tied_rows.size:
        mean_probs = np.tensordot(weights, members[:, tied_rows], axes=1)
        winners = np.where(tied[tied_rows], mean_probs, -np.inf).argmax(axis=1)
        shares[tied_rows] *= 1 - _NUDGE
        shares[tied_rows, winners] += _NUDGE
    return shares


def fit_vote_weights(oof_probs_list: MemberProbs, labels: np.ndarray, objective: str = "log_loss") -> np.ndarray:
    """Non-negative member weights summing to 1 for ``soft_vote``, fitted on out-of-fold probabilities.

    ``log_loss``: softmax-parametrised weights, L-BFGS from equal weights (smooth, so gradient-based).
    ``macro_f1``: piecewise constant in the weights, so derivative-free coordinate ascent starting from the
    log-loss weights: each member's share is tried at 0, 0.05, .., 1 (the others keep their proportions)
    and kept only on a strict gain. Neither uses randomness: the same inputs give the same weights.
    """
    members = check_member_probs(oof_probs_list)
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (members.shape[1],):
        raise ValueError(f"expected {members.shape[1]} labels, got shape {labels.shape}")
    if objective not in WEIGHT_OBJECTIVES:
        raise ValueError(f"unknown weight objective '{objective}'; choose one of {', '.join(WEIGHT_OBJECTIVES)}")
    if members.shape[0] == 1:
        return np.ones(1)
    weights = _fit_log_loss_weights(members, labels)
    if objective == "macro_f1":
        weights = _fit_macro_f1_weights(members, labels, weights)
    return weights


class WeightedVote:
    """Soft vote with weights fitted on labelled rows; ``fit`` / ``predict_proba`` like ``Stacker``."""

    def __init__(self, objective: str = "log_loss"):
        if objective not in WEIGHT_OBJECTIVES:
            raise ValueError(f"unknown weight objective '{objective}'; choose one of {', '.join(WEIGHT_OBJECTIVES)}")
        self.objective = objective

    def fit(self, probs_list: MemberProbs, labels: np.ndarray) -> WeightedVote:
        self.weights_ = fit_vote_weights(probs_list, labels, self.objective)
        return self

    def predict_proba(self, probs_list: MemberProbs) -> np.ndarray:
        if not hasattr(self, "weights_"):
            raise RuntimeError("WeightedVote is not fitted yet: call fit first")
        return soft_vote(probs_list, self.weights_)


def _fit_log_loss_weights(members: np.ndarray, labels: np.ndarray) -> np.ndarray:
    count = members.shape[0]
    true_class_probs = members[:, np.arange(members.shape[1]), labels].T  # (N, M)

    def loss_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        weights = _softmax(theta)
        mixed = np.clip(true_class_probs @ weights, 1e-15, None)
        grad_weights = -(true_class_probs / mixed[:, None]).mean(axis=0)
        return float(-np.log(mixed).mean()), weights * (grad_weights - weights @ grad_weights)

    result = minimize(loss_and_grad, np.zeros(count), jac=True, method="L-BFGS-B")
    return _softmax(result.x)


def _fit_macro_f1_weights(members: np.ndarray, labels: np.ndarray, start: np.ndarray, rounds: int = 5) -> np.ndarray:
    weights = start.copy()
    best = macro_f1(labels, soft_vote(members, weights).argmax(axis=1))
    for _ in range(rounds):
        changed = False
        for member in range(len(weights)):
            for share in np.linspace(0.0, 1.0, 21):
                trial = _with_share(weights, member, share)
                score = macro_f1(labels, np.tensordot(trial, members, axes=1).argmax(axis=1))
                if score > best + 1e-12:
                    best, weights, changed = score, trial, True
        if not changed:
            break
    return weights


def _with_share(weights: np.ndarray, member: int, share: float) -> np.ndarray:
    """``weights`` with ``member`` at ``share`` and the others scaled to fill the rest in proportion."""
    others = np.delete(np.arange(len(weights)), member)
    rest = weights[others]
    rest = rest / rest.sum() if rest.sum() > 0 else np.full(len(rest), 1.0 / len(rest))
    trial = np.empty_like(weights)
    trial[member] = share
    trial[others] = (1.0 - share) * rest
    return trial


def _softmax(theta: np.ndarray) -> np.ndarray:
    exp = np.exp(theta - theta.max())
    return exp / exp.sum()


def _check_weights(weights: np.ndarray | None, count: int) -> np.ndarray:
    if weights is None:
        return np.full(count, 1.0 / count)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (count,):
        raise ValueError(f"expected {count} weights (one per member), got shape {weights.shape}")
    if not np.all(np.isfinite(weights)) or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"weights must be finite, >= 0 and not all 0, got {weights.tolist()}")
    return weights / weights.sum()
