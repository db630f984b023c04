import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import f1_score

from maskcls.core.labels import encode
from maskcls.core.metrics import disagreement, macro_f1, margin, predictive_entropy
from maskcls.core.tables import PROB_COLUMNS
from maskcls.ensemble.pseudo import pseudo_label_counts, select_pseudo_labels
from maskcls.ensemble.stacking import META_LEARNERS, Stacker, cross_validated_stacking, stack_features
from maskcls.ensemble.thresholds import (
    apply_class_scales,
    class_scale_report,
    cross_validated_class_scales,
    fit_class_scales,
)
from maskcls.ensemble.uncertainty import contact_sheet, rank_uncertain
from maskcls.ensemble.voting import fit_vote_weights, hard_vote, soft_vote


def _rows(*rows: dict[int, float]) -> np.ndarray:
    """(N, 18) probabilities from sparse {class: probability} rows."""
    probs = np.zeros((len(rows), 18))
    for index, row in enumerate(rows):
        for cls, value in row.items():
            probs[index, cls] = value
    return probs


def _persons(persons=60, seed=0):
    """Labels and person ids of ``persons`` people with 7 photos each (5 masked, 1 incorrect, 1 bare)."""
    rng = np.random.default_rng(seed)
    labels, person_ids = [], []
    for person in range(persons):
        gender, age = rng.integers(2), rng.integers(3)
        for mask in [0] * 5 + [1, 2]:
            labels.append(encode(mask, gender, age))
            person_ids.append(f"p{person:04d}")
    return np.array(labels), np.array(person_ids)


