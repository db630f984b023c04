"""Exact and near-duplicate photos: across persons within a training folder, and between train and eval.

The same face filed under two persons lands on both sides of a fold split, so validation flatters
the model; a training photo that is also in eval makes the eval score easier than new photos would.
Exact duplicates have the same bytes (SHA-1). Near-duplicates have perceptual hashes (imagehash's
pHash) of the upper face within ``max_distance`` bits of each other, and mean colours of it within
``COLOUR_TOLERANCE`` (pHash sees only grey levels).

Why the upper face: on utkmask18 (MaskTheFace masks on UTKFace crops) a whole-photo hash mostly sees
the mask: at distance <= 2 it paired different people wearing the same mask. The upper-face hash at
distance <= 2 found exactly two persons who are one person twice (25 and 26 of their 49 photo pairs
matched) and one eval person who is a training person, and no false pairs. On the synthetic demo
faces (a few drawn hair and eye shapes) grey levels alone paired different persons; their colours
(background, hair, skin) tell them apart.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COLOUR_TOLERANCE = 0.05  # largest difference of a channel's mean (0..1) over the upper face
PAIR_COLUMNS = ["kind", "identical", "distance", "image_a", "person_a", "path_a", "image_b", "person_b", "path_b"]


def near_pairs(
    hashes_a: np.ndarray, hashes_b: np.ndarray | None = None, max_distance: int = 2, chunk: int = 512
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index pairs ``(i, j, distance)`` of 64-bit hashes at most ``max_distance`` bits apart.

    Without ``hashes_b``: pairs within ``hashes_a`` with ``i < j``; otherwise ``i`` indexes a and ``j`` b.
    """
    hashes_a = np.asarray(hashes_a, dtype=np.uint64)
    other = hashes_a if hashes_b is None else np.asarray(hashes_b, dtype=np.uint64)
    found_i, found_j, found_d = [], [], []
    for start in range(0, len(hashes_a), chunk):
        distances = np.bitwise_count(hashes_a[start : start + chunk, None] ^ other[None, :])
        rows, cols = np.nonzero(distances <= max_distance)
        if hashes_b is None:
            keep = cols > rows + start
            rows, cols = rows[keep], cols[keep]
        found_i.append(rows + start)
        found_j.append(cols)
        found_d.append(distances[rows, cols])
    if not found_i:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return (
        np.concatenate(found_i).astype(np.int64),
        np.concatenate(found_j).astype(np.int64),
        np.concatenate(found_d).astype(np.int64),
    )


def duplicate_pairs(
    train: pd.DataFrame, eval_photos: pd.DataFrame | None = None, max_distance: int = 2
) -> pd.DataFrame:
    """Photo pairs that are the same photo or nearly: train photos of different persons, and train x eval.

    Both tables hold ``image_id``, ``person_id`` (eval: any), ``path``, ``sha1``, ``upper_hash``,
    ``upper_r/g/b`` and ``error`` (photos with an error are left out). Sorted by distance, identical files first.
    """
    train = train[train["error"] == ""].reset_index(drop=True)
    frames = [
        _pairs(train, train, *near_pairs(train["upper_hash"].to_numpy(), max_distance=max_distance), "train-train")
    ]
    if eval_photos is not None:
        eval_photos = eval_photos[eval_photos["error"] == ""].reset_index(drop=True)
        i, j, distance = near_pairs(eval_photos["upper_hash"].to_numpy(), train["upper_hash"].to_numpy(), max_distance)
        frames.append(_pairs(train, eval_photos, j, i, distance, "train-eval"))
    pairs = pd.concat(frames, ignore_index=True)
    pairs = pairs[(pairs["kind"] != "train-train") | (pairs["person_a"] != pairs["person_b"])]
    return pairs.sort_values(
        ["identical", "distance", "kind", "image_a", "image_b"], ascending=[False, True, True, True, True]
    ).reset_index(drop=True)


def _pairs(
    left: pd.DataFrame, right: pd.DataFrame, i: np.ndarray, j: np.ndarray, distance: np.ndarray, kind: str
) -> pd.DataFrame:
    colours = ["upper_r", "upper_g", "upper_b"]
    similar = (
        np.abs(left[colours].to_numpy(dtype=np.float64)[i] - right[colours].to_numpy(dtype=np.float64)[j]).max(
            axis=1, initial=0.0
        )
        <= COLOUR_TOLERANCE
    )
    i, j, distance = i[similar], j[similar], distance[similar]
    a, b = left.iloc[i].reset_index(drop=True), right.iloc[j].reset_index(drop=True)
    return pd.DataFrame(
        {
            "kind": kind,
            "identical": (a["sha1"] == b["sha1"]).to_numpy(dtype=bool),
            "distance": distance,
            "image_a": a["image_id"],
            "person_a": a["person_id"],
            "path_a": a["path"],
            "image_b": b["image_id"],
            "person_b": b["person_id"],
            "path_b": b["path"],
        },
        columns=PAIR_COLUMNS,
    )


def person_pairs(pairs: pd.DataFrame) -> pd.DataFrame:
    """Train persons who share near-duplicate photos: how many photo pairs, and the closest distance."""
    within = pairs[pairs["kind"] == "train-train"]
    if within.empty:
        return pd.DataFrame(columns=["person_a", "person_b", "photo_pairs", "closest"])
    ordered = pd.DataFrame(
        np.sort(within[["person_a", "person_b"]].to_numpy(dtype=str), axis=1), columns=["person_a", "person_b"]
    )
    ordered["distance"] = within["distance"].to_numpy()
    grouped = ordered.groupby(["person_a", "person_b"], as_index=False).agg(
        photo_pairs=("distance", "size"), closest=("distance", "min")
    )
    return grouped.sort_values(["photo_pairs", "closest"], ascending=[False, True]).reset_index(drop=True)
