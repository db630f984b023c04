"""Decode-once cache: right pixels, rebuilt exactly when the sources change, refuses corruption."""

import os
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from maskcls.data.cache import CacheError, build_cache


def _photos(tmp_path, count=6):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(count):
        path = tmp_path / f"p{i}.jpg" if i % 2 == 0 else tmp_path / f"p{i}.png"
        coarse = Image.fromarray(rng.integers(0, 255, (8, 6, 3), dtype=np.uint8))
        coarse.resize((96, 128), Image.Resampling.BICUBIC).save(path)  # smooth, like a photo
        rows.append({"image_id": f"id{i}", "path": str(path)})
    return pd.DataFrame(rows)


def test_cached_pixels_equal_pillow_within_jpeg_tolerance(tmp_path):
    frame = _photos(tmp_path)
    cache = build_cache(frame, (64, 48), tmp_path / "cache", progress=False)
    pixels = cache.array()
    assert pixels.shape == (6, 64, 48, 3) and pixels.dtype == np.uint8
    for row, path in enumerate(frame["path"]):
        reference = np.asarray(Image.open(path).convert("RGB").resize((48, 64), Image.Resampling.BILINEAR)).astype(int)
        tolerance = 0 if path.endswith(".png") else 6
        assert np.abs(pixels[row].astype(int) - reference).mean() <= tolerance + 0.5


def test_cache_is_reused_then_rebuilt_when_a_source_changes(tmp_path):
    frame = _photos(tmp_path)
    first = build_cache(frame, (32, 24), tmp_path / "cache", progress=False)
    again = build_cache(frame, (32, 24), tmp_path / "cache", progress=False)
    assert again.directory == first.directory
    other_size = build_cache(frame, (40, 30), tmp_path / "cache", progress=False)
    assert other_size.directory != first.directory
    changed = frame["path"][0]
    Image.new("RGB", (96, 128), (255, 0, 0)).save(changed)
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
    rebuilt = build_cache(frame, (32, 24), tmp_path / "cache", progress=False)
    assert rebuilt.directory != first.directory
    assert rebuilt.array()[0].mean(axis=(0, 1))[0] > 240  # the new red photo, not the old one


def test_failed_photos_are_remembered_with_their_reason(tmp_path):
    frame = _photos(tmp_path)
    (tmp_path / "p1.png").write_bytes(b"garbage")
    cache = build_cache(frame, (32, 24), tmp_path / "cache", progress=False)
    problems = cache.problems(frame["path"].tolist())
    assert [p.file for p in problems] == [str(tmp_path / "p1.png")]
    again = build_cache(frame, (32, 24), tmp_path / "cache", progress=False)
    assert again.problems(frame["path"].tolist()) == problems


def test_corrupt_cache_is_refused_with_a_way_out(tmp_path):
    frame = _photos(tmp_path)
    cache = build_cache(frame, (32, 24), tmp_path / "cache", progress=False)
    with open(cache.path, "r+b") as handle:
        handle.seek(-100, os.SEEK_END)
        handle.write(b"\x00\xff" * 50)
    with pytest.raises(CacheError, match="corrupt.*--rebuild"):
        build_cache(frame, (32, 24), tmp_path / "cache", progress=False)
    with open(cache.path, "r+b") as handle:
        handle.truncate(200)
    with pytest.raises(CacheError, match="--rebuild"):
        build_cache(frame, (32, 24), tmp_path / "cache", progress=False)


def test_no_half_written_cache_is_left_after_an_error(tmp_path, monkeypatch):
    frame = _photos(tmp_path)
    import maskcls.data.cache as cache_module

    def explode(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_module.Framer, "read", explode)
    with pytest.raises(KeyboardInterrupt):
        build_cache(frame, (32, 24), tmp_path / "cache", progress=False)
    assert list((tmp_path / "cache").iterdir()) == []


def test_device_resident_batches_equal_memory_mapped_batches(tmp_path):
    import torch

    from maskcls.data.loader import CachedImages, EpochSampler

    frame = _photos(tmp_path)
    cache = build_cache(frame, (32, 24), tmp_path / "cache", progress=False)
    rows, targets = np.array([5, 0, 3, 1]), np.array([[1, 20], [2, 30], [3, 40], [4, 50]])
    mapped = CachedImages(str(cache.path), rows, targets)
    resident = CachedImages(str(cache.path), rows, targets)
    resident.to_device(torch.from_numpy(np.array(cache.array())))  # the GPU path, on the CPU here
    sampler = EpochSampler(len(rows), weights=np.array([1.0, 2.0, 3.0, 4.0]), seed=1)
    positions = list(sampler)
    for a, b in zip(mapped.__getitems__(positions), resident.__getitems__(positions), strict=False):
        assert torch.equal(torch.as_tensor(a), torch.as_tensor(b))
    assert torch.equal(mapped.__getitems__(positions)[0][0], torch.tensor(cache.array()[rows[positions[0]]]))
