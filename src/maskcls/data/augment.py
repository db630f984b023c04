"""Batched preprocessing, augmentation and test-time views on whatever device the batch is on (kornia).

Batches arrive as uint8 ``(N, H, W, 3)`` at the cache size (input size plus a margin). Training
draws a random resized crop (or the centre crop), flip, colour jitter, blur and cutout per sample;
evaluation takes the centre crop, or one of the test-time views below. Both normalise and return
float ``(N, 3, h, w)`` in channels_last. One implementation serves the CPU and the GPU.

Crop, flip and colour jitter are a handful of whole-batch tensor ops (one ``grid_sample`` crops,
resizes and mirrors every photo at once), with torchvision's parameter distributions; a test checks
their statistics against torchvision's per-photo transforms. Blur and cutout come from kornia.

Three robustness augmentations imitate photos in the wild (off by default, on in
the ``wild`` recipe): motion blur (kornia), down-scaling then up-scaling to a random smaller size
(small faces cut from crowd photos), and JPEG re-compression at a random quality (kornia's
differentiable JPEG).

MixUp and CutMix change the targets too, so they live with the loss (``training/module.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import kornia
import kornia.augmentation as K
import torch
import torch.nn.functional as F
from torch import nn

from ..core.config import AugmentConfig, DataConfig


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
    steps: list[nn.Module] = [BatchCropFlipJitter(size_hw, cfg)]
    if cfg.motion_blur > 0:
        steps.append(
            K.RandomMotionBlur(
                tuple(cfg.motion_blur_kernel),
                angle=(-180.0, 180.0),
                direction=(-1.0, 1.0),
                border_type="replicate",
                p=cfg.motion_blur,
            )
        )
    if cfg.downscale > 0:
        steps.append(RandomDownscale(tuple(cfg.downscale_range), p=cfg.downscale))
    if cfg.jpeg > 0:
        steps.append(K.RandomJPEG(jpeg_quality=tuple(float(q) for q in cfg.jpeg_quality), p=cfg.jpeg))
    if cfg.blur > 0:
        kernel = 2 * math.ceil(3 * cfg.blur_sigma[1]) + 1
        steps.append(K.RandomGaussianBlur((kernel, kernel), tuple(cfg.blur_sigma), p=cfg.blur))
    if cfg.cutout > 0:
        steps.append(K.RandomErasing(scale=(0.02, 0.2), ratio=(0.3, 3.3), p=cfg.cutout))
    return nn.Sequential(*steps)


class RandomDownscale(nn.Module):
    """With probability ``p`` per photo, shrink to a random fraction in ``scale`` of its size and enlarge back.

    Fractions are drawn from ``levels`` evenly spaced values, so the batch is resized in a few
    groups (one pair of ``interpolate`` calls per distinct size) rather than photo by photo.
    """

    def __init__(self, scale: tuple[float, float] = (0.25, 0.75), p: float = 0.5, levels: int = 8):
        super().__init__()
        self.scale, self.p, self.levels = scale, p, levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, height, width = x.shape
        chosen = torch.rand(n, device=x.device) < self.p
        steps = torch.randint(0, self.levels, (n,), device=x.device)
        low, high = self.scale
        fractions = low + (high - low) * steps.float() / max(self.levels - 1, 1)
        out = x.clone()
        for level in torch.unique(steps[chosen]).tolist():
            rows = chosen & (steps == level)
            fraction = float(fractions[rows][0])
            small = F.interpolate(
                x[rows],
                size=(max(1, round(height * fraction)), max(1, round(width * fraction))),
                mode="bilinear",
                antialias=True,
                align_corners=False,
            )
            out[rows] = F.interpolate(small, size=(height, width), mode="bilinear", align_corners=False)
        return out


class BatchCropFlipJitter(nn.Module):
    """Random resized crop (or centre crop), horizontal flip and colour jitter for a whole batch at once.

    Parameters follow torchvision: crop area ~ U(scale) of the photo and log-aspect ~ U(log ratio)
    (10 tries, then the centre crop), brightness / contrast / saturation factors ~ U[1 - j, 1 + j].
    """

    def __init__(self, size_hw: tuple[int, int], cfg: AugmentConfig):
        super().__init__()
        self.size_hw = size_hw
        self.cfg = cfg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, height, width = x.shape
        boxes = (
            self._crop_boxes(n, height, width, x.device)
            if self.cfg.crop == "random_resized"
            else self._centre_boxes(n, height, width, x.device)
        )
        # Crop, resize and flip are one axis-aligned affine map per photo: a single bilinear grid_sample
        # for the batch. Output pixel centres in [-1, 1] (align_corners=False) map to the crop box.
        scale_x = (boxes[:, 2] - boxes[:, 0]) / width
        if self.cfg.hflip > 0:
            scale_x = torch.where(torch.rand(n, device=x.device) < self.cfg.hflip, -scale_x, scale_x)
        out_h, out_w = self.size_hw
        centres_x = torch.linspace(-1 + 1 / out_w, 1 - 1 / out_w, out_w, device=x.device)
        centres_y = torch.linspace(-1 + 1 / out_h, 1 - 1 / out_h, out_h, device=x.device)
        grid_x = scale_x[:, None] * centres_x + ((boxes[:, 0] + boxes[:, 2]) / width - 1)[:, None]
        grid_y = ((boxes[:, 3] - boxes[:, 1]) / height)[:, None] * centres_y + (
            (boxes[:, 1] + boxes[:, 3]) / height - 1
        )[:, None]
        grid = torch.stack(torch.broadcast_tensors(grid_x[:, None, :], grid_y[:, :, None]), dim=-1).to(x.dtype)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return self._jitter(x)

    def _crop_boxes(self, n: int, height: int, width: int, device) -> torch.Tensor:
        tries = 10
        area = height * width * torch.empty(n, tries, device=device).uniform_(*self.cfg.crop_scale)
        log_ratio = torch.empty(n, tries, device=device).uniform_(
            math.log(self.cfg.crop_ratio[0]), math.log(self.cfg.crop_ratio[1])
        )
        aspect = torch.exp(log_ratio)
        crop_w = torch.sqrt(area * aspect).round()
        crop_h = torch.sqrt(area / aspect).round()
        valid = (crop_w > 0) & (crop_w <= width) & (crop_h > 0) & (crop_h <= height)
        first = torch.where(valid.any(1), valid.float().argmax(1), torch.full((n,), -1, device=device))
        chosen = first.clamp_min(0)[:, None]
        crop_w, crop_h = crop_w.gather(1, chosen)[:, 0], crop_h.gather(1, chosen)[:, 0]
        fallback = first < 0  # torchvision's fallback: the centre crop at the nearest allowed aspect
        crop_w = torch.where(fallback, torch.full_like(crop_w, float(width)), crop_w)
        crop_h = torch.where(fallback, torch.full_like(crop_h, float(height)), crop_h)
        top = (torch.rand(n, device=device) * (height - crop_h + 1)).floor()
        left = (torch.rand(n, device=device) * (width - crop_w + 1)).floor()
        return torch.stack([left, top, left + crop_w, top + crop_h], dim=1)

    def _centre_boxes(self, n: int, height: int, width: int, device) -> torch.Tensor:
        top, left = (height - self.size_hw[0]) // 2, (width - self.size_hw[1]) // 2
        box = torch.tensor(
            [left, top, left + self.size_hw[1], top + self.size_hw[0]], dtype=torch.float32, device=device
        )
        return box.expand(n, 4)

    def _jitter(self, x: torch.Tensor) -> torch.Tensor:
        cfg, n = self.cfg, x.shape[0]

        def factors(strength: float) -> torch.Tensor:
            return torch.empty(n, 1, 1, 1, device=x.device).uniform_(max(0.0, 1 - strength), 1 + strength)

        if cfg.brightness:
            x = x.mul_(factors(cfg.brightness)).clamp_(0, 1)
        if cfg.contrast:
            mean = _grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
            x = x.sub_(mean).mul_(factors(cfg.contrast)).add_(mean).clamp_(0, 1)
        if cfg.saturation:
            gray = _grayscale(x)
            x = x.sub_(gray).mul_(factors(cfg.saturation)).add_(gray).clamp_(0, 1)
        if cfg.hue:
            shift = torch.empty(n, device=x.device).uniform_(-cfg.hue, cfg.hue) * 2 * math.pi
            x = kornia.enhance.adjust_hue(x, shift)
        return x


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma, as torchvision's rgb_to_grayscale."""
    return 0.2989 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


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
