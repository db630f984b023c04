"""Batched preprocessing, augmentation and test-time views on whatever device the batch is on (kornia).

Batches arrive as uint8 ``(N, H, W, 3)`` at the cache size (input size plus a margin). Training
draws a random resized crop (or the centre crop), flip, colour jitter, blur and cutout per sample;
evaluation takes the centre crop, or one of the test-time views below. Both normalise and return
float ``(N, 3, h, w)`` in channels_last. One implementation serves the CPU and the GPU.

MixUp and CutMix change the targets too, so they live with the loss (``training/module.py``).
"""

from __future__ import annotations

import math
from typing import Callable

import kornia.augmentation as K
import torch
import torch.nn.functional as F
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

    def forward(self, images: torch.Tensor, train: bool, view: str = "identity") -> torch.Tensor:
        x = to_float_nchw(images)
        x = self.train_augment(x) if train else TEST_VIEWS[view](x, self.size_hw)
        return self.normalize(x)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)


def build_train_augment(size_hw: tuple[int, int], cfg: AugmentConfig) -> nn.Module:
    if cfg.crop == "random_resized":
        steps: list[nn.Module] = [K.RandomResizedCrop(size_hw, scale=tuple(cfg.crop_scale), ratio=tuple(cfg.crop_ratio))]
    else:
        steps = [K.CenterCrop(size_hw)]
    if cfg.hflip > 0:
        steps.append(K.RandomHorizontalFlip(p=cfg.hflip))
    if cfg.brightness or cfg.contrast or cfg.saturation or cfg.hue:
        steps.append(K.ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue, p=1.0))
    if cfg.blur > 0:
        kernel = 2 * math.ceil(3 * cfg.blur_sigma[1]) + 1
        steps.append(K.RandomGaussianBlur((kernel, kernel), tuple(cfg.blur_sigma), p=cfg.blur))
    if cfg.cutout > 0:
        steps.append(K.RandomErasing(scale=(0.02, 0.2), ratio=(0.3, 3.3), p=cfg.cutout))
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


def _resize(x: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size_hw, mode="bilinear", align_corners=False, antialias=True)


def _zoom(fraction: float) -> Callable:
    """Centre crop covering ``fraction`` of the input size, resized to the input size."""

    def view(x: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
        inner = (max(1, round(size_hw[0] * fraction)), max(1, round(size_hw[1] * fraction)))
        return _resize(center_crop(x, inner), size_hw)

    return view


# Test-time views of a cached batch: each maps float NCHW in [0, 1] at cache size to the input size.
TEST_VIEWS: dict[str, Callable] = {
    "identity": center_crop,
    "hflip": lambda x, size: center_crop(x, size).flip(-1),
    "zoom_in": _zoom(0.9),
    "zoom_out": lambda x, size: _resize(x, size),  # the whole cached photo, margin included
    "brighter": lambda x, size: (center_crop(x, size) * 1.1).clamp_(0, 1),
    "darker": lambda x, size: center_crop(x, size) * 0.9,
}
