"""``labels.train_age_soft_years``: training targets share a photo of known age with the neighbouring age group."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from maskcls.core.config import ConfigError, LossConfig, load_config
from maskcls.core.labels import AgeThresholds, encode
from maskcls.models.heads import create_head
from maskcls.training.losses import HeadCriterion, head_targets, soft_age_targets

AGES = torch.tensor([10, 28, 29, 30, 31, 45, 59, 60, 80, -1])


def _labels(ages: torch.Tensor, cuts: AgeThresholds, mask: int = 2, gender: int = 1) -> torch.Tensor:
    groups = cuts.group(np.maximum(ages.numpy(), 0))
    labels = encode(np.full(len(ages), mask), np.full(len(ages), gender), groups)
    labels[-1] = encode(mask, gender, 1)  # a pseudo-label of unknown age
    return torch.as_tensor(labels)


def test_soft_age_targets_share_photos_near_a_cut_with_the_neighbouring_group():
    cuts = AgeThresholds(30, 60)
    hard = F.one_hot(_labels(AGES, cuts), 18).float()
    soft = soft_age_targets(hard, AGES, cuts, years=2.0)
    blocks = head_targets(soft)
    age = blocks["age"].numpy()
    assert torch.allclose(soft.sum(1), torch.ones(len(AGES)))
    assert torch.equal(blocks["mask"], head_targets(hard)["mask"])  # mask and gender untouched
    assert torch.equal(blocks["gender"], head_targets(hard)["gender"])
    assert age[0, 0] > 0.99 and age[5, 1] > 0.99 and age[8, 2] > 0.99  # far from the cuts: as good as hard
    assert 0.5 < age[2, 0] < 0.6 and age[2, 1] == pytest.approx(1 - age[2, 0])  # 29: mostly young
    assert 0.5 < age[3, 1] < 0.6 and age[3, 1] == pytest.approx(age[2, 0])  # 30: the mirror image
    assert age[1, 1] < age[2, 1] < age[3, 1] < age[4, 1]  # the share grows with age across the cut
    assert 0.5 < age[7, 2] < 0.6 and age[6, 2] == pytest.approx(1 - age[7, 2], abs=1e-6)  # the old cut likewise
    assert torch.equal(soft[-1], hard[-1])  # unknown age: the label as it is
    sharper = head_targets(soft_age_targets(hard, AGES, cuts, years=0.5))["age"].numpy()
    assert sharper[2, 0] > age[2, 0]  # fewer years: closer to hard groups


def test_soft_age_targets_follow_the_training_cut():
    cuts = AgeThresholds(30, 58)
    ages = torch.tensor([57, 58])
    soft = soft_age_targets(F.one_hot(_labels(ages, cuts), 18).float(), ages, cuts, years=1.0)
    assert head_targets(soft)["age"][1, 2] == pytest.approx(torch.sigmoid(torch.tensor(0.5)).item())


def test_the_criterion_softens_age_only_when_asked_and_only_given_ages():
    head = create_head("three_head", 16, 0.0)
    labels = _labels(AGES, AgeThresholds())
    plain = HeadCriterion(head, LossConfig(), np.ones(18))
    soft = HeadCriterion(head, LossConfig(label_smoothing=0.1), np.ones(18), AgeThresholds(), age_soft_years=2.0)
    assert torch.equal(plain.soft_targets(labels, AGES), F.one_hot(labels, 18).float())
    assert torch.equal(soft.soft_targets(labels), plain.soft_targets(labels) * 0.9 + 0.1 / 18)  # validation: hard
    softened = soft.soft_targets(labels, AGES)
    assert torch.allclose(softened.sum(1), torch.ones(len(AGES)))
    assert softened.min() >= 0.1 / 18 - 1e-7 and not torch.equal(softened, soft.soft_targets(labels))


def test_the_training_batch_gets_soft_age_targets_from_the_recipe():
    from maskcls.training.module import MaskClassifier

    cfg = load_config(
        None,
        [
            "model.name=test_efficientnet",
            "model.pretrained=none",
            "labels.train_age_soft_years=2",
            "data.image_size=32",
        ],
    )
    module = MaskClassifier(cfg.to_dict(), [1] * 18)
    progress = SimpleNamespace(current=SimpleNamespace(ready=0))
    module._trainer = SimpleNamespace(
        training=True,
        current_epoch=0,
        global_rank=0,
        fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress)),
    )
    labels = _labels(AGES, AgeThresholds())
    batch = (
        torch.randint(0, 256, (len(AGES), 32, 32, 3), dtype=torch.uint8),
        torch.stack([labels, AGES], dim=1),
        torch.arange(len(AGES)),
    )
    _, targets, ages, _ = module.on_after_batch_transfer(batch, 0)
    expected = soft_age_targets(F.one_hot(labels, 18).float(), AGES, AgeThresholds(), 2.0)
    assert torch.allclose(targets, expected) and torch.equal(ages, AGES)


def test_soft_age_targets_cannot_be_mixed_by_mixup():
    with pytest.raises(ConfigError, match="train_age_soft_years"):
        load_config(None, ["labels.train_age_soft_years=2", "augment.mixup=0.4"])
    with pytest.raises(ConfigError):
        load_config(None, ["labels.train_age_soft_years=-1"])
