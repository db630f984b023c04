"""Robustness augmentations (down/up-scaling, JPEG re-compression, motion blur): batched, off by default,
on in the wild recipe; each keeps shapes and the photo's mean, removes detail, and hits about p of a batch."""

from __future__ import annotations

import pytest
import torch

from maskcls.core.config import RECIPES_DIR, AugmentConfig, ConfigError, DataConfig, load_config
from maskcls.data.augment import BatchPreprocess, RandomDownscale, build_train_augment

ONLY = dict(crop="center", hflip=0.0, brightness=0.0, contrast=0.0, saturation=0.0)  # nothing else moves the pixels
WILD = RECIPES_DIR / "wild.yaml"


def _detail(x: torch.Tensor) -> torch.Tensor:
    """Per-photo mean absolute difference between neighbouring pixels (high-frequency content)."""
    return (x.diff(dim=-1).abs().mean(dim=(1, 2, 3)) + x.diff(dim=-2).abs().mean(dim=(1, 2, 3))) / 2


def _textured(n: int = 256, size: int = 48) -> torch.Tensor:
    torch.manual_seed(0)
    coarse = torch.rand(n, 3, size // 8, size // 8)
    smooth = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return (0.7 * smooth + 0.3 * torch.rand(n, 3, size, size)).clamp(0, 1)


def _apply(**augment) -> tuple[torch.Tensor, torch.Tensor]:
    x = _textured()
    torch.manual_seed(1)
    return x, build_train_augment((48, 48), AugmentConfig(**ONLY, **augment))(x.clone())


@pytest.mark.parametrize(
    "augment",
    [dict(downscale=1.0), dict(jpeg=1.0, jpeg_quality=(10.0, 30.0)), dict(motion_blur=1.0, motion_blur_kernel=(7, 9))],
    ids=["downscale", "jpeg", "motion_blur"],
)
def test_each_removes_detail_and_keeps_shape_range_and_mean(augment):
    x, y = _apply(**augment)
    assert y.shape == x.shape and y.dtype == x.dtype and y.min() >= 0 and y.max() <= 1
    assert (_detail(y) < 0.8 * _detail(x)).float().mean() > 0.95
    assert (y.mean(dim=(1, 2, 3)) - x.mean(dim=(1, 2, 3))).abs().max() < 0.05


@pytest.mark.parametrize(
    "augment", [dict(downscale=0.3), dict(jpeg=0.3), dict(motion_blur=0.3)], ids=["downscale", "jpeg", "motion_blur"]
)
def test_each_hits_about_p_of_the_batch(augment):
    x, y = _apply(**augment)
    changed = ((y - x).abs().amax(dim=(1, 2, 3)) > 1e-4).float().mean().item()
    assert 0.2 < changed < 0.4  # 256 photos, p = 0.3: a 4-sigma band


def test_downscale_strength_follows_the_drawn_fraction():
    x = _textured(64)
    strong = RandomDownscale((0.25, 0.25), p=1.0)(x)
    mild = RandomDownscale((0.9, 0.9), p=1.0)(x)
    assert (_detail(strong) < _detail(mild)).all()
    assert torch.equal(RandomDownscale((0.5, 0.5), p=0.0)(x), x)


def test_off_by_default_and_on_in_the_wild_recipe():
    default = build_train_augment((48, 48), AugmentConfig())
    names = [type(step).__name__ for step in default]
    assert not {"RandomDownscale", "RandomJPEG", "RandomMotionBlur"} & set(names)
    wild = load_config(WILD)
    wild_names = [type(step).__name__ for step in build_train_augment((48, 48), wild.augment)]
    assert {"RandomDownscale", "RandomJPEG", "RandomMotionBlur"} <= set(wild_names)
    batch = torch.randint(0, 255, (8, 54, 54, 3), dtype=torch.uint8)
    out = BatchPreprocess(DataConfig(image_size=48), wild.augment)(batch, train=True)
    assert out.shape == (8, 3, 48, 48) and torch.isfinite(out).all()


@pytest.mark.parametrize(
    "override, reason",
    [
        ("augment.downscale_range=[0, 0.5]", "downscale_range"),
        ("augment.jpeg_quality=[50, 120]", "jpeg_quality"),
        ("augment.motion_blur_kernel=[4, 8]", "motion_blur_kernel"),
    ],
)
def test_bad_ranges_are_refused(override, reason):
    with pytest.raises(ConfigError, match=reason):
        load_config(None, [override])
