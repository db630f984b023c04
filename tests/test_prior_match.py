"""Prior matching, the solve's decision rule for macro F1: offsets that make the predicted group shares match
the training shares, found without labels, deterministic and bounded."""

import numpy as np
import pytest

from maskcls.core.labels import encode
from maskcls.core.metrics import macro_f1
from maskcls.ensemble.prior_match import MAX_OFFSET, apply_offsets, label_shares, match_priors, part_of_classes


def _shy_of_old(rng, persons=600):
    """Photos whose model hesitates to say 60+: old persons get most of their age probability on 30-59."""
    ages = rng.choice(3, persons, p=[0.45, 0.4, 0.15])
    labels = encode(0, rng.integers(0, 2, persons), ages)
    logits = rng.normal(0, 0.5, (persons, 18))
    logits[np.arange(persons), labels] += 3.0
    old = ages == 2
    logits[old, labels[old] - 1] += 3.3  # the 30-59 class of the same mask and gender, a little above their own
    logits[:, 6:] -= 10.0  # the mask is never in doubt (as on real photos)
    probs = np.exp(logits)
    return labels, probs / probs.sum(axis=1, keepdims=True)


def test_matched_offsets_predict_the_training_shares_and_raise_macro_f1():
    labels, probs = _shy_of_old(np.random.default_rng(0))
    shares = label_shares(labels, "age")
    before = np.bincount(part_of_classes("age")[probs.argmax(1)], minlength=3) / len(probs)
    assert before[2] < shares[2] - 0.05  # the model under-predicts 60+
    offsets = match_priors(probs, shares, "age")
    assert offsets[0] == 0 and offsets[2] > 0
    adjusted = apply_offsets(probs, offsets, "age")
    after = np.bincount(part_of_classes("age")[adjusted.argmax(1)], minlength=3) / len(probs)
    assert np.abs(after - shares).max() < 0.02
    assert macro_f1(labels, adjusted.argmax(1)) > macro_f1(labels, probs.argmax(1))
    assert np.array_equal(offsets, match_priors(probs, shares, "age"))  # the same predictions, the same offsets


def test_gender_age_rule_and_unchanged_rows():
    labels, probs = _shy_of_old(np.random.default_rng(1))
    offsets = match_priors(probs, label_shares(labels, "gender_age"), "gender_age")
    assert offsets.shape == (6,)
    assert np.allclose(apply_offsets(probs, np.zeros(6), "gender_age"), probs)
    with_nan = probs.copy()
    with_nan[3] = np.nan  # an unreadable photo stays unreadable and takes no part
    shares = label_shares(labels, "gender_age")
    assert np.array_equal(
        match_priors(with_nan, shares, "gender_age"), match_priors(np.delete(probs, 3, 0), shares, "gender_age")
    )
    assert np.isnan(apply_offsets(with_nan, offsets, "gender_age")[3]).all()


def test_offsets_stay_bounded_when_a_share_cannot_be_reached():
    probs = np.full((20, 18), 1e-9)
    probs[:, 0] = 1.0  # every photo certain of <30; nobody can be moved to 60+ within the bound
    probs /= probs.sum(axis=1, keepdims=True)
    offsets = match_priors(probs, np.array([0.2, 0.3, 0.5]), "age")
    assert np.all(np.abs(offsets) <= MAX_OFFSET)


def test_bad_arguments_are_refused():
    probs = np.full((4, 18), 1 / 18)
    with pytest.raises(ValueError, match="unknown part 'mask'"):
        match_priors(probs, np.array([0.5, 0.5]), "mask")
    with pytest.raises(ValueError, match="3 shares that sum to 1"):
        match_priors(probs, np.array([0.5, 0.6, 0.1]), "age")
    with pytest.raises(ValueError, match="needs 6 offsets"):
        apply_offsets(probs, np.zeros(3), "gender_age")


def test_the_submission_applies_the_rule_per_photo_then_pools():
    from maskcls.ensemble.person_consistency import person_consistent_probs
    from maskcls.solver.decision_rule import submitted_probs

    labels, probs = _shy_of_old(np.random.default_rng(2), persons=70)
    groups = np.repeat(np.arange(10), 7)

    def pool(p):
        return person_consistent_probs(p, groups, 7)

    rule = {"kept": True, "part": "age", "offsets": [0.0, -0.2, 0.8]}
    expected = pool(apply_offsets(probs, np.array(rule["offsets"]), "age"))
    assert np.allclose(submitted_probs(probs, rule, pool), expected)
    assert np.allclose(submitted_probs(probs, {**rule, "kept": False}, pool), pool(probs))
    assert np.allclose(submitted_probs(probs, None, None), probs)
