"""Stacking: a meta-learner fitted on members' out-of-fold probabilities, and cross-fitting to score it honestly.

A meta-learner fitted and scored on the same OOF rows looks better than it is. ``cross_fit`` splits the
rows by person (stratified by class), fits on the other persons' rows only and predicts each split, so
every returned row comes from a model that never saw that row nor any other photo of the same person.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.svm import SVC

from ..core.crossfit import cross_fit
from ..core.labels import NUM_CLASSES, head_probabilities

MemberProbs = Sequence[np.ndarray] | np.ndarray


def _log_probs(features: np.ndarray) -> np.ndarray:
    return np.log(np.clip(features, 1e-6, 1.0))


def _logreg(seed: int):
    # On log-probabilities a linear model generalises a weighted geometric mean with per-class temperatures;
    # standardising them cuts L-BFGS iterations ~6x.
    return make_pipeline(
        FunctionTransformer(_log_probs), StandardScaler(), LogisticRegression(C=1.0, max_iter=1000, random_state=seed)
    )


def _random_forest(seed: int):
    return RandomForestClassifier(
        n_estimators=200, min_samples_leaf=3, max_features="sqrt", n_jobs=2, random_state=seed
    )


def _svm(seed: int):
    # Platt-scaled RBF SVC; scikit-learn 1.9 deprecates SVC(probability=True) in favour of exactly this.
    return CalibratedClassifierCV(
        SVC(C=1.0, kernel="rbf", gamma="scale", cache_size=500, random_state=seed), method="sigmoid", ensemble=False
    )


def _knn(seed: int):
    return KNeighborsClassifier(n_neighbors=25, weights="distance")


def _xgboost(seed: int):
    from xgboost import XGBClassifier  # optional dependency (maskcls[stack])

    # One thread: XGBoost's OpenMP threads spin-wait, and on shared cores two of them ran 40x slower than one.
    return XGBClassifier(
        n_estimators=150,
        max_depth=3,
        learning_rate=0.1,
        tree_method="hist",
        n_jobs=1,
        random_state=seed,
        eval_metric="mlogloss",
    )


# Name -> factory ``(seed) -> unfitted estimator`` with defaults that suit ~10k rows x 18*M features.
META_LEARNERS: dict[str, Callable[[int], object]] = {
    "logreg": _logreg,
    "rf": _random_forest,
    "svm": _svm,
    "knn": _knn,
    "xgboost": _xgboost,
}


def create_meta_learner(learner: str | Callable[[int], object], seed: int = 0):
    """An unfitted meta-learner: a ``META_LEARNERS`` name, or any factory ``(seed) -> estimator``."""
    if callable(learner):
        return learner(seed)
    if learner not in META_LEARNERS:
        raise ValueError(f"unknown meta-learner '{learner}'; choose one of {', '.join(META_LEARNERS)}")
    return META_LEARNERS[learner](seed)


def check_member_probs(probs_list: MemberProbs) -> np.ndarray:
    """Members' probabilities as one ``(M, N, 18)`` float array, after checking shapes and values."""
    if len(probs_list) == 0:
        raise ValueError("no member probabilities given")
    members = [np.asarray(probs, dtype=np.float64) for probs in probs_list]
    for index, probs in enumerate(members):
        if probs.ndim != 2 or probs.shape[1] != NUM_CLASSES:
            raise ValueError(f"member {index}: probabilities must have shape (N, {NUM_CLASSES}), got {probs.shape}")
        if probs.shape[0] != members[0].shape[0]:
            raise ValueError(f"member {index} has {probs.shape[0]} rows, member 0 has {members[0].shape[0]}")
    stacked = np.stack(members)
    if not np.all(np.isfinite(stacked)):
        raise ValueError("member probabilities contain NaN or infinite values")
    return stacked


def stack_features(probs_list: MemberProbs, head_features: bool = False) -> np.ndarray:
    """Members' probabilities side by side ``(N, 18*M)``; with ``head_features`` also each member's
    mask (3), gender (2) and age (3) marginals ``(N, 26*M)``, which let a learner pool evidence across classes."""
    members = check_member_probs(probs_list)
    blocks = list(members)
    if head_features:
        for probs in members:
            heads = head_probabilities(probs)
            blocks += [heads["mask"], heads["gender"], heads["age"]]
    return np.hstack(blocks)


class Stacker:
    """A meta-learner over member probabilities, with ``fit`` / ``predict_proba`` like scikit-learn.

    ``predict_proba`` always returns the 18 classes in class order: classes absent from the training
    labels get probability 0. Labels are re-encoded to 0..k-1 for the learner (XGBoost requires it).
    """

    def __init__(self, learner: str | Callable[[int], object] = "logreg", head_features: bool = False, seed: int = 0):
        if not callable(learner) and learner not in META_LEARNERS:
            raise ValueError(f"unknown meta-learner '{learner}'; choose one of {', '.join(META_LEARNERS)}")
        self.learner = learner
        self.head_features = head_features
        self.seed = seed

    def fit(self, probs_list: MemberProbs, labels: np.ndarray) -> Stacker:
        members = check_member_probs(probs_list)
        labels = _check_labels(labels, members.shape[1])
        present = np.unique(labels)
        if len(present) < 2:
            raise ValueError(
                f"stacking needs at least two classes in the training labels, got only class {present.tolist()}"
            )
        self.estimator_ = create_meta_learner(self.learner, self.seed)
        with warnings.catch_warnings():
            # Rare classes with fewer rows than a learner's inner CV folds are expected on small data.
            warnings.filterwarnings("ignore", message="The least populated class")
            self.estimator_.fit(stack_features(members, self.head_features), np.searchsorted(present, labels))
        self.classes_ = present
        self.n_members_ = members.shape[0]
        return self

    def predict_proba(self, probs_list: MemberProbs) -> np.ndarray:
        if not hasattr(self, "estimator_"):
            raise RuntimeError("Stacker is not fitted yet: call fit first")
        members = check_member_probs(probs_list)
        if members.shape[0] != self.n_members_:
            raise ValueError(f"the stacker was fitted on {self.n_members_} members, got {members.shape[0]}")
        encoded_probs = np.asarray(
            self.estimator_.predict_proba(stack_features(members, self.head_features)), dtype=np.float64
        )
        probs = np.zeros((members.shape[1], NUM_CLASSES))
        probs[:, self.classes_[np.asarray(self.estimator_.classes_, dtype=np.int64)]] = encoded_probs
        return probs / probs.sum(axis=1, keepdims=True)


def cross_validated_stacking(
    probs_list: MemberProbs,
    labels: np.ndarray,
    person_ids: np.ndarray,
    learner: str | Callable[[int], object] = "logreg",
    head_features: bool = False,
    n_splits: int = 5,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The meta-learner's honest out-of-sample probabilities ``(N, 18)`` and the split id of every row.

    Each stacker is handed only the fitting rows' slices, so it cannot see the rows it scores.
    """
    members = check_member_probs(probs_list)
    labels = _check_labels(labels, members.shape[1])

    def fit_then_predict(fit_rows: np.ndarray, score_rows: np.ndarray) -> np.ndarray:
        stacker = Stacker(learner, head_features, seed).fit(members[:, fit_rows], labels[fit_rows])
        return stacker.predict_proba(members[:, score_rows])

    return cross_fit(fit_then_predict, labels, person_ids, n_splits, seed)


def _check_labels(labels: np.ndarray, rows: int) -> np.ndarray:
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (rows,):
        raise ValueError(f"expected {rows} labels, got shape {labels.shape}")
    if rows and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise ValueError("labels must be class indices in 0..17")
    return labels
