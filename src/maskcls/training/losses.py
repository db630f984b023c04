"""Losses, keyed by name, and the criterion that applies them to every output block of a head.

Classification losses take logits ``(B, C)`` and *soft* targets ``(B, C)`` (one-hot, label-smoothed,
or mixed by MixUp / CutMix), so one implementation serves every case. ``loss.name`` may sum several,
e.g. ``focal+soft_f1``. The three-head model gets one loss per head (``loss.per_head``), weighted
by ``loss.head_weights``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.config import LOSS_NAMES, LossConfig, unknown_choice
from ..core.labels import NUM_CLASSES, AgeThresholds
from ..models.heads import AgeRegressionHead, split_blocks

LOSSES: dict[str, Callable[..., nn.Module]] = {}  # keyed on exactly core.config.LOSS_NAMES (a test checks it)


def register_loss(name: str):
    def add(factory):
        LOSSES[name] = factory
        return factory

    return add


def class_weights(class_counts: np.ndarray) -> torch.Tensor:
    """``n / (k * count)`` per class (scikit-learn's 'balanced'); classes absent from training get the largest
    weight."""
    counts = np.asarray(class_counts, dtype=np.float64)
    present = counts > 0
    weights = np.zeros_like(counts)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    weights[~present] = weights[present].max() if present.any() else 1.0
    return torch.tensor(weights, dtype=torch.float32)


def build_loss(name: str, cfg: LossConfig, weight: torch.Tensor | None = None) -> nn.Module:
    """One loss, or the sum of several (``a+b``, weighted by ``loss.component_weights``)."""
    names = [part.strip() for part in name.split("+")]
    unknown = [n for n in names if n not in LOSSES]
    if unknown:
        raise ValueError(unknown_choice("loss", unknown[0], LOSS_NAMES, " (or sum them with '+')"))
    if len(names) == 1:
        return LOSSES[names[0]](cfg, weight)
    weights = cfg.component_weights or [1.0] * len(names)
    if len(weights) != len(names):
        raise ValueError(f"loss.component_weights has {len(weights)} values for {len(names)} losses in '{name}'")
    return SumOfLosses([LOSSES[n](cfg, weight) for n in names], weights)


class SumOfLosses(nn.Module):
    def __init__(self, losses: list[nn.Module], weights: list[float]):
        super().__init__()
        self.losses = nn.ModuleList(losses)
        self.weights = weights

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return sum(w * loss(logits, targets) for w, loss in zip(self.weights, self.losses, strict=False))


class _WeightedLoss(nn.Module):
    """Per-sample losses averaged with optional class weights: ``sum(w_i * l_i) / sum(w_i)``."""

    def __init__(self, cfg: LossConfig, weight: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("weight", weight, persistent=False)

    def reduce(self, per_sample: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.weight is None:
            return per_sample.mean()
        sample_weight = targets @ self.weight
        return (per_sample * sample_weight).sum() / sample_weight.sum().clamp_min(1e-12)


@register_loss("ce")
class CrossEntropy(_WeightedLoss):
    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.reduce(-(targets * F.log_softmax(logits.float(), dim=1)).sum(dim=1), targets)


@register_loss("focal")
class FocalLoss(_WeightedLoss):
    """Softmax focal loss (Lin et al. 2017): ``-alpha * sum_c t_c (1 - p_c) ** gamma * log p_c``.

    Down-weights easy, confident examples so the rare classes (60+, incorrect masks) count for more.
    """

    def __init__(self, cfg: LossConfig, weight: torch.Tensor | None = None):
        super().__init__(cfg, weight)
        self.gamma = cfg.focal_gamma
        self.alpha = 1.0 if cfg.focal_alpha is None else cfg.focal_alpha

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        log_probs = F.log_softmax(logits.float(), dim=1)
        modulating = (1.0 - log_probs.exp()).pow(self.gamma)
        return self.alpha * self.reduce(-(targets * modulating * log_probs).sum(dim=1), targets)


@register_loss("soft_f1")
class SoftMacroF1Loss(nn.Module):
    """``1 - mean_c F1_c`` with probabilities in place of hard counts: optimises the metric itself.

    Computed per batch; use batches large enough to hold the rare classes, and usually together with
    a cross-entropy term (``ce+soft_f1``).
    """

    def __init__(self, cfg: LossConfig, weight: torch.Tensor | None = None):
        super().__init__()

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        probs = logits.float().softmax(dim=1)
        true_pos = (probs * targets).sum(dim=0)
        false_pos = (probs * (1 - targets)).sum(dim=0)
        false_neg = ((1 - probs) * targets).sum(dim=0)
        soft_f1 = 2 * true_pos / (2 * true_pos + false_pos + false_neg + 1e-7)
        return 1.0 - soft_f1.mean()


def soft_age_targets(class_targets: torch.Tensor, ages: torch.Tensor, cuts: AgeThresholds, years: float):
    """Share each photo of known age between its age group and the neighbouring one.

    The chance of being at or past a cut is ``sigmoid((age - cut + 0.5) / years)`` (ages are whole years, so the
    cut lies half a year below it): a 29-year-old counts 0.44 towards 30-59 at ``years=2``, a 20-year-old
    0.01. Age groups are bins of a continuous, noisily labelled age; hard targets ask the model to find a
    boundary between photos that look alike. Photos of unknown age (``age < 0``, pseudo-labels) keep their
    targets.
    """
    edges = torch.tensor([cuts.middle - 0.5, cuts.old - 0.5], device=ages.device)
    past = torch.sigmoid((ages.float()[:, None] - edges) / years)
    groups = torch.stack([1 - past[:, 0], past[:, 0] - past[:, 1], past[:, 1]], dim=1)
    joint = class_targets.view(-1, 3, 2, 3)  # (mask, gender, age group), as in head_targets
    spread = (joint.sum(dim=3, keepdim=True) * groups[:, None, None, :]).view(-1, NUM_CLASSES)
    return torch.where((ages >= 0)[:, None], spread, class_targets)


def head_targets(class_targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """Soft targets of every possible head block from soft 18-class targets ``(B, 18)``."""
    joint = class_targets.view(-1, 3, 2, 3)
    return {
        "class": class_targets,
        "mask": joint.sum(dim=(2, 3)),
        "gender": joint.sum(dim=(1, 3)),
        "age": joint.sum(dim=(1, 2)),
    }


def head_class_counts(class_counts: np.ndarray) -> dict[str, np.ndarray]:
    joint = np.asarray(class_counts, dtype=np.float64).reshape(3, 2, 3)
    return {
        "class": joint.reshape(-1),
        "mask": joint.sum(axis=(1, 2)),
        "gender": joint.sum(axis=(0, 2)),
        "age": joint.sum(axis=(0, 1)),
    }


class HeadCriterion(nn.Module):
    """The training loss of a head: a loss per output block, weighted and summed.

    Age regression (block ``age_value``) uses smooth L1 on age / 100.
    """

    def __init__(
        self,
        head: nn.Module,
        cfg: LossConfig,
        class_counts: np.ndarray,
        age_cuts: AgeThresholds | None = None,
        age_soft_years: float = 0.0,
    ):
        super().__init__()
        self.head = [head]  # a reference, not a submodule: the head's parameters belong to the model
        counts = head_class_counts(class_counts)
        unknown = set(cfg.per_head) - set(head.blocks)
        if unknown:
            raise ValueError(
                f"loss.per_head names {sorted(unknown)}, "
                f"but head '{type(head).__name__}' has outputs {sorted(head.blocks)}"
            )
        self.losses = nn.ModuleDict()
        for block in head.blocks:
            if block == "age_value":
                continue
            weight = class_weights(counts[block]) if cfg.class_weights == "balanced" else None
            self.losses[block] = build_loss(cfg.per_head.get(block, cfg.name), cfg, weight)
        self.head_weights = {block: cfg.head_weights.get(block, 1.0) for block in head.blocks}
        self.label_smoothing = cfg.label_smoothing
        self.age_cuts = age_cuts or AgeThresholds()
        self.age_soft_years = age_soft_years

    def soft_targets(self, labels: torch.Tensor, ages: torch.Tensor | None = None) -> torch.Tensor:
        """One-hot 18-class targets with label smoothing; given the photos' ages, with soft age groups
        (``labels.train_age_soft_years``)."""
        targets = F.one_hot(labels, NUM_CLASSES).float()
        if ages is not None and self.age_soft_years > 0:
            targets = soft_age_targets(targets, ages, self.age_cuts, self.age_soft_years)
        return targets * (1 - self.label_smoothing) + self.label_smoothing / NUM_CLASSES

    def forward(
        self, logits: torch.Tensor, class_targets: torch.Tensor, ages: torch.Tensor | None = None
    ) -> torch.Tensor:
        targets = head_targets(class_targets)
        total = logits.new_zeros((), dtype=torch.float32)
        for block, block_logits in split_blocks(self.head[0], logits).items():
            if block == "age_value":
                known = ages >= 0  # pseudo-labelled photos have a class but no age in years
                if not known.any():
                    continue
                loss = F.smooth_l1_loss(
                    block_logits.float()[known, 0], ages[known].float() / AgeRegressionHead.AGE_SCALE, beta=0.05
                )
            else:
                loss = self.losses[block](block_logits, targets[block])
            total = total + self.head_weights[block] * loss
        return total
