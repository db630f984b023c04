"""Scores by group of people: does the model fail one gender, age group or race?

Groups are taken from the true labels (gender, age group) and from ``train.csv``'s race column where the data
has one. Each group's scores are computed on its photos alone, with counts beside them, so a small group's noisy
score is seen as small.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..labels import GENDER_NAMES, AgeThresholds, decode
from ..metrics import classification_metrics
from ..tables import probs_of

FAIRNESS_COLUMNS = ["attribute", "group", "persons", "photos", "accuracy", "macro_f1", "mask_accuracy", "gender_accuracy", "age_accuracy", "macro_f1_gap"]


def fairness_table(table: pd.DataFrame, thresholds: AgeThresholds = AgeThresholds()) -> pd.DataFrame:
    """One row per group (``FAIRNESS_COLUMNS``) of a table with label, person_id, p0..p17 and optionally race.

    ``macro_f1_gap`` is the group's macro F1 minus everyone's: the most negative rows are the groups the model
    serves worst. Within a group, macro F1 averages the classes present in its labels or predictions (a male
    photo predicted female counts against the male group's score).
    """
    table = table.reset_index(drop=True)
    labels = table["label"].to_numpy(dtype=np.int64)
    probs = probs_of(table)
    overall = classification_metrics(labels, probs)["macro_f1"]
    _, gender, age_group = decode(labels)
    attributes = {"gender": pd.Series(np.asarray(GENDER_NAMES)[gender]), "age group": pd.Series(np.asarray(thresholds.names())[age_group])}
    if "race" in table and table["race"].astype(str).str.strip().ne("").any():
        attributes["race"] = table["race"].fillna("").astype(str).str.strip().replace("", "(unknown)").reset_index(drop=True)
    rows = []
    for attribute, groups in attributes.items():
        for group in sorted(groups.unique(), key=str):
            members = (groups == group).to_numpy()
            scores = classification_metrics(labels[members], probs[members])
            rows.append({"attribute": attribute, "group": group, "persons": int(table.loc[members, "person_id"].nunique()), "photos": int(members.sum()),
                         **{key: scores[key] for key in ("accuracy", "macro_f1", "mask_accuracy", "gender_accuracy", "age_accuracy")},
                         "macro_f1_gap": scores["macro_f1"] - overall})
    return pd.DataFrame(rows, columns=FAIRNESS_COLUMNS)
