"""Group photos into persons: feature blocks (``features.py``) -> one scaled embedding -> clusters.

Two ways to cluster:

- **threshold**: average-linkage agglomerative clustering (scipy's hierarchy, so one tree serves every
  threshold), cut at a distance chosen on the training photos, where persons are known;
- **structured** (``group_size``, e.g. 7 in the competition): groups of exactly that size, each with one
  ``normal`` and one ``incorrect_mask`` photo. The photos most likely unmasked anchor the groups, the most
  likely incorrectly masked ones are paired to them by an optimal assignment, and the rest join one per
  group per round (each round an optimal assignment to the groups' current centroids): balanced
  clustering by ``linear_sum_assignment``.

Training photos are grouped in chunks of about the eval set's size (a run's folds when a run is given, so
its backbone features and mask probabilities are out-of-fold), with the same settings; their purity and
completeness say how good the eval grouping is likely to be. In threshold mode each chunk is scored
with a threshold chosen on the other chunks.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist, pdist
from sklearn.metrics.cluster import contingency_matrix

from ..core.artifacts import (
    OOF_FILE,
    RUN_FILE,
    TEST_PROBS_FILE,
    RunError,
    kfold_run_of,
    predicted_for,
)
from ..core.io import write_csv, write_json
from ..core.labels import Mask, head_probabilities
from ..core.tables import PROB_COLUMNS
from ..data.layout import read_eval, read_train, union_problems
from ..ensemble.person_consistency import GroupsError, consistency_scores
from .features import photo_features

DEFAULT_FEATURES = ("colour",)


def embed(blocks: dict[str, np.ndarray], weights: dict[str, float] | None = None, seed: int = 0) -> np.ndarray:
    """One vector per photo: each block (descriptors L2-normalised) divided by its median pairwise distance
    within this photo set and multiplied by its weight, concatenated. The scaling makes blocks comparable
    with each other and thresholds transferable between photo sets."""
    parts = []
    for name, block in blocks.items():
        values = np.asarray(block, dtype=np.float64)
        if name != "colour":
            values = values / np.maximum(np.linalg.norm(values, axis=1, keepdims=True), 1e-12)
        parts.append(values / _median_distance(values, seed) * (weights or {}).get(name, 1.0))
    return np.concatenate(parts, axis=1)


def _median_distance(values: np.ndarray, seed: int, sample: int = 400) -> float:
    rows = np.random.default_rng(seed).choice(len(values), size=min(len(values), sample), replace=False)
    distances = pdist(values[rows]) if len(rows) > 1 else np.zeros(0)
    median = float(np.median(distances)) if len(distances) else 0.0
    return median if median > 0 else 1.0


def cluster_tree(embedding: np.ndarray) -> np.ndarray:
    """Average-linkage tree (scipy linkage matrix) of the photos' Euclidean distances."""
    if len(embedding) < 2:
        return np.zeros((0, 4))
    return linkage(embedding, method="average", metric="euclidean")


def cut_tree(tree: np.ndarray, threshold: float, count: int) -> np.ndarray:
    """Group index (0..) of each of ``count`` photos: clusters whose average distance stays below ``threshold``."""
    if count < 2:
        return np.zeros(count, dtype=np.int64)
    return fcluster(tree, t=threshold, criterion="distance").astype(np.int64) - 1


