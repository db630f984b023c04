"""Ensembles of runs: voting, stacking, per-class threshold scales, pseudo-labels and uncertainty.

Every piece reads and writes the same tables as a run (OOF and test probabilities keyed by image id),
and every fitted piece is scored out of sample, on persons it never saw.
"""

from ..core.crossfit import cross_fit, person_splits
from ..core.metrics import disagreement, margin, predictive_entropy
from .build import METHODS, Ensemble, EnsembleError, build_ensemble, load_ensemble, read_members
from .pseudo import pseudo_label_counts, select_pseudo_labels
from .stacking import META_LEARNERS, Stacker, create_meta_learner, cross_validated_stacking, stack_features
from .thresholds import apply_class_scales, class_scale_report, cross_validated_class_scales, fit_class_scales
from .uncertainty import contact_sheet, rank_uncertain
from .voting import WeightedVote, fit_vote_weights, hard_vote, soft_vote

__all__ = [
    "METHODS",
    "META_LEARNERS",
    "Ensemble",
    "EnsembleError",
    "Stacker",
    "WeightedVote",
    "apply_class_scales",
    "build_ensemble",
    "class_scale_report",
    "contact_sheet",
    "create_meta_learner",
    "cross_fit",
    "cross_validated_class_scales",
    "cross_validated_stacking",
    "disagreement",
    "fit_class_scales",
    "fit_vote_weights",
    "hard_vote",
    "load_ensemble",
    "margin",
    "person_splits",
    "predictive_entropy",
    "pseudo_label_counts",
    "rank_uncertain",
    "read_members",
    "select_pseudo_labels",
    "soft_vote",
    "stack_features",
]
