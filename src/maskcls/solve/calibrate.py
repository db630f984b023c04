"""Calibration: photos/s of each candidate backbone at each candidate size on *this* machine, measured
through the real training path (decode-once cache, ``FoldDataModule``, ``MaskClassifier``, a Lightning
``Trainer``; prediction through ``predict_outputs``), on a few batches of the training photos.

Candidates are measured cheapest first; a candidate whose speed, extrapolated from the ones measured
(pixels x the backbone's relative cost), could not train even the smallest plan in the budget is skipped
and says so: bigger backbones and sizes are tried only when the measured speed allows them. A backbone
already measured at the photos' own size or above is not measured again at a larger one: that input would
only upsample the photos (the planner values sizes only up to the photos' own).
"""

from __future__ import annotations

import time

import lightning.pytorch as pl
import numpy as np
import pandas as pd

from ..core.config import load_config
from ..core.labels import NUM_CLASSES
from ..core.progress import RunProgress
from ..data.cache import build_cache, default_cache_root
from ..data.framing import Framing
from ..data.images import ImageLimits
from ..data.loader import FoldDataModule
from ..engine.predictor import predict_outputs
from ..engine.runtime import quiet_lightning, resolve_precision
from ..models.pretrained import OFFLINE_PACKAGES
from ..training.module import MaskClassifier
from .plan import EPOCH_CHOICES, FOLD_CHOICES, Speed, Workload, member_seconds

# (backbone, input size), cheapest first. All have offline ImageNet weights.
CANDIDATES: tuple[tuple[str, int], ...] = (
    ("tf_efficientnet_lite0", 96),
    ("tf_efficientnet_lite0", 128),
    ("tf_efficientnet_lite0", 160),
    ("tf_efficientnet_lite1", 192),
    ("tf_efficientnet_lite2", 224),
    ("tf_efficientnet_lite2", 260),
)
# Training cost per pixel relative to lite0 (FLOPs at equal size), only to skip hopeless candidates.
RELATIVE_COST = {"tf_efficientnet_lite0": 1.0, "tf_efficientnet_lite1": 1.5, "tf_efficientnet_lite2": 2.2}


class _BatchClock(pl.Callback):
    """Wall time of every training batch, and when the first one started."""

    def __init__(self):
        self.batch_seconds: list[float] = []
        self.first_start: float | None = None

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self._started = time.perf_counter()
        self.first_start = self.first_start or self._started

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        _sync(module.device)
        self.batch_seconds.append(time.perf_counter() - self._started)


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def typical_photo_size(manifest: pd.DataFrame, sample: int = 64) -> int | None:
    """The median longest side of up to ``sample`` training photos (headers only); None when none can be read.

    The planner values input sizes only up to it: a larger input only upsamples the photo."""
    from PIL import Image

    sides = []
    for path in manifest["path"].sample(n=min(len(manifest), sample), random_state=0):
        try:
            with Image.open(path) as image:
                sides.append(max(image.size))
        except (OSError, ValueError):  # unreadable photos are reported where they are decoded, not here
            continue
    return int(np.median(sides)) if sides else None


def default_pretrained(backbone: str) -> str:
    return "offline" if backbone in OFFLINE_PACKAGES else "none"


