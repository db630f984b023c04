"""Build the network a recipe names: a backbone plus a head."""

from __future__ import annotations

import difflib
from pathlib import Path

import torch
from torch import nn

from ..core.config import ModelConfig
from ..core.labels import AgeThresholds
from .heads import create_head
from .pretrained import PretrainedWeightsError, check_model_name, create_backbone, offline_weights_path

PRETRAINED_KEYWORDS = ("none", "offline", "hub")


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


def check_backbone(cfg: ModelConfig) -> None:
    """Refuse a backbone that cannot be built, before any run directory is written.

    ``model.name``: a timm architecture (the nearest timm names when unknown) or ``hf:<folder or hub id>`` (a
    local folder must exist and hold a config). ``model.pretrained``: a keyword, or a weights file that exists;
    ``offline`` for a timm model needs its weights package. Nothing is downloaded or built here.
    """
    pretrained = cfg.pretrained
    weights_file = None if pretrained in PRETRAINED_KEYWORDS else Path(pretrained).expanduser()
    if weights_file is not None and not weights_file.is_file():
        close = difflib.get_close_matches(pretrained, PRETRAINED_KEYWORDS, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise PretrainedWeightsError(
            f"model.pretrained '{pretrained}' is neither {', '.join(PRETRAINED_KEYWORDS)} nor a weights file; {hint}"
            "set it to one of them or to a local .safetensors / .pth file"
        )
    if cfg.name.startswith("hf:"):
        from .hf import check_hf_backbone

        check_hf_backbone(cfg.name, pretrained)
        return
    check_model_name(cfg.name)
    if pretrained == "offline":
        offline_weights_path(cfg.name)
