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
from ..data.layout import read_eval, read_train
from ..ensemble.person_consistency import person_consistent_probs
from ..persons.attributes import (
    ATTRIBUTE_COLUMNS,
    GENDER_AGE,
    PersonAttributeModel,
    cached_face_attributes,
    gender_age_of,
    with_evidence,
)
from .holdout import holdout_row_of

ATTRIBUTES_FILE = "face_attributes.csv"
EVIDENCE_FILE = "face_evidence.csv"
EVIDENCE_COLUMNS = [f"e{i}" for i in range(GENDER_AGE)]
PROXY_FOLDS = 5


def face_photo_rows(probs: np.ndarray, groups: np.ndarray, mask: Mask = Mask.NOT_WEAR) -> np.ndarray:
    """For each row, the row of its group's face: the group's photo with the highest p(``mask``), by default the
    unmasked one."""
    likely = np.nan_to_num(probs.reshape(-1, 3, GENDER_AGE)[:, mask].sum(axis=1), nan=-1.0)
    table = pd.DataFrame({"group": pd.Series(groups).astype(str).to_numpy(), "p": likely})
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


def holdout_person_evidence(
    out_dir: Path, train_dir: str, eval_dir: str, answers: pd.DataFrame, thresholds
) -> pd.DataFrame | None:
    """``(persons, 6)`` face evidence of the holdout's persons (indexed by person_id), read off the photo their
    answers call unmasked, from the model the persons stage fits (its feature cache is shared, so nothing is
    read twice); None where the face models are missing or cannot be fitted."""
    folder = Path(out_dir) / "persons"
    try:
        model, _, _ = fit_attribute_model(folder, [train_dir], thresholds)
    except (ModuleNotFoundError, ValueError):  # the persons stage says why; the members are then judged pooled
        return None
    unmasked = answers[answers["label"].to_numpy(np.int64) // GENDER_AGE == int(Mask.NOT_WEAR)]
    unmasked = unmasked.drop_duplicates("person_id")
    photos, _ = read_eval(eval_dir)
    faces = photos.set_index("image_id").loc[unmasked["image_id"].astype(str)].reset_index()[["image_id", "path"]]
    table = cached_face_attributes(faces, folder / ATTRIBUTES_FILE)
    evidence = model.evidence(table[ATTRIBUTE_COLUMNS].to_numpy(np.float64))
    return pd.DataFrame(evidence, index=unmasked["person_id"].astype(str).to_numpy())


def holdout_as_submitted(
    table: pd.DataFrame, answers: pd.DataFrame, person_evidence: pd.DataFrame | None, group_size: int | None
) -> np.ndarray:
    """``table``'s probabilities with what the persons stage adds by default done to its holdout rows: each
    person's face evidence (``person_evidence``; none where None or missing) and pooling by the known person.
    Other rows are left as they are. Members and votes are judged on this, not per photo: per photo, the
    holdout's sign of a member's gain agreed with the submission's on persons no model saw for 8 of 16
    decisions, as submitted for 9 of 12 (docs/results.md, "Members that differ")."""
    probs = table[PROB_COLUMNS].to_numpy(np.float64).copy()
    rows = holdout_row_of(table)
    persons = answers.set_index("image_id").loc[rows.index, "person_id"].astype(str).to_numpy()
    held = probs[rows.to_numpy()]
    if person_evidence is not None:
        held = with_evidence(held, person_evidence.reindex(persons).fillna(0.0).to_numpy())
    if group_size:
        held = person_consistent_probs(held, persons, group_size)
    probs[rows.to_numpy()] = held
    return probs
