"""``maskcls bench``: where training time goes, measured in one process on one machine.

Three pipelines train the same network on the same photos:

1. **baseline** — the competition's scripts: a PIL ``DataLoader`` that decodes and resizes every
   photo every epoch, fp32, batch 16, no cache;
2. **limit** — what the device can do: random tensors already on it, bf16 autocast (GPU) and
   channels_last (and ``torch.compile`` with ``--compile``), the maskcls batch size: no data path at all;
3. **maskcls** — the real thing from the JPEG files: epoch 1 *cold* (includes decoding the cache)
   and epoch 2 *warm* (the cache on the device or memory-mapped, batches built and augmented there).

Ratios ``maskcls warm / limit`` (how much of the compute limit the data path leaves) and
``maskcls / baseline`` are printed, plus inference photos/s with and without TTA against a PIL
baseline. Timings from different machines or processes are not comparable; these ratios are.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import timm
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from .core.config import Config, load_config
from .core.labels import NUM_CLASSES
from .data.loader import FoldDataModule
from .engine.predictor import predict_outputs
from .engine.runtime import quiet_lightning, resolve_precision, timing_trainer
from .training.kfold import prepare_training_data
from .training.module import MaskClassifier


@dataclass
class BenchResult:
    name: str
    images_per_s: float
    seconds: float
    images: int


class PILPhotos(Dataset):
    """The competition-style dataset: open, convert and resize each photo with Pillow, every time."""

    def __init__(self, paths: list[str], labels: np.ndarray, size_hw: tuple[int, int]):
        self.paths, self.labels = paths, labels
        self.transform = v2.Compose(
            [
                v2.Resize(size_hw),
                v2.PILToTensor(),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
            ]
        )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        with Image.open(self.paths[index]) as image:
            return self.transform(image.convert("RGB")), int(self.labels[index])


def make_bench_data(folder: Path, images: int, size_hw: tuple[int, int], seed: int = 0) -> Path:
    """Synthetic photos of the competition's size in its layout (``train/``), via the demo generator."""
    from .data.demo import generate_demo

    generate_demo(folder, persons=max(2, -(-images // 7)), eval_persons=1, size_hw=size_hw, seed=seed, force=True)
    return folder / "train"


def _device(name: str) -> torch.device:
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else ("cpu" if name == "auto" else name))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _train_steps(model, batches, device, precision: str, warmup: int, fused: bool) -> BenchResult:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")
    counted, started = 0, None
    for step, (images, labels) in enumerate(batches):
        if step == warmup:
            _sync(device)
            started = time.perf_counter()
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        with autocast:
            loss = torch.nn.functional.cross_entropy(model(images).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if started is not None:
            counted += len(images)
    _sync(device)
    seconds = time.perf_counter() - started
    return BenchResult("", counted / seconds, seconds, counted)


def bench_baseline(
    paths, labels, model_name, size_hw, device, workers: int, batch: int = 16, warmup: int = 3
) -> BenchResult:
    model = timm.create_model(model_name, num_classes=NUM_CLASSES).to(device).train()
    loader = DataLoader(
        PILPhotos(paths, labels, size_hw),
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    result = _train_steps(model, loader, device, "32-true", warmup, fused=False)
    result.name = f"baseline: PIL DataLoader ({workers} workers), fp32, batch {batch}"
    return result


def bench_limit(
    model_name, size_hw, device, batch: int, steps: int, compile_model: bool, warmup: int = 3
) -> BenchResult:
    model = (
        timm.create_model(model_name, num_classes=NUM_CLASSES).to(device).to(memory_format=torch.channels_last).train()
    )
    if compile_model:
        model.compile()
    images = torch.randn(batch, 3, *size_hw, device=device).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, NUM_CLASSES, (batch,), device=device)
    precision = resolve_precision("auto", device.type)
    result = _train_steps(
        model, ((images, labels) for _ in range(steps + warmup)), device, precision, warmup, fused=True
    )
    result.name = (
        f"limit: tensors on {device.type}, {precision}, channels_last, "
        f"fused AdamW{' + compile' if compile_model else ''}, batch {batch}"
    )
    return result


class _EpochTimer(pl.Callback):
    def __init__(self):
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer, module):
        _sync(module.device)
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer, module):
        _sync(module.device)
        self.seconds.append(time.perf_counter() - self._started)


def bench_maskcls(train_dir: Path, cfg: Config, cache_dir: Path):
    """Returns (cold, warm, trained module, prepared data)."""
    # Two epochs of the real training path from the files: cold (cache decoded first) and warm.
    quiet_lightning()
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"cache_dir": str(cache_dir)})})
    started = time.perf_counter()
    data = prepare_training_data(train_dir, cfg, progress=False)
    decode_seconds = time.perf_counter() - started
    manifest = data.manifest
    targets = np.stack([manifest["label"].to_numpy(), manifest["age"].to_numpy()], axis=1)
    empty = np.zeros(0, dtype=np.int64)
    datamodule = FoldDataModule(
        str(data.cache.path),
        manifest["cache_row"].to_numpy(),
        targets,
        empty,
        np.zeros((0, 2), dtype=np.int64),
        cfg.train.batch_size,
        device_cache=cfg.data.device_cache,
        device_cache_gb=cfg.data.device_cache_gb,
    )
    module = MaskClassifier(cfg.to_dict(), np.bincount(manifest["label"], minlength=NUM_CLASSES).tolist())
    timer = _EpochTimer()
    trainer = timing_trainer(cfg, 2, [timer], benchmark=True if torch.cuda.is_available() else None)
    trainer.fit(module, datamodule=datamodule)
    images = (len(manifest) // cfg.train.batch_size) * cfg.train.batch_size
    cold_seconds = decode_seconds + timer.seconds[0]
    cold = BenchResult(
        f"maskcls epoch 1 (cold: {decode_seconds:.1f} s decoding the cache + training)",
        images / cold_seconds,
        cold_seconds,
        images,
    )
    resident = "cache on the device" if datamodule.resident else "memory-mapped cache"
    built_on = "cuda" if cfg.train.accelerator == "gpu" else cfg.train.accelerator
    warm = BenchResult(
        f"maskcls epoch 2 (warm: {resident}, batches built on {built_on})",
        images / timer.seconds[1],
        timer.seconds[1],
        images,
    )
    return cold, warm, module, data


def bench_inference(paths, labels, module, data, cfg: Config, device, workers: int) -> list[BenchResult]:
    """Photos/s of prediction: maskcls (cached, batched views) with and without flip TTA, and a PIL loader."""
    results = []
    model = module.model.eval()
    rows = np.arange(len(data.manifest))
    cache_rows = data.manifest["cache_row"].to_numpy()
    for tta in ("none", "flip"):
        # One untimed batch first: cuDNN's autotuning for the eval shapes is a one-off, not throughput.
        predict_outputs(
            model,
            cfg.data,
            str(data.cache.path),
            cache_rows[: cfg.train.batch_size],
            batch_size=cfg.train.batch_size,
            accelerator=cfg.train.accelerator,
            progress=False,
            tta=tta,
        )
        started = time.perf_counter()
        predict_outputs(
            model,
            cfg.data,
            str(data.cache.path),
            cache_rows,
            batch_size=cfg.train.batch_size,
            accelerator=cfg.train.accelerator,
            progress=False,
            tta=tta,
        )
        seconds = time.perf_counter() - started
        results.append(BenchResult(f"inference maskcls, TTA {tta}", len(rows) / seconds, seconds, len(rows)))
    loader = DataLoader(
        PILPhotos(paths, labels, cfg.data.size_hw), batch_size=cfg.train.batch_size, num_workers=workers
    )
    model = model.to(device)
    with torch.no_grad():
        model(torch.zeros(cfg.train.batch_size, 3, *cfg.data.size_hw, device=device))  # the same one-off warm-up
    _sync(device)
    started = time.perf_counter()
    with torch.no_grad():
        for images, _ in loader:
            model(images.to(device))
    _sync(device)
    seconds = time.perf_counter() - started
    results.append(
        BenchResult("inference baseline: PIL DataLoader, fp32, TTA none", len(paths) / seconds, seconds, len(paths))
    )
    return results


def run_bench(
    model_name: str,
    size_hw: tuple[int, int],
    images: int,
    batch: int,
    data: Path | None,
    compile_model: bool,
    device_name: str = "auto",
    workers: int | None = None,
    limit_steps: int = 60,
    overrides: list[str] = (),
) -> dict:
    device = _device(device_name)
    workers = workers if workers is not None else min(8, torch.get_num_threads() if device.type == "cpu" else 8)
    with tempfile.TemporaryDirectory(prefix="maskcls-bench-") as scratch:
        scratch = Path(scratch)
        train_dir = data if data is not None else make_bench_data(scratch / "photos", images, (512, 384))
        manifest = pd.read_csv(train_dir / "train.csv", dtype=str)
        cfg = load_config(
            None,
            [
                f"model.name={model_name}",
                "model.pretrained=none",
                f"data.image_size=[{size_hw[0]}, {size_hw[1]}]",
                f"train.batch_size={batch}",
                f"train.compile={str(compile_model).lower()}",
                "augment.crop_scale=[0.7, 1.0]",
                f"train.accelerator={'gpu' if device.type == 'cuda' else 'cpu'}",
                *overrides,
            ],
        )
        from .data.layout import read_train

        photos, _ = read_train(train_dir, cfg.labels.thresholds)
        paths, labels = photos["path"].tolist(), photos["label"].to_numpy()
        baseline = bench_baseline(paths, labels, model_name, size_hw, device, workers)
        limit = bench_limit(model_name, size_hw, device, batch, limit_steps, compile_model)
        cold, warm, module, prepared = bench_maskcls(train_dir, cfg, scratch / "cache")
        inference = bench_inference(paths, labels, module, prepared, cfg, device, workers)
    results = [baseline, limit, cold, warm, *inference]
    return {
        "model": model_name,
        "size_hw": list(size_hw),
        "device": torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)",
        "photos": len(paths),
        "persons": int(manifest["id"].nunique()),
        "results": [r.__dict__ for r in results],
        "ratios": {
            "warm / limit": warm.images_per_s / limit.images_per_s,
            "warm / baseline": warm.images_per_s / baseline.images_per_s,
            "cold / baseline": cold.images_per_s / baseline.images_per_s,
            "inference flip TTA / PIL baseline": inference[1].images_per_s / inference[2].images_per_s,
        },
    }
