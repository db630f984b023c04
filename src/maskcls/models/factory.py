"""Build the network a recipe names: a backbone plus a head."""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .heads import create_head
from .pretrained import create_backbone


class MaskNet(nn.Module):
    """Backbone features -> head logits; ``probabilities`` turns logits into the 18 class probabilities."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return self.head.probabilities(logits)


def create_model(cfg: ModelConfig, pretrained: str | None = None) -> MaskNet:
    """``pretrained`` overrides ``cfg.pretrained``; loading a saved model passes ``"none"``."""
    backbone = create_backbone(cfg.name, cfg.pretrained if pretrained is None else pretrained)
    features = getattr(backbone, "head_hidden_size", None) or backbone.num_features  # after any pre-logits layer
    head = create_head(cfg.head, features, cfg.drop_rate)
    model = MaskNet(backbone, head)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model
