"""The face-attribute stage of ``solve``: each person's unmasked photo read by offline face models
(``persons.attributes``), a gender x age model fitted on the training persons, and its evidence added to every
photo of the person's group before the decision rule and pooling.

Which photo is a group's face: the training persons' ``normal`` photo (their labels say it), and in each eval or
holdout group the photo the final combination finds most likely unmasked (mask accuracy is about 0.999).
The attributes of every photo read are cached in ``persons/face_attributes.csv``; the evidence of every eval
and holdout photo is written to ``persons/face_evidence.csv``, which the finish stage reads.

The OOF proxy: the same model cross-fitted on the training persons (5 folds), its evidence added to the OOF
table pooled by the known persons, against that pooled table without it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..core.io import write_csv
from ..core.labels import Mask
from ..core.metrics import macro_f1
from ..core.tables import PROB_COLUMNS
from ..data.layout import read_train
from ..ensemble.person_consistency import person_consistent_probs
from ..persons.attributes import (
    ATTRIBUTE_COLUMNS,
    GENDER_AGE,
    PersonAttributeModel,
    cached_face_attributes,
    gender_age_of,
    with_evidence,
)

ATTRIBUTES_FILE = "face_attributes.csv"
EVIDENCE_FILE = "face_evidence.csv"
EVIDENCE_COLUMNS = [f"e{i}" for i in range(GENDER_AGE)]
PROXY_FOLDS = 5


def face_photo_rows(probs: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """For each row, the row of its group's face: the group's photo with the highest p(mask not worn)."""
    not_worn = np.nan_to_num(probs.reshape(-1, 3, GENDER_AGE)[:, Mask.NOT_WEAR].sum(axis=1), nan=-1.0)
    table = pd.DataFrame({"group": pd.Series(groups).astype(str).to_numpy(), "p": not_worn})
    best = table.groupby("group")["p"].idxmax()
    return best.loc[table["group"]].to_numpy()


def training_faces(train_dirs: list[str], thresholds) -> pd.DataFrame:
    """The ``normal`` photo of every training person of ``train_dirs`` (the members' training persons, and the
    ``--faces`` persons where members trained with them): image_id, path, person_id, label."""
    parts = []
    for train_dir in train_dirs:
        manifest, _ = read_train(train_dir, thresholds)
        normal = manifest[manifest["mask"] == int(Mask.NOT_WEAR)]
        parts.append(normal[["image_id", "path", "person_id", "label"]].assign(source=str(train_dir)))
    return pd.concat(parts, ignore_index=True)


def fit_attribute_model(
    out_dir: Path, train_dirs: list[str], thresholds, progress: bool = False
) -> tuple[PersonAttributeModel, pd.DataFrame, np.ndarray]:
    """The attribute model fitted on the training persons' faces, those faces and their features."""
    faces = training_faces(train_dirs, thresholds)
    table = cached_face_attributes(faces, Path(out_dir) / ATTRIBUTES_FILE, progress=progress)
    features = table[ATTRIBUTE_COLUMNS].to_numpy(np.float64)
    readable = np.all(np.isfinite(features), axis=1)
    faces, features = faces[readable].reset_index(drop=True), features[readable]
    model = PersonAttributeModel().fit(features, gender_age_of(faces["label"].to_numpy()))
    return model, faces, features


def eval_evidence(
    out_dir: Path,
    model: PersonAttributeModel,
    photos: pd.DataFrame,
    probs: np.ndarray,
    groups: np.ndarray,
    progress: bool = False,
) -> np.ndarray:
    """``(N, 6)`` evidence of every row of ``photos`` (image_id, path; eval-view order): its group's face's."""
    rows = face_photo_rows(probs, groups)
    faces = photos.iloc[np.unique(rows)][["image_id", "path"]]
    table = cached_face_attributes(faces, Path(out_dir) / ATTRIBUTES_FILE, progress=progress)
    evidence = pd.DataFrame(model.evidence(table[ATTRIBUTE_COLUMNS].to_numpy(np.float64)), index=np.unique(rows))
    return evidence.loc[rows].to_numpy()


def write_evidence(path: Path, image_ids: pd.Series, evidence: np.ndarray) -> np.ndarray:
    """Writes the evidence of each of ``image_ids``; returns it as written (rounded), so the decision rule and
    the finish stage see the same numbers."""
    frame = _frame(evidence)
    write_csv(path, pd.concat([pd.DataFrame({"image_id": image_ids.to_numpy()}), frame], axis=1))
    return frame.to_numpy()


def read_evidence(path: str | Path, image_ids: pd.Series) -> np.ndarray:
    """The evidence of each of ``image_ids`` (in their order) from ``face_evidence.csv``."""
    table = pd.read_csv(path, dtype={"image_id": str}).set_index("image_id")
    return table.loc[image_ids.astype(str), EVIDENCE_COLUMNS].to_numpy(np.float64)


def proxy_score(oof: pd.DataFrame, faces: pd.DataFrame, features: np.ndarray, group_size: int | None) -> float:
    """OOF macro F1 pooled by the known persons with cross-fitted face evidence (the baseline, without it, is
    ``consistency_scores(oof)["known_persons"]``); persons of the OOF table without a face keep no evidence."""
    from sklearn.model_selection import StratifiedKFold

    labels = gender_age_of(faces["label"].to_numpy())
    evidence = np.zeros((len(faces), GENDER_AGE))
    folds = StratifiedKFold(min(PROXY_FOLDS, int(np.bincount(labels).max())), shuffle=True, random_state=0)
    for fit_rows, held_rows in folds.split(features, labels):
        model = PersonAttributeModel().fit(features[fit_rows], labels[fit_rows])
        evidence[held_rows] = model.evidence(features[held_rows])
    by_person = pd.DataFrame(evidence, index=faces["person_id"].astype(str).to_numpy())
    by_person = by_person[~by_person.index.duplicated()]
    persons = oof["person_id"].astype(str)
    rows = by_person.reindex(persons).fillna(0.0).to_numpy()
    probs = with_evidence(oof[PROB_COLUMNS].to_numpy(np.float64), rows)
    pooled = person_consistent_probs(probs, persons.to_numpy(), group_size)
    return round(macro_f1(oof["label"].to_numpy(np.int64), pooled.argmax(1)), 4)


def _frame(evidence: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(np.asarray(evidence, dtype=np.float64).round(5), columns=EVIDENCE_COLUMNS)
