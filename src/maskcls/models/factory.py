"""Build the network a recipe names: a backbone plus a head."""

from __future__ import annotations

import torch
from torch import nn

from ..core.config import ModelConfig
from ..core.labels import AgeThresholds
from .heads import create_head
from .pretrained import create_backbone


class MaskNet(nn.Module):
    """Backbone features -> head logits; ``probabilities`` turns logits into the head's task probabilities."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    @property
    def task(self) -> str:
        return self.head.task

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return self.head.probabilities(logits)

    def no_weight_decay(self) -> set[str]:
        """Backbone parameters that are positions or tokens, not weights (e.g. a ViT's position embeddings)."""
        return {f"backbone.{name}" for name in getattr(self.backbone, "no_weight_decay", lambda: set())()}


def create_model(
    cfg: ModelConfig,
    pretrained: str | None = None,
    thresholds: AgeThresholds = AgeThresholds(),
    backbone: nn.Module | None = None,
) -> MaskNet:
    """``pretrained`` overrides ``cfg.pretrained``; ``backbone`` replaces building one (loading a saved model).

    ``model.name`` is a timm architecture, or ``hf:<folder or hub id>`` for a Hugging Face backbone.
    """
    if backbone is None:
        backbone = create_backbone_for(cfg, cfg.pretrained if pretrained is None else pretrained)
    features = getattr(backbone, "head_hidden_size", None) or backbone.num_features  # after any pre-logits layer
    head = create_head(cfg.head, features, cfg.drop_rate, samples=cfg.msd_samples, thresholds=thresholds)
    model = MaskNet(backbone, head)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def create_backbone_for(cfg: ModelConfig, pretrained: str) -> nn.Module:
    if cfg.name.startswith("hf:"):
        from .hf import create_hf_backbone

        return create_hf_backbone(cfg.name, pretrained, cfg.drop_path_rate)
    options = {"drop_path_rate": cfg.drop_path_rate} if cfg.drop_path_rate else {}
    return create_backbone(cfg.name, pretrained, **options)
