"""``labels.train_age_old``: the training targets use a shifted old-age cut while every score keeps age_old."""

import numpy as np
import pandas as pd
import pytest

from maskcls.core.config import ConfigError, load_config
from maskcls.core.labels import AgeThresholds, decode, encode
from maskcls.training.kfold import _targets


def test_training_targets_take_the_shifted_cut_and_scores_keep_the_real_one():
    cfg = load_config(None, ["labels.train_age_old=58"])
    assert cfg.labels.thresholds == AgeThresholds(30, 60)  # what OOF, validation and the submission are scored at
    assert cfg.labels.training_thresholds == AgeThresholds(30, 58)
    ages = np.array([25, 57, 58, 59, 60, 70, -1])
    labels = encode(np.zeros(7, int), np.ones(7, int), AgeThresholds().group(np.maximum(ages, 0)))
    labels[-1] = encode(0, 1, 1)  # a pseudo-label of unknown age keeps its class
    part = pd.DataFrame({"label": labels, "age": ages})
    targets = _targets(part, cfg.labels.training_thresholds)
    assert decode(targets[:, 0])[2].tolist() == [0, 1, 2, 2, 2, 2, 1]
    assert decode(targets[:, 0])[1].tolist() == [1] * 7  # gender and mask untouched
    assert targets[:, 1].tolist() == ages.tolist()
    assert np.array_equal(_targets(part)[:, 0], labels)  # without thresholds: the labels as they are
    assert load_config(None, []).labels.training_thresholds == AgeThresholds(30, 60)


def test_a_shifted_cut_below_the_middle_one_is_refused():
    with pytest.raises(ConfigError, match="age thresholds"):
        load_config(None, ["labels.train_age_old=25"])
