"""The batched (kornia) augmentation has the statistics of torchvision's per-photo reference transforms."""

import numpy as np
import torch
from torchvision.transforms import v2

from maskcls.core.config import AugmentConfig, DataConfig
from maskcls.data.augment import BatchPreprocess, center_crop


def _gradient_photo(height=36, width=27):
    y = torch.linspace(0, 1, height)[:, None].expand(height, width)
    x = torch.linspace(0, 1, width)[None, :].expand(height, width)
    rgb = torch.stack([x, y, 0.5 * (x + y)], dim=-1)
    return (rgb * 255).round().to(torch.uint8)


def test_train_augmentation_matches_torchvision_statistics():
    torch.manual_seed(0)
    data_cfg = DataConfig(image_size=(32, 24), normalize="inception", resize_margin=0.125)
    aug_cfg = AugmentConfig(crop_scale=(0.5, 1.0), hflip=0.5, brightness=0.3, contrast=0.3, saturation=0.3, hue=0.0)
    batch = _gradient_photo()[None].repeat(3000, 1, 1, 1)
    ours = BatchPreprocess(data_cfg, aug_cfg)(batch, train=True)
    reference_transform = v2.Compose(
        [
            v2.RandomResizedCrop((32, 24), scale=(0.5, 1.0), ratio=aug_cfg.crop_ratio, antialias=True),
            v2.RandomHorizontalFlip(0.5),
            v2.ColorJitter(0.3, 0.3, 0.3, 0.0),
            v2.Normalize([0.5] * 3, [0.5] * 3),
        ]
    )
    photo = batch[0].permute(2, 0, 1).float() / 255
    reference = torch.stack([reference_transform(photo) for _ in range(3000)])
    assert ours.shape == reference.shape == (3000, 3, 32, 24)
    assert torch.allclose(ours.mean(0), reference.mean(0), atol=0.04)
    assert torch.allclose(ours.std(0), reference.std(0), atol=0.04)
    assert abs(ours.std().item() - reference.std().item()) < 0.02
    # flips really happen: the mean red (x) gradient is flattened by averaging mirrored crops
    assert ours[:, 0].mean(0)[:, 0].mean() > -0.5


def test_eval_preprocessing_is_a_deterministic_centre_crop():
    data_cfg = DataConfig(image_size=(32, 24), normalize="inception")
    batch = _gradient_photo()[None].repeat(4, 1, 1, 1)
    out = BatchPreprocess(data_cfg, AugmentConfig())(batch, train=False)
    expected = center_crop(batch.permute(0, 3, 1, 2).float() / 255, (32, 24)) * 2 - 1
    assert torch.allclose(out, expected, atol=1e-6)
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_augmentation_runs_on_the_batch_device_dtype_checks():
    data_cfg = DataConfig(image_size=16)
    bad = torch.zeros(2, 3, 18, 18)
    try:
        BatchPreprocess(data_cfg, AugmentConfig())(bad, train=False)
    except ValueError as err:
        assert "uint8" in str(err)
    else:
        raise AssertionError("a float NCHW batch must be refused")
    assert np.isfinite(
        BatchPreprocess(data_cfg, AugmentConfig())(torch.zeros(2, 18, 18, 3, dtype=torch.uint8), train=True).numpy()
    ).all()
