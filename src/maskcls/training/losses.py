"""Losses, keyed by name. Each takes ``(logits, labels)`` and returns a scalar."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import LossConfig

LOSSES: dict[str, Callable[..., nn.Module]] = {}


def register_loss(name: str):
    def add(factory):
        LOSSES[name] = factory
        return factory

    return add


def build_loss(cfg: LossConfig, class_counts: np.ndarray) -> nn.Module:
    if cfg.name not in LOSSES:
        raise ValueError(f"unknown loss '{cfg.name}'; choose one of {sorted(LOSSES)}")
    weight = class_weights(class_counts) if cfg.class_weights == "balanced" else None
    return LOSSES[cfg.name](cfg, weight)


def class_weights(class_counts: np.ndarray) -> torch.Tensor:
    """``n / (k * count)`` per class (scikit-learn's 'balanced'); classes absent from training get the largest weight."""
    counts = np.asarray(class_counts, dtype=np.float64)
    present = counts > 0
    weights = np.zeros_like(counts)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    weights[~present] = weights[present].max() if present.any() else 1.0
    return torch.tensor(weights, dtype=torch.float32)


@register_loss("ce")
class CrossEntropy(nn.Module):
    def __init__(self, cfg: LossConfig, weight: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("weight", weight, persistent=False)
        self.label_smoothing = cfg.label_smoothing

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels, weight=self.weight, label_smoothing=self.label_smoothing)


@register_loss("focal")
class FocalLoss(nn.Module):
    """Softmax focal loss (Lin et al. 2017): ``-alpha * (1 - p_t) ** gamma * log(p_t)``, mean over the batch.

    Down-weights easy, confident examples so the rare classes (60+, incorrect masks) count for more.
    """

    def __init__(self, cfg: LossConfig, weight: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("weight", weight, persistent=False)
        self.gamma = cfg.focal_gamma
        self.alpha = cfg.focal_alpha
        self.label_smoothing = cfg.label_smoothing

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        log_probs = F.log_softmax(logits.float(), dim=1)
        log_p_true = log_probs.gather(1, labels[:, None]).squeeze(1)
        per_sample = F.cross_entropy(logits.float(), labels, reduction="none", label_smoothing=self.label_smoothing)
        loss = (1.0 - log_p_true.exp()).pow(self.gamma) * per_sample
        if self.alpha is not None:
            loss = self.alpha * loss
        if self.weight is not None:
            sample_weight = self.weight[labels]
            return (loss * sample_weight).sum() / sample_weight.sum()
        return loss.mean()
