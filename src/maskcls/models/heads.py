"""Classification heads, keyed by name.

A head maps pooled backbone features to one block of logits per output (``blocks``: name ->
width) and turns logits into probabilities of its task:

- task ``classes``: the 18 competition classes (``linear``, ``msd``, ``three_head``);
- task ``mask``, ``gender`` or ``age``: one head only (``mask_classes``, ``gender_classes``,
  ``age_classes``, ``age_regression``), for separate per-head models and the age-specific model,
  combined afterwards (``training/combine.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..core.config import HEAD_NAMES, unknown_choice
from ..core.labels import HEAD_SIZES, NUM_CLASSES, AgeThresholds, joint_from_heads

HEADS: dict[str, Callable[..., nn.Module]] = {}  # keyed on exactly core.config.HEAD_NAMES (a test checks it)


def register_head(name: str):
    def add(cls):
        HEADS[name] = cls
        return cls

    return add


def create_head(name: str, in_features: int, drop_rate: float, **options) -> nn.Module:
    if name not in HEADS:
        raise ValueError(unknown_choice("head", name, HEAD_NAMES))
    return HEADS[name](in_features, drop_rate, **options)


def split_blocks(head: nn.Module, logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """The logit block of each output of ``head``, by name."""
    return dict(zip(head.blocks, torch.split(logits, list(head.blocks.values()), dim=1), strict=False))


class DropoutLinearHead(nn.Module):
    """Dropout + one linear layer to the concatenated logit blocks ``blocks``; softmax probabilities.

    Every head here is this, with its own blocks, task and way of turning logits into probabilities.
    """

    task = "classes"
    blocks: dict[str, int] = {"class": NUM_CLASSES}

    def __init__(self, in_features: int, drop_rate: float = 0.0, **_):
        super().__init__()
        self.dropout = nn.Dropout(drop_rate)
        self.fc = nn.Linear(in_features, sum(self.blocks.values()))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(features))

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().softmax(dim=1)


@register_head("linear")
class LinearHead(DropoutLinearHead):
    """Dropout + one linear layer to the 18 classes."""


@register_head("msd")
class MultiSampleDropoutHead(DropoutLinearHead):
    """Multi-sample dropout (Inoue 2019): K dropout masks through one shared linear layer, logits averaged.

    Trains like K heads at the cost of one; at evaluation dropout is off, so it is a single pass.
    """

    def __init__(self, in_features: int, drop_rate: float = 0.5, samples: int = 5, **_):
        super().__init__(in_features, drop_rate)
        self.samples = samples

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if not self.training or self.samples == 1:
            return self.fc(self.dropout(features))
        return torch.stack([self.fc(self.dropout(features)) for _ in range(self.samples)]).mean(dim=0)


@register_head("three_head")
class ThreeHead(DropoutLinearHead):
    """Separate mask (3), gender (2) and age (3) outputs from one backbone.

    Each output learns from every photo of its own kind (all 60+ photos teach "age 60+", whatever
    the mask), and the 18 class probabilities are the product of the three.
    """

    blocks = dict(HEAD_SIZES)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        mask, gender, age = (block.float().softmax(dim=1) for block in split_blocks(self, logits).values())
        return joint_from_heads(mask, gender, age)


@register_head("mask_classes")
class MaskClassHead(DropoutLinearHead):
    """Mask alone (3 classes), learnt from every photo: one part of the separate-models recipe."""

    task = "mask"
    blocks = {"mask": HEAD_SIZES["mask"]}


@register_head("gender_classes")
class GenderClassHead(DropoutLinearHead):
    """Gender alone (2 classes), learnt from every photo."""

    task = "gender"
    blocks = {"gender": HEAD_SIZES["gender"]}


@register_head("age_classes")
class AgeClassHead(DropoutLinearHead):
    """Age group alone (3 classes): the age-specific model, or one part of the separate-models recipe."""

    task = "age"
    blocks = {"age": HEAD_SIZES["age"]}


@register_head("age_regression")
class AgeRegressionHead(DropoutLinearHead):
    """Age in years (one output); groups come from thresholds, later tuned on out-of-fold predictions.

    Regression keeps the order of ages, so a 58-year-old predicted as 61 costs little, and the cut
    between 30-59 and 60+ can be moved (e.g. to 58) where it maximises macro F1.
    """

    task = "age"
    blocks = {"age_value": 1}
    AGE_SCALE = 100.0  # the output predicts age / 100, so the regression target is of order 1

    def __init__(self, in_features: int, drop_rate: float = 0.0, thresholds: AgeThresholds = AgeThresholds(), **_):
        super().__init__(in_features, drop_rate)
        self.thresholds = thresholds

    def ages(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float()[:, 0] * self.AGE_SCALE

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """One-hot age group of the predicted age under the configured thresholds."""
        ages = self.ages(logits)
        groups = (ages >= self.thresholds.middle).long() + (ages >= self.thresholds.old).long()
        return torch.nn.functional.one_hot(groups, 3).float()
