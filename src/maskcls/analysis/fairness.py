"""Scores by group of people: does the model fail one gender, age group or race?

Groups are taken from the true labels (gender, age group) and from ``train.csv``'s race column where the data
has one. Each group's scores are computed on its photos alone, with counts beside them, so a small group's noisy
score is seen as small.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from ..core.labels import GENDER_NAMES, AgeThresholds, decode
from ..core.metrics import classification_metrics
from ..core.tables import probs_of

FAIRNESS_COLUMNS = [
    "attribute",
    "group",
    "persons",
    "photos",
    "accuracy",
    "macro_f1",
    "mask_accuracy",
    "gender_accuracy",
    "age_accuracy",
    "macro_f1_gap",
]


def fairness_table(table: pd.DataFrame, thresholds: AgeThresholds = AgeThresholds()) -> pd.DataFrame:
    """One row per group (``FAIRNESS_COLUMNS``) of a table with label, person_id, p0..p17 and optionally race.

    ``macro_f1`` averages F1 over the classes in the group's labels (a male photo predicted female still lowers the
    male group's recall, but the female classes are not averaged in as zeros), and ``macro_f1_gap`` is that minus
    the same measure for everyone: the most negative rows are the groups the model serves worst.
    """
    table = table.reset_index(drop=True)
    labels = table["label"].to_numpy(dtype=np.int64)
    probs = probs_of(table)
    predicted = probs.argmax(axis=1)
    overall = _macro_f1_over_labels(labels, predicted)
    _, gender, age_group = decode(labels)
    attributes = {
        "gender": pd.Series(np.asarray(GENDER_NAMES)[gender]),
        "age group": pd.Series(np.asarray(thresholds.names())[age_group]),
    }
    if "race" in table and table["race"].astype(str).str.strip().ne("").any():
        attributes["race"] = (
            table["race"].fillna("").astype(str).str.strip().replace("", "(unknown)").reset_index(drop=True)
        )
    rows = []
    for attribute, groups in attributes.items():
        for group in sorted(groups.unique(), key=str):
            members = (groups == group).to_numpy()
            scores = classification_metrics(labels[members], probs[members])
            group_f1 = _macro_f1_over_labels(labels[members], predicted[members])
            rows.append(
                {
                    "attribute": attribute,
                    "group": group,
                    "persons": int(table.loc[members, "person_id"].nunique()),
                    "photos": int(members.sum()),
                    "accuracy": scores["accuracy"],
                    "macro_f1": group_f1,
                    **{key: scores[key] for key in ("mask_accuracy", "gender_accuracy", "age_accuracy")},
                    "macro_f1_gap": group_f1 - overall,
                }
            )
    return pd.DataFrame(rows, columns=FAIRNESS_COLUMNS)


def _macro_f1_over_labels(labels: np.ndarray, predicted: np.ndarray) -> float:
    return float(f1_score(labels, predicted, labels=np.unique(labels), average="macro", zero_division=0))