def structured_groups(embedding: np.ndarray, mask_probs: np.ndarray, group_size: int = 7) -> np.ndarray:
    """Groups of exactly ``group_size`` photos, each with one photo of the likeliest ``normal`` and one of the
    likeliest ``incorrect_mask`` photos (see the module docstring). ``mask_probs``: ``(N, 3)``."""
    count = len(embedding)
    if count % group_size:
        raise GroupsError(
            f"--group-size {group_size} needs a multiple of {group_size} photos, got {count}; "
            "leave --group-size out to cluster freely"
        )
    groups_count = count // group_size
    if groups_count == 0:
        return np.zeros(0, dtype=np.int64)
    mask_probs = np.asarray(mask_probs, dtype=np.float64)
    normal = np.argsort(-mask_probs[:, Mask.NOT_WEAR], kind="stable")[:groups_count]
    rest = np.setdiff1d(np.arange(count), normal)
    incorrect = rest[np.argsort(-mask_probs[rest, Mask.INCORRECT], kind="stable")[:groups_count]]
    worn = np.setdiff1d(rest, incorrect)
    groups = np.full(count, -1, dtype=np.int64)
    groups[normal] = np.arange(groups_count)
    _, pairs = linear_sum_assignment(cdist(embedding[normal], embedding[incorrect]))
    groups[incorrect[pairs]] = np.arange(groups_count)
    members = [[normal[g], incorrect[pairs[g]]] for g in range(groups_count)]
    for _ in range(group_size - 2):
        centroids = np.stack([embedding[m].mean(axis=0) for m in members])
        group_rows, photo_columns = linear_sum_assignment(cdist(centroids, embedding[worn]))
        for group, column in zip(group_rows, photo_columns, strict=False):
            groups[worn[column]] = group
            members[group].append(worn[column])
        worn = np.delete(worn, photo_columns)
    return groups


def _contingency(persons: np.ndarray, groups: np.ndarray):
    """Persons x groups photo counts (sparse), photos per group, photos per person."""
    table = contingency_matrix(persons, groups, sparse=True).tocsr()
    return (
        table,
        np.asarray(table.sum(axis=0)).ravel().astype(np.float64),
        np.asarray(table.sum(axis=1)).ravel().astype(np.float64),
    )


