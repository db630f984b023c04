import numpy as np
import pytest

from maskcls.core.labels import AgeThresholds, class_names, decode, encode, head_probabilities, joint_from_heads


def test_encode_decode_round_trip_every_class():
    for label in range(18):
        mask, gender, age = decode(label)
        assert encode(mask, gender, age) == label
    labels = np.arange(18)
    assert np.array_equal(encode(*decode(labels)), labels)


def test_schema_matches_the_competition():
    assert encode(0, 0, 0) == 0  # wear, male, <30
    assert encode(0, 1, 2) == 5  # wear, female, >=60
    assert encode(1, 0, 1) == 7  # incorrect, male, 30-59
    assert encode(2, 1, 2) == 17  # not worn, female, >=60
    assert class_names()[17] == "not_wear/female/>=60"


def test_age_thresholds_default_and_moved():
    default = AgeThresholds()
    assert [default.group(a) for a in (18, 29, 30, 59, 60, 90)] == [0, 0, 1, 1, 2, 2]
    moved = AgeThresholds(30, 58)
    assert moved.group(58) == 2 and moved.group(57) == 1
    assert list(moved.group(np.array([20, 40, 58]))) == [0, 1, 2]
    assert moved.names() == ("<30", "30-57", ">=58")


@pytest.mark.parametrize("middle, old", [(60, 30), (0, 60), (30, 30)])
def test_bad_thresholds_are_refused(middle, old):
    with pytest.raises(ValueError, match="thresholds"):
        AgeThresholds(middle, old)


def test_out_of_range_classes_are_refused():
    with pytest.raises(ValueError):
        decode(18)
    with pytest.raises(ValueError):
        encode(3, 0, 0)


def test_head_marginals_and_joint_are_inverse_for_independent_heads():
    rng = np.random.default_rng(0)
    mask, gender, age = (rng.dirichlet(np.ones(k), size=5) for k in (3, 2, 3))
    joint = joint_from_heads(mask, gender, age)
    assert np.allclose(joint.sum(axis=1), 1)
    heads = head_probabilities(joint)
    assert np.allclose(heads["mask"], mask) and np.allclose(heads["gender"], gender) and np.allclose(heads["age"], age)
    assert np.allclose(joint[:, 7], mask[:, 1] * gender[:, 0] * age[:, 1])
