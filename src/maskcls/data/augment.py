"""Batched preprocessing and augmentation on whatever device the batch is on (kornia).

Batches arrive as uint8 ``(N, H, W, 3)`` at the cache size (input size plus a margin). Training
draws a random resized crop, flip and colour jitter per sample; evaluation takes the centre crop.
Both normalise and return float ``(N, 3, h, w)`` in channels_last. One implementation serves the
CPU and the GPU, so there is nothing to keep in sync between them.
"""

from __future__ import annotations

import kornia.augmentation as K
import torch
from torch import nn

from ..config import AugmentConfig, DataConfig


class BatchPreprocess(nn.Module):
    def __init__(self, data_cfg: DataConfig, augment_cfg: AugmentConfig):
        super().__init__()
        self.size_hw = data_cfg.size_hw
        mean, std = data_cfg.mean_std
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.train_augment = build_train_augment(self.size_hw, augment_cfg)

    def forward(self, images: torch.Tensor, train: bool) -> torch.Tensor:
        x = to_float_nchw(images)
        x = self.train_augment(x) if train else center_crop(x, self.size_hw)
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last)


def build_train_augment(size_hw: tuple[int, int], cfg: AugmentConfig) -> nn.Module:
    steps: list[nn.Module] = [K.RandomResizedCrop(size_hw, scale=tuple(cfg.crop_scale), ratio=tuple(cfg.crop_ratio))]
    if cfg.hflip > 0:
        steps.append(K.RandomHorizontalFlip(p=cfg.hflip))
    if cfg.brightness or cfg.contrast or cfg.saturation or cfg.hue:
        steps.append(K.ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue, p=1.0))
    return K.AugmentationSequential(*steps)


def to_float_nchw(images: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [0, 1]."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected a uint8 batch of shape (N, H, W, 3), got {tuple(images.shape)} {images.dtype}")
    return images.permute(0, 3, 1, 2).float().div_(255.0)


def center_crop(x: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    height, width = x.shape[-2:]
    top, left = (height - size_hw[0]) // 2, (width - size_hw[1]) // 2
    if top < 0 or left < 0:
        raise ValueError(f"cannot crop {size_hw} out of {height}x{width}")
    return x[..., top : top + size_hw[0], left : left + size_hw[1]]
