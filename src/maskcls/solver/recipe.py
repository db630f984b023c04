"""The submission's recipe: what solve's persons stage decided (the face attributes' evidence, the decision rule,
pooling by person), as one function of a combination's probabilities.

The finish stage writes the submission with it, the pseudo-label round takes its labels from it and is judged
through it, and a benchmark can rebuild any combination's submission from a finished solve's ``summary.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import pandas as pd

from ..ensemble.person_consistency import person_consistent_probs, read_groups
from ..persons.attributes import with_evidence
from .decision_rule import submitted_probs
from .face_evidence import read_evidence


def submission_recipe(
    persons: dict | None, image_ids: pd.Series, groups: np.ndarray | None = None
) -> Callable[[np.ndarray], np.ndarray]:
    """``persons``: the persons stage's result (``summary.json``'s ``persons``; None: nothing was decided). The
    returned function maps ``(N, 18)`` probabilities of ``image_ids`` (in that order) to what the submission
    takes the argmax of. ``groups``: the persons' groups of ``image_ids`` where the caller has read them."""
    persons = persons or {}
    faces = persons.get("face_attributes") or {}
    evidence = read_evidence(faces["evidence"], image_ids) if faces.get("kept") else None
    pool = None
    if persons.get("kept"):
        groups = read_groups(persons["groups"], image_ids) if groups is None else groups
        pool = partial(person_consistent_probs, groups=groups, group_size=persons["group_size"])
    rule = persons.get("rule")

    def recipe(probs: np.ndarray) -> np.ndarray:
        return submitted_probs(probs if evidence is None else with_evidence(probs, evidence), rule, pool)

    return recipe