def _pair_counts(persons: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Photo pairs (same person and same group, same group, same person)."""
    table, by_group, by_person = _contingency(persons, groups)
    cells = table.data.astype(np.float64)
    return np.array(
        [
            (cells * (cells - 1) / 2).sum(),
            (by_group * (by_group - 1) / 2).sum(),
            (by_person * (by_person - 1) / 2).sum(),
        ]
    )


def grouping_scores(persons: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """How well ``groups`` recover ``persons``.

    ``purity``: share of photos in a group whose most common person is their own (1 = no group mixes
    persons); ``completeness``: share of photos in their person's most common group (1 = no person is split);
    pairwise precision / recall / F1 over photo pairs; ``exact_persons``: share of persons whose photos are
    exactly one group.
    """
    if len(persons) == 0:
        return {}
    table, by_group, by_person = _contingency(persons, groups)
    both, same_group, same_person = _pair_counts(persons, groups)
    precision = both / same_group if same_group else 1.0
    recall = both / same_person if same_person else 1.0
    person_max = table.max(axis=1).toarray().ravel()
    main_group = np.asarray(table.argmax(axis=1)).ravel()
    exact = (person_max == by_person) & (by_group[main_group] == by_person)
    return {
        "purity": float(table.max(axis=0).toarray().sum() / len(persons)),
        "completeness": float(person_max.sum() / len(persons)),
        "pairwise_precision": float(precision),
        "pairwise_recall": float(recall),
        "pairwise_f1": float(2 * precision * recall / (precision + recall)) if precision + recall else 0.0,
        "exact_persons": float(exact.mean()),
        "persons": int(len(by_person)),
        "groups": int(len(by_group)),
    }


def choose_threshold(
    trees: list[np.ndarray], persons: list[np.ndarray], candidates: int = 200
) -> tuple[float, list[float]]:
    """The cut with the best pairwise F1 over all chunks, and for each chunk the best over the *other* chunks
    (so a chunk's score does not benefit from its own threshold choice)."""
    heights = np.concatenate([tree[:, 2] for tree in trees if len(tree)] or [np.ones(1)])
    thresholds = np.unique(np.quantile(heights, np.linspace(0, 1, candidates + 1)))
    thresholds = np.append(thresholds, thresholds[-1] * 1.01)  # above every merge: everything in one group
    counts = np.stack(
        [
            [_pair_counts(p, cut_tree(tree, t, len(p))) for t in thresholds]
            for tree, p in zip(trees, persons, strict=False)
        ]
    )  # chunks x t x 3

    def best(pooled: np.ndarray) -> float:
        precision = np.divide(pooled[:, 0], pooled[:, 1], out=np.ones(len(pooled)), where=pooled[:, 1] > 0)
        recall = np.divide(pooled[:, 0], pooled[:, 2], out=np.ones(len(pooled)), where=pooled[:, 2] > 0)
        f1 = np.divide(
            2 * precision * recall, precision + recall, out=np.zeros(len(pooled)), where=precision + recall > 0
        )
        return float(thresholds[int(np.argmax(f1))])

    overall = best(counts.sum(axis=0))
    held_out = [best(counts.sum(axis=0) - counts[c]) if len(trees) > 1 else overall for c in range(len(trees))]
    return overall, held_out


def group_chunks(
    blocks: dict[str, np.ndarray],
    chunks: np.ndarray,
    persons: np.ndarray,
    group_size: int | None = None,
    mask_probs: np.ndarray | None = None,
    threshold: float | None = None,
    weights: dict[str, float] | None = None,
) -> tuple[np.ndarray, float | None, list[dict]]:
    """Group training photos chunk by chunk (persons known, to score the grouping and choose a threshold).

    Returns group ids (never shared between chunks), the threshold for new photos (None in structured mode)
    and each chunk's scores.
    """
    groups = np.full(len(chunks), -1, dtype=np.int64)
    chunk_ids = list(pd.unique(chunks))
    rows_of = [np.flatnonzero(chunks == chunk) for chunk in chunk_ids]
    embeddings = [embed({name: block[rows] for name, block in blocks.items()}, weights) for rows in rows_of]
    if group_size:
        chunk_groups = [
            structured_groups(x, mask_probs[rows], group_size) for x, rows in zip(embeddings, rows_of, strict=False)
        ]
        chosen, held_out = None, [None] * len(rows_of)
    else:
        trees = [cluster_tree(x) for x in embeddings]
        if threshold is None:
            chosen, held_out = choose_threshold(trees, [persons[rows] for rows in rows_of])
        else:
            chosen, held_out = threshold, [threshold] * len(rows_of)
        chunk_groups = [cut_tree(tree, t, len(rows)) for tree, t, rows in zip(trees, held_out, rows_of, strict=False)]
    offset, per_chunk = 0, []
    for chunk, rows, found, used in zip(chunk_ids, rows_of, chunk_groups, held_out, strict=False):
        groups[rows] = found + offset
        offset += int(found.max()) + 1 if len(found) else 0
        per_chunk.append(
            {"chunk": str(chunk), "photos": int(len(rows)), "threshold": used, **grouping_scores(persons[rows], found)}
        )
    return groups, chosen, per_chunk


def group_photos(
    eval_dir: str | Path,
    out_csv: str | Path,
    run_dir: str | Path | None = None,
    train_dir: str | Path | None = None,
    group_size: int | None = None,
    features: tuple[str, ...] = DEFAULT_FEATURES,
    threshold: float | None = None,
    weights: dict[str, float] | None = None,
    cache_dir: str | None = None,
    accelerator: str = "auto",
    progress: bool = True,
) -> dict:
    """Group the photos of ``eval_dir`` into persons; write ``out_csv`` (ImageID, group; info.csv's order),
    ``groups_train.csv`` (the training photos' groups) and ``groups.json`` (settings and scores) beside it.

    ``run_dir`` (a run or ensemble) gives mask probabilities (needed with ``group_size``), backbone features,
    the training folder and its folds, and an out-of-fold evaluation of person-consistent prediction with
    known persons and with the clustered training groups. Returns the report (also in ``groups.json``).
    """
    started = time.perf_counter()
    out_csv = Path(out_csv)
    features = tuple(features)
    if group_size is not None and run_dir is None:
        raise GroupsError(
            "--group-size needs --run: the run's mask probabilities pick each group's normal and incorrect_mask photo"
        )
    kfold_dir = _kfold_run_behind(run_dir) if run_dir is not None else None
    if train_dir is None and kfold_dir is not None:
        train_dir = json.loads((kfold_dir / RUN_FILE).read_text())["data"]
    if train_dir is None and threshold is None:
        raise GroupsError(
            "give --train TRAIN_DIR (or --run, whose training photos are used) to choose the threshold and measure the "
            "grouping, or --threshold"
        )
    run = None
    if "backbone" in features:
        from ..inference.predict import load_run

        run = load_run(kfold_dir) if kfold_dir is not None else None

    info, problems = read_eval(eval_dir)
    report: dict = {
        "features": list(features),
        "weights": weights or {},
        "group_size": group_size,
        "mode": "structured" if group_size else "threshold",
    }
    train_groups = None
    if train_dir is not None:
        train, chunk_by = _training_photos(Path(train_dir), Path(run_dir) if run_dir else None, eval_photos=len(info))
        model_of_row = train["model_index"].to_numpy() if run is not None and "model_index" in train else None
        blocks, train_problems = photo_features(train, features, run, model_of_row, cache_dir, accelerator, progress)
        readable = ~train["path"].isin({p.file for p in train_problems}).to_numpy()
        train, blocks = train[readable].reset_index(drop=True), {k: v[readable] for k, v in blocks.items()}
        mask_probs = train[["m0", "m1", "m2"]].to_numpy() if group_size else None
        found, chosen, per_chunk = group_chunks(
            blocks, train["chunk"].to_numpy(), train["person_id"].to_numpy(), group_size, mask_probs, threshold, weights
        )
        threshold = chosen if threshold is None else threshold
        train_groups = train[["image_id", "person_id"]].assign(group=found)
        write_csv(out_csv.parent / "groups_train.csv", train_groups)
        report["train"] = {
            "data": str(Path(train_dir).resolve()),
            "chunks": len(per_chunk),
            "chunk_by": chunk_by,
            **grouping_scores(train["person_id"].to_numpy(), found),
            "per_chunk": per_chunk,
            "note": (
                "each chunk is grouped alone with the same settings; "
                "in threshold mode with a threshold chosen on the other chunks"
            ),
        }
    report["threshold"] = threshold

    bad = {p.file for p in problems}
    usable = info[~info["path"].isin(bad)].reset_index(drop=True)
    blocks, image_problems = photo_features(usable, features, run, None, cache_dir, accelerator, progress)
    readable = ~usable["path"].isin({p.file for p in image_problems}).to_numpy()
    usable, blocks = usable[readable].reset_index(drop=True), {k: v[readable] for k, v in blocks.items()}
    embedding = embed(blocks, weights)
    if group_size:
        mask_probs = head_probabilities(
            _eval_probs(Path(run_dir), usable, Path(eval_dir), cache_dir, accelerator, progress)
        )["mask"]
        found = structured_groups(embedding, mask_probs, group_size)
    else:
        found = cut_tree(cluster_tree(embedding), threshold, len(usable))
    group_of = dict(zip(usable["image_id"], found, strict=False))
    next_group = int(found.max()) + 1 if len(found) else 0
    groups = []
    for image_id in info["image_id"]:  # unreadable photos: a group of their own
        if image_id not in group_of:
            group_of[image_id], next_group = next_group, next_group + 1
        groups.append(group_of[image_id])
    write_csv(out_csv, pd.DataFrame({"ImageID": info["image_id"], "group": groups}))
    sizes = np.bincount(found) if len(found) else np.zeros(0)
    report["eval"] = {
        "data": str(Path(eval_dir).resolve()),
        "photos": int(len(info)),
        "grouped_photos": int(len(usable)),
        "groups": int(len(set(groups))),
        "mean_group_size": float(sizes.mean()) if len(sizes) else 0.0,
        "groups_of_size": {str(k): int(v) for k, v in zip(*np.unique(sizes, return_counts=True), strict=False)},
        "unreadable": [{"file": p.file, "reason": p.reason} for p in union_problems([problems, image_problems])],
    }
    if run_dir is not None and train_groups is not None:
        report["oof_consistency"] = oof_consistency(Path(run_dir) / OOF_FILE, train_groups, group_size)
    report["wall_seconds"] = round(time.perf_counter() - started, 1)
    write_json(out_csv.parent / "groups.json", report)
    return report


def oof_consistency(oof_csv: Path, train_groups: pd.DataFrame, group_size: int | None) -> dict | None:
    """Person-consistent prediction scored on a run's OOF table: without, with known persons, with the clustered
    groups."""
    oof = pd.read_csv(oof_csv, dtype={"image_id": str, "person_id": str})
    if PROB_COLUMNS[0] not in oof:
        return None  # a single-head run: no 18-class probabilities to make consistent
    oof = oof[oof["image_id"].isin(set(train_groups["image_id"]))].reset_index(drop=True)
    groups = train_groups.set_index("image_id")["group"].loc[oof["image_id"]].to_numpy()
    return consistency_scores(oof, groups, group_size)


def _training_photos(train_dir: Path, run_dir: Path | None, eval_photos: int) -> tuple[pd.DataFrame, str]:
    """Training photos with person, chunk (and with a run: mask probabilities m0..m2 and the fold model's index)."""
    manifest, _ = read_train(train_dir)
    manifest["person_id"] = manifest["person_id"].astype(str)
    if run_dir is None:
        persons = manifest["person_id"].unique()
        chunks = max(2, round(len(manifest) / max(eval_photos, 1)))
        chunk_of = dict(
            zip(np.random.default_rng(0).permutation(persons), np.arange(len(persons)) % chunks, strict=False)
        )
        return manifest.assign(
            chunk=manifest["person_id"].map(chunk_of)
        ), f"{chunks} random person-level chunks of about the eval set's size"
    oof = pd.read_csv(run_dir / OOF_FILE, dtype={"image_id": str, "person_id": str})
    if PROB_COLUMNS[0] not in oof:
        raise GroupsError(
            f"{run_dir}/{OOF_FILE} has no 18-class probabilities (a single-head run); "
            "group with its combined or ensemble directory"
        )
    mask = head_probabilities(oof[PROB_COLUMNS].to_numpy(dtype=np.float64))["mask"]
    oof = oof[["image_id", "fold"]].assign(m0=mask[:, 0], m1=mask[:, 1], m2=mask[:, 2])
    train = manifest.merge(oof, on="image_id", how="inner")
    folds = sorted(train["fold"].unique())
    return train.assign(
        chunk=train["fold"], model_index=train["fold"].map({f: i for i, f in enumerate(folds)})
    ), f"the folds of {run_dir}"


def _eval_probs(run_dir: Path, photos: pd.DataFrame, eval_dir: Path, cache_dir, accelerator, progress) -> np.ndarray:
    """The run's probabilities of ``photos``: its test_probs.csv when it was made for this eval folder, else predicted
    now."""
    if predicted_for(run_dir, eval_dir):
        table = pd.read_csv(run_dir / TEST_PROBS_FILE, dtype={"image_id": str}).set_index("image_id")
        if set(photos["image_id"]) <= set(table.index):
            return table.loc[photos["image_id"], PROB_COLUMNS].to_numpy(dtype=np.float64)
    from ..inference.predict import predict_table

    return predict_table(run_dir, photos, cache_dir=cache_dir, accelerator=accelerator, progress=progress).probs


def _kfold_run_behind(run_dir: str | Path) -> Path:
    """The k-fold run whose training photos and backbone grouping uses (a combination's mask source)."""
    run = kfold_run_of(run_dir, head="mask")
    if not (run / RUN_FILE).is_file():
        raise RunError(f"{run_dir} is not a finished run, ensemble or combination (no {RUN_FILE})")
    return run