def measure(
    manifest: pd.DataFrame,
    backbone: str,
    size: int,
    accelerator: str = "auto",
    overrides: tuple[str, ...] = (),
    batches: int = 3,
    warmup: int = 1,
    batch_size: int | None = None,
) -> Speed:
    """Time ``warmup + batches`` training batches and one prediction pass over the same photos.

    Batches of 64 on a GPU (the recipes' size), 32 on a CPU, where photos/s hardly depends on it and
    calibration time counts against the budget.
    """
    quiet_lightning()
    if batch_size is None:
        import torch

        batch_size = 64 if torch.cuda.is_available() and accelerator != "cpu" else 32
    cfg = load_config(
        None,
        [
            f"model.name={backbone}",
            f"model.pretrained={default_pretrained(backbone)}",
            f"data.image_size={size}",
            f"train.batch_size={batch_size}",
            f"train.accelerator={accelerator}",
            *overrides,
        ],
    )
    batch_size = cfg.train.batch_size
    photos = manifest.sample(n=min(len(manifest), batch_size * (batches + warmup)), random_state=0).reset_index(
        drop=True
    )
    started = time.perf_counter()
    cache = build_cache(
        photos[["image_id", "path"]],
        cfg.data.cache_hw,
        default_cache_root(cfg.data.cache_dir),
        ImageLimits.from_config(cfg.data),
        progress=False,
        framing=Framing.from_config(cfg.data),
    )
    decode_seconds = time.perf_counter() - started
    rows = np.flatnonzero(np.array([not error for error in cache.errors]))
    labels = photos["label"].to_numpy()[rows]
    targets = np.stack([labels, photos["age"].to_numpy()[rows]], axis=1)

    started = time.perf_counter()
    module = MaskClassifier(cfg.to_dict(), np.bincount(labels, minlength=NUM_CLASSES).tolist())
    datamodule = FoldDataModule(
        str(cache.path),
        rows,
        targets,
        rows[:0],
        targets[:0],
        batch_size,
        device_cache=cfg.data.device_cache,
        device_cache_gb=cfg.data.device_cache_gb,
    )
    clock = _BatchClock()
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=batches + warmup,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        accelerator=cfg.train.accelerator,
        devices=1,
        precision=resolve_precision(cfg.train.precision, cfg.train.accelerator),
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
        callbacks=[clock],
    )
    trainer.fit(module, datamodule=datamodule)
    timed = clock.batch_seconds[warmup:] or clock.batch_seconds
    train_speed = batch_size / float(
        np.median(timed)
    )  # the median: one batch slowed by something else on the machine does not halve the speed
    setup_seconds = (
        (clock.first_start - started) + sum(clock.batch_seconds[:warmup]) - warmup * batch_size / train_speed
    )

    started = time.perf_counter()
    predict_outputs(
        module.model,
        cfg.data,
        str(cache.path),
        rows,
        batch_size=batch_size,
        accelerator=cfg.train.accelerator,
        precision=cfg.train.precision,
        progress=False,
    )
    infer_speed = len(rows) / (time.perf_counter() - started)
    return Speed(
        backbone,
        size,
        cfg.model.pretrained,
        round(train_speed, 2),
        round(infer_speed, 2),
        round(max(setup_seconds, 0.0) + 1.0, 2),
        round(len(photos) / max(decode_seconds, 1e-3), 1),
    )


def calibrate(
    manifest: pd.DataFrame,
    workload: Workload,
    budget_minutes: float,
    candidates: tuple[tuple[str, int], ...] = CANDIDATES,
    accelerator: str = "auto",
    overrides: tuple[str, ...] = (),
    progress: bool = True,
) -> tuple[list[Speed], list[dict]]:
    """Measured speeds of the candidates that could fit the budget (on photos of the training ``manifest``), and a
    note for every candidate skipped. ``progress``: a line per candidate (``maskcls.core.progress.RunProgress``)."""
    shown = RunProgress(
        "calibrate",
        [(f"{backbone} at {size} px", 1) for backbone, size in candidates],
        unit="candidate",
        enabled=progress,
    )
    speeds: list[Speed] = []
    skipped: list[dict] = []
    photo_size = workload.photo_size
    for backbone, size in candidates:
        name = f"{backbone} at {size} px"
        covering = [s.size for s in speeds if s.backbone == backbone and photo_size and photo_size <= s.size < size]
        if covering:
            skipped.append(
                {
                    "backbone": backbone,
                    "size": size,
                    "reason": f"the photos are about {photo_size} px and {backbone} was measured at "
                    f"{covering[0]} px: a larger input only upsamples them",
                }
            )
            shown.skip(name, "skipped: only upsamples the photos")
            continue
        if speeds:
            reference = speeds[0]
            relative = (
                RELATIVE_COST.get(backbone, 1.0)
                / RELATIVE_COST.get(reference.backbone, 1.0)
                * (size / reference.size) ** 2
            )
            guess = Speed(
                backbone,
                size,
                "",
                reference.train_photos_per_s / relative,
                reference.infer_photos_per_s / relative,
                reference.setup_seconds,
                reference.decode_photos_per_s,
            )
            smallest = member_seconds(guess, workload, min(EPOCH_CHOICES), min(FOLD_CHOICES)) / 60
            if smallest > budget_minutes:
                skipped.append(
                    {
                        "backbone": backbone,
                        "size": size,
                        "reason": f"one {min(EPOCH_CHOICES)}-epoch {min(FOLD_CHOICES)}-fold member would take about "
                        f"{smallest:.0f} min at the measured speed of {reference.backbone} at {reference.size} px (budget {budget_minutes:.0f} min)",
                    }
                )
                shown.skip(name, "skipped: too slow for the budget")
                continue
        shown.start(name)
        speeds.append(measure(manifest, backbone, size, accelerator, overrides))
        shown.advance(1)
        shown.finish(
            name,
            f"train {speeds[-1].train_photos_per_s:.1f} photos/s, predict {speeds[-1].infer_photos_per_s:.1f} photos/s",
        )
    return speeds, skipped