def _member(labels, skill, seed):
    """Softmax of noise plus ``skill`` on the true class: higher skill, better member."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.0, (len(labels), 18))
    logits[np.arange(len(labels)), labels] += skill
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


# --- voting -----------------------------------------------------------------------------------------


def test_soft_vote_is_the_weighted_mean():
    first = _rows({0: 0.6, 1: 0.4}, {2: 1.0})
    second = _rows({0: 0.2, 1: 0.8}, {2: 0.5, 3: 0.5})
    np.testing.assert_allclose(soft_vote([first, second]), _rows({0: 0.4, 1: 0.6}, {2: 0.75, 3: 0.25}))
    np.testing.assert_allclose(
        soft_vote([first, second], weights=[3, 1]), _rows({0: 0.5, 1: 0.5}, {2: 0.875, 3: 0.125})
    )


def test_hard_vote_gives_vote_shares_and_breaks_ties_by_mean_probability():
    members = [
        _rows({0: 0.9, 1: 0.1}, {4: 0.6, 5: 0.4}),
        _rows({0: 0.7, 1: 0.3}, {4: 0.45, 5: 0.55}),
        _rows({0: 0.4, 1: 0.6}, {4: 0.51, 5: 0.49}),
    ]
    shares = hard_vote(members)
    np.testing.assert_array_equal(shares[0], _rows({0: 2 / 3, 1: 1 / 3})[0])  # no tie: exact shares
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)
    # Weights 1, 1, 2: row 0 votes 0, 0, 1 -> shares 0.5 / 0.5, a tie; weighted mean probability of class 0
    # is (0.9 + 0.7 + 2 * 0.4) / 4 = 0.6 > 0.4, so class 0 must win.
    tied = hard_vote(members, weights=[1, 1, 2])
    np.testing.assert_allclose(tied[0, :2], [0.5, 0.5], atol=1e-6)
    assert tied[0].argmax() == 0
    np.testing.assert_allclose(tied.sum(axis=1), 1.0)
    # Flip the probabilities so class 1 has the higher mean: the tie must now go to class 1.
    flipped = [m[:, [1, 0, *range(2, 18)]] for m in members]
    flipped_votes = hard_vote([flipped[0], flipped[1], flipped[2]], weights=[1, 1, 2])
    assert flipped_votes[0].argmax() == 1


def test_vote_weights_are_validated():
    probs = _rows({0: 1.0})
    with pytest.raises(ValueError, match="expected 2 weights"):
        soft_vote([probs, probs], weights=[1.0])
    with pytest.raises(ValueError, match=">= 0"):
        soft_vote([probs, probs], weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="member 1 has 2 rows"):
        soft_vote([probs, np.vstack([probs, probs])])


@pytest.mark.parametrize("objective", ["log_loss", "macro_f1"])
def test_fitted_weights_favour_the_better_member(objective):
    labels, _ = _persons(60)
    good, noise = _member(labels, 3.0, seed=1), _member(labels, 0.0, seed=2)
    weights = fit_vote_weights([noise, good], labels, objective)
    assert weights.shape == (2,) and (weights >= 0).all() and math.isclose(weights.sum(), 1.0)
    assert weights[1] > 0.75, weights
    np.testing.assert_array_equal(weights, fit_vote_weights([noise, good], labels, objective))


def test_fast_macro_f1_matches_scikit_learn():
    rng = np.random.default_rng(0)
    for high in (18, 5):
        labels, predicted = rng.integers(0, high, 400), rng.integers(0, 18, 400)
        assert math.isclose(macro_f1(labels, predicted), f1_score(labels, predicted, average="macro"))


# --- stacking ---------------------------------------------------------------------------------------


class _Memoriser:
    """Predicts the memorised label for a feature row it was trained on, uniform otherwise."""

    def fit(self, features, labels):
        self.seen_ = {row.tobytes(): label for row, label in zip(features, labels, strict=False)}
        self.classes_ = np.unique(labels)
        return self

    def predict_proba(self, features):
        probs = np.full((len(features), len(self.classes_)), 1.0 / len(self.classes_))
        for index, row in enumerate(features):
            if row.tobytes() in self.seen_:
                probs[index] = np.eye(len(self.classes_))[np.searchsorted(self.classes_, self.seen_[row.tobytes()])]
        return probs


def test_cross_validated_stacking_never_sees_a_scoring_row_or_its_person():
    labels, person_ids = _persons(40)
    # Every photo of a person has the same member probabilities: seeing any one of them is memorised.
    per_person = _member(np.zeros(40, dtype=int), 0.0, seed=3)
    member = per_person[np.unique(person_ids, return_inverse=True)[1]]

    in_sample = Stacker(lambda seed: _Memoriser()).fit([member], labels).predict_proba([member])
    assert (in_sample.max(axis=1) == 1.0).all()  # the memoriser does reveal rows it saw

    probs, split_ids = cross_validated_stacking(
        [member], labels, person_ids, learner=lambda seed: _Memoriser(), n_splits=5
    )
    assert probs.shape == (len(labels), 18)
    assert probs.max() < 0.5, "a scoring row (or a photo of the same person) was in the stacker's training rows"
    assert set(split_ids) == set(range(5))
    assert (pd.Series(split_ids).groupby(person_ids).nunique() == 1).all()


@pytest.mark.parametrize("learner", sorted(META_LEARNERS))
def test_every_meta_learner_returns_18_class_probabilities(learner):
    labels, person_ids = _persons(30)
    labels = np.where(labels == 17, 16, labels)  # class 17 absent from training: still 18 columns
    members = [_member(labels, 2.0, seed=4), _member(labels, 1.0, seed=5)]
    stacker = Stacker(learner, head_features=True, seed=0).fit(members, labels)
    probs = stacker.predict_proba(members)
    assert probs.shape == (len(labels), 18)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert (probs[:, 17] == 0).all()
    assert macro_f1(labels, probs.argmax(axis=1)) > 0.3


def test_stacker_re_encodes_sparse_labels():
    labels = np.array([0, 5, 17] * 20)
    member = _member(labels, 4.0, seed=6)
    probs = Stacker("xgboost").fit([member], labels).predict_proba([member])
    assert set(np.flatnonzero(probs.sum(axis=0))) == {0, 5, 17}
    assert (probs.argmax(axis=1) == labels).mean() > 0.9


def test_stack_features_and_validation():
    labels, _ = _persons(5)
    members = [_member(labels, 1.0, 7), _member(labels, 1.0, 8)]
    assert stack_features(members).shape == (35, 36)
    with_heads = stack_features(members, head_features=True)
    assert with_heads.shape == (35, 52)
    np.testing.assert_allclose(with_heads[:, 36:39].sum(axis=1), 1.0)  # first member's mask marginals
    with pytest.raises(ValueError, match="unknown meta-learner 'boost'"):
        Stacker("boost")
    with pytest.raises(ValueError, match="fitted on 2 members, got 1"):
        Stacker("knn").fit(members, labels).predict_proba(members[:1])


# --- thresholds -------------------------------------------------------------------------------------


def test_class_scales_undo_a_biased_table_and_report_an_honest_gain():
    labels, person_ids = _persons(80, seed=1)
    probs = _member(labels, 2.0, seed=9)
    biased = apply_class_scales(probs, np.where(np.arange(18) % 6 == 0, 8.0, 1.0))  # classes 0, 6, 12 over-predicted
    before = macro_f1(labels, biased.argmax(axis=1))
    scales = fit_class_scales(biased, labels)
    assert macro_f1(labels, apply_class_scales(biased, scales).argmax(axis=1)) > before + 0.1
    np.testing.assert_array_equal(scales, fit_class_scales(biased, labels))

    adjusted, split_ids = cross_validated_class_scales(biased, labels, person_ids, n_splits=4)
    np.testing.assert_allclose(adjusted.sum(axis=1), 1.0)
    assert set(split_ids) == set(range(4))
    report = class_scale_report(biased, labels, person_ids, n_splits=4)
    assert report["macro_f1_before"] == pytest.approx(before)
    assert report["cv_macro_f1"] == pytest.approx(macro_f1(labels, adjusted.argmax(axis=1)))
    assert report["cv_macro_f1"] > before + 0.05


def test_class_scales_are_validated():
    with pytest.raises(ValueError, match="18 values"):
        apply_class_scales(np.full((2, 18), 1 / 18), np.ones(3))
    with pytest.raises(ValueError, match="> 0"):
        apply_class_scales(np.full((2, 18), 1 / 18), np.zeros(18))


# --- pseudo-labels ----------------------------------------------------------------------------------


def _test_table():
    probs = _rows(
        {3: 0.95, 4: 0.05}, {3: 0.99, 4: 0.01}, {3: 0.97, 4: 0.03}, {8: 0.92, 0: 0.08}, {8: 0.5, 0: 0.5}, {0: 1.0}
    )
    probs[5] = np.nan  # a photo that could not be read
    return pd.concat(
        [pd.DataFrame({"image_id": [f"img{i}" for i in range(6)]}), pd.DataFrame(probs, columns=PROB_COLUMNS)], axis=1
    )


def test_pseudo_labels_respect_threshold_and_per_class_cap():
    selected = select_pseudo_labels(_test_table(), threshold=0.9)
    assert selected["image_id"].tolist() == ["img1", "img2", "img0", "img3"]
    assert selected["label"].tolist() == [3, 3, 3, 8]
    np.testing.assert_allclose(selected["confidence"], [0.99, 0.97, 0.95, 0.92])

    capped = select_pseudo_labels(_test_table(), threshold=0.9, max_per_class=2)
    assert capped["image_id"].tolist() == ["img1", "img2", "img3"]
    assert select_pseudo_labels(_test_table(), threshold=0.96)["image_id"].tolist() == ["img1", "img2"]

    counts = pseudo_label_counts(capped)
    assert len(counts) == 18 and counts["count"].sum() == 3
    assert counts.set_index("class").loc[3, "count"] == 2 and counts.loc[3, "name"] == "wear/female/<30"


@pytest.mark.parametrize(
    "threshold, cap, message", [(0.0, None, r"\(0, 1\]"), (1.5, None, r"\(0, 1\]"), (0.9, 0, "max_per_class")]
)
def test_pseudo_label_options_are_validated(threshold, cap, message):
    with pytest.raises(ValueError, match=message):
        select_pseudo_labels(_test_table(), threshold=threshold, max_per_class=cap)


# --- uncertainty ------------------------------------------------------------------------------------


def test_entropy_margin_and_disagreement_on_known_inputs():
    probs = np.vstack([np.full(18, 1 / 18), _rows({2: 1.0})[0], _rows({0: 0.5, 1: 0.3, 2: 0.2})[0]])
    np.testing.assert_allclose(
        predictive_entropy(probs),
        [math.log(18), 0.0, -(0.5 * math.log(0.5) + 0.3 * math.log(0.3) + 0.2 * math.log(0.2))],
    )
    np.testing.assert_allclose(margin(probs), [0.0, 1.0, 0.2])

    one_hot_a, one_hot_b = _rows({0: 1.0}), _rows({1: 1.0})
    np.testing.assert_allclose(disagreement(np.stack([one_hot_a, one_hot_b])), [math.log(2)])
    np.testing.assert_allclose(disagreement(np.stack([probs, probs])), 0.0, atol=1e-12)


def test_rank_uncertain_orders_by_the_chosen_measure():
    probs = _rows({0: 0.9, 1: 0.1}, {0: 0.5, 1: 0.5}, {0: 0.6, 1: 0.2, 2: 0.2}, {0: 0.75, 1: 0.25})
    table = pd.concat([pd.DataFrame({"image_id": list("abcd")}), pd.DataFrame(probs, columns=PROB_COLUMNS)], axis=1)
    assert rank_uncertain(table, 2, by="entropy")["image_id"].tolist() == ["c", "b"]
    by_margin = rank_uncertain(table, 3, by="margin")
    assert by_margin["image_id"].tolist() == ["b", "c", "d"]
    np.testing.assert_allclose(by_margin["margin"], [0.0, 0.4, 0.5])
    with pytest.raises(ValueError, match="no 'disagreement' column"):
        rank_uncertain(table, 2, by="disagreement")
    ranked = rank_uncertain(table.assign(disagreement=[0.1, 0.0, 0.3, 0.2]), 1, by="disagreement")
    assert ranked["image_id"].tolist() == ["c"]


def test_contact_sheet_writes_a_grid_with_unreadable_tiles(tmp_path):
    paths = []
    for index, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        paths.append(tmp_path / f"photo{index}.png")
        Image.new("RGB", (120, 160), colour).save(paths[-1])
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    paths.append(broken)
    out = contact_sheet(paths, ["red", "green", "blue", "broken"], tmp_path / "sheet.png", thumb_hw=(96, 72), columns=3)
    with Image.open(out) as sheet:
        assert sheet.format == "PNG" and sheet.size == (3 * 72, 2 * (96 + 14))
        assert sheet.getpixel((36, 10)) == (255, 0, 0)
        assert sheet.getpixel((72 + 36, 10)) == (0, 255, 0)
        assert sheet.getpixel((5, 110 + 5)) == (128, 128, 128)  # broken photo: second row, first tile
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left
    with pytest.raises(ValueError, match="3 captions for 4 photos"):
        contact_sheet(paths, ["a", "b", "c"], tmp_path / "x.png")
