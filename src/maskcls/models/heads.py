"""Classification heads, keyed by name: each maps pooled features to logits and logits to 18-class probabilities."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..labels import NUM_CLASSES

HEADS: dict[str, Callable[..., nn.Module]] = {}


def register_head(name: str):
    def add(cls):
        HEADS[name] = cls
        return cls

    return add


def create_head(name: str, in_features: int, drop_rate: float) -> nn.Module:
    if name not in HEADS:
        raise ValueError(f"unknown head '{name}'; choose one of {sorted(HEADS)}")
    return HEADS[name](in_features, drop_rate)


@register_head("linear")
class LinearHead(nn.Module):
    """Dropout + one linear layer to the 18 classes."""

    def __init__(self, in_features: int, drop_rate: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(drop_rate)
        self.fc = nn.Linear(in_features, NUM_CLASSES)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(features))

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().softmax(dim=1)
