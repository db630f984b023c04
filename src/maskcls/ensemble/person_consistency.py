"""Person-consistent predictions: the photos of one person share gender and age, and (in the competition's
layout) show exactly one ``normal`` and one ``incorrect_mask`` photo among seven.

Every team predicted each eval photo alone. Given groups of photos that belong to one person (known on
training data, clustered on eval data, see ``group.py``), each group's gender x age evidence is combined
(the mean log-probability of the six gender x age marginals over the group's photos), and with a known
group size the mask labels are assigned per group under the quota "all but two worn, one incorrect, one
not worn" (an optimal assignment on the photos' mask probabilities, scipy's ``linear_sum_assignment``).

Tables keep the raw ``p0..p17`` and add ``group`` and ``person_p0..person_p17`` (``PERSON_COLUMNS``) beside them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from ..core.labels import NUM_CLASSES, Mask
from ..core.metrics import classification_metrics
from ..core.tables import PROB_COLUMNS, answers_of

PERSON_COLUMNS = [f"person_p{i}" for i in range(NUM_CLASSES)]
_EPS = 1e-12


class GroupsError(ValueError):
    """A groups table that does not fit the photos it should group."""


def mask_quota(group_size: int) -> np.ndarray:
    """How many photos of each mask state a complete group holds: (worn, incorrect, not worn) = (size - 2, 1, 1)."""
    if group_size < 3:
        raise GroupsError(
            "a group size with a mask quota must be at least 3 (one worn, one incorrect, one not worn), "
            f"got {group_size}"
        )
    quota = np.ones(3, dtype=np.int64)
    quota[Mask.WEAR] = group_size - 2
    return quota


def assign_masks(mask_probs: np.ndarray, quota: np.ndarray) -> np.ndarray:
    """Mask state of each photo of one group, maximising the summed log-probability under ``quota``
    (photos per state; it sums to the number of photos)."""
    mask_probs = np.asarray(mask_probs, dtype=np.float64)
    if int(np.sum(quota)) != len(mask_probs):
        raise GroupsError(f"a mask quota of {int(np.sum(quota))} photos for a group of {len(mask_probs)}")
    slots = np.repeat(np.arange(3), quota)
    cost = -np.log(np.clip(mask_probs[:, slots], _EPS, None))
    rows, columns = linear_sum_assignment(cost)
    assigned = np.empty(len(mask_probs), dtype=np.int64)
    assigned[rows] = slots[columns]
    return assigned


def person_consistent_probs(probs: np.ndarray, groups: np.ndarray, group_size: int | None = None) -> np.ndarray:
    """18-class probabilities in which every photo of a group has the group's gender x age distribution.

    That distribution is the normalised exp of the mean log gender x age marginal over the group's readable
    photos (a geometric mean: each photo is one vote). Each photo keeps its own mask probabilities given
    gender x age, ``p(mask, ga) = p_photo(mask | ga) * p_group(ga)``, so a photo alone is unchanged. With
    ``group_size``, groups of exactly that many readable photos get their mask states assigned under
    ``mask_quota(group_size)`` and ``p(mask, ga) = [mask = assigned] * p_group(ga)``. Rows that are NaN
    (unreadable photos) stay NaN and take no part.
    """
    probs = np.asarray(probs, dtype=np.float64)
    groups = np.asarray(groups)
    if probs.ndim != 2 or probs.shape[1] != NUM_CLASSES or len(groups) != len(probs):
        raise GroupsError(f"need (N, {NUM_CLASSES}) probabilities and N groups, got {probs.shape} and {len(groups)}")
    joint = np.clip(probs.reshape(-1, 3, 6), _EPS, None)  # mask x (gender * 3 + age)
    gender_age = joint.sum(axis=1)
    mask_given_gender_age = joint / gender_age[:, None, :]
    readable = np.all(np.isfinite(probs), axis=1)
    result = np.full_like(probs, np.nan)
    codes = pd.factorize(pd.Series(groups).astype(str))[0]
    quota = mask_quota(group_size) if group_size else None
    for rows in _rows_by_code(codes, readable):
        mean_log = np.log(gender_age[rows]).mean(axis=0)
        shared = np.exp(mean_log - mean_log.max())
        shared /= shared.sum()
        if quota is not None and len(rows) == group_size:
            masks = np.eye(3)[assign_masks(joint[rows].sum(axis=2), quota)][:, :, None]
        else:
            masks = mask_given_gender_age[rows]
        combined = masks * shared[None, None, :]
        result[rows] = (combined / combined.sum(axis=(1, 2), keepdims=True)).reshape(len(rows), NUM_CLASSES)
    return result


def _rows_by_code(codes: np.ndarray, readable: np.ndarray) -> list[np.ndarray]:
    order = np.argsort(codes, kind="stable")
    order = order[readable[order]]
    boundaries = np.flatnonzero(np.diff(codes[order])) + 1
    return [part for part in np.split(order, boundaries) if len(part)]


def read_groups(path: str | Path, image_ids: pd.Series) -> np.ndarray:
    """The ``group`` of each of ``image_ids`` (in their order) from a groups CSV (ImageID or image_id, group).

    Every photo must have a group: a photo left out would silently be predicted alone.
    """
    path = Path(path)
    if not path.is_file():
        raise GroupsError(f"groups file not found: {path}")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    key = "ImageID" if "ImageID" in table.columns else "image_id"
    if key not in table.columns or "group" not in table.columns:
        raise GroupsError(f"{path}: needs the columns ImageID (or image_id) and group, has {', '.join(table.columns)}")
    if table[key].duplicated().any():
        raise GroupsError(f"{path}: {key} '{table[key][table[key].duplicated()].iloc[0]}' appears more than once")
    groups = table.set_index(key)["group"]
    missing = pd.Index(image_ids.astype(str)).difference(groups.index)
    if len(missing):
        raise GroupsError(
            f"{path} has no group for {len(missing)} of the {len(image_ids)} photos (e.g. '{missing[0]}'); "
            "group the same folder again"
        )
    return groups.loc[image_ids.astype(str)].to_numpy()


def add_person_columns(test_probs: pd.DataFrame, groups: np.ndarray, group_size: int | None = None) -> pd.DataFrame:
    """``test_probs`` (row order kept) with ``group`` and ``person_p0..person_p17`` added after its columns."""
    consistent = person_consistent_probs(test_probs[PROB_COLUMNS].to_numpy(dtype=np.float64), groups, group_size)
    table = test_probs.drop(columns=[c for c in ["group", *PERSON_COLUMNS] if c in test_probs.columns]).reset_index(
        drop=True
    )
    return pd.concat([table.assign(group=np.asarray(groups)), pd.DataFrame(consistent, columns=PERSON_COLUMNS)], axis=1)


def person_answers(table: pd.DataFrame, fallback: np.ndarray) -> np.ndarray:
    """Submitted class per row: the argmax of ``person_p0..17``, ``fallback`` where they are NaN (unreadable photos)."""
    return answers_of(table[PERSON_COLUMNS].to_numpy(dtype=np.float64), fallback)


def person_consistent_table(
    test_probs: pd.DataFrame, answers: np.ndarray, groups: np.ndarray, group_size: int | None = None
) -> tuple[pd.DataFrame, np.ndarray]:
    """``test_probs`` with ``group`` and ``person_p0..17`` added (raw ``p0..p17`` kept), and the classes to submit:
    the argmax of the person-consistent probabilities, ``answers`` where a row has none (unreadable photos)."""
    table = add_person_columns(test_probs, groups, group_size)
    return table, person_answers(table, answers)


def consistency_scores(
    oof: pd.DataFrame, groups: np.ndarray | None = None, group_size: int | None = None
) -> dict[str, dict[str, float]]:
    """Scores of an OOF table (labels known) predicted photo by photo, with its known persons (``person_id``:
    the upper bound) and, when given, with clustered ``groups`` (the real case)."""
    labels = oof["label"].to_numpy(dtype=np.int64)
    probs = oof[PROB_COLUMNS].to_numpy(dtype=np.float64)
    scores = {
        "without": classification_metrics(labels, probs),
        "known_persons": classification_metrics(
            labels, person_consistent_probs(probs, oof["person_id"].to_numpy(), group_size)
        ),
    }
    if groups is not None:
        scores["clustered_groups"] = classification_metrics(labels, person_consistent_probs(probs, groups, group_size))
    return scores
