"""Calibration: photos/s of each candidate backbone at each candidate size on *this* machine, measured
through the real training path (decode-once cache, ``FoldDataModule``, ``MaskClassifier``, a Lightning
``Trainer``; prediction through ``predict_outputs``), on a few batches of the training photos.

Candidates are measured cheapest first; a candidate whose speed, extrapolated from the ones measured
(pixels x the backbone's relative cost), could not train even the smallest plan in the budget is skipped
and says so: bigger backbones and sizes are tried only when the measured speed allows them. A backbone
already measured at the photos' own size or above is not measured again at a larger one, nor is a lighter
backbone: that input would only upsample the photos (the planner values sizes only up to the photos' own).

Every timing is repeated and summarised robustly (``robust_seconds``): training batches over ``rounds`` epochs of
the same photos, the batches slower than the median by more than ``OUTLIER_MADS`` (scaled) MADs dropped, the
median of the rest kept; prediction in ``PREDICT_PASSES`` passes, the faster kept. A candidate that does more work
per photo than one measured before (``heavier``) but measures faster per unit of work (pixels x ``RELATIVE_COST``)
beyond ``REDO_TOLERANCE`` is measured once more, and so is the lighter one: either may have been slowed by other
work, and each keeps the faster of its two measurements. If the candidate still trains more photos/s than a lighter
one (beyond ``CAP_TOLERANCE``), its speed is capped at the lighter ones' (``cap_speed``). ``Speed.timing``
says how many timings were taken and dropped, their spread, and why a speed was redone or capped.
docs/solve-planner.md ("Calibration") gives the reasons.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import lightning.pytorch as pl
import numpy as np
import pandas as pd

from ..core.config import load_config
from ..core.labels import NUM_CLASSES
from ..core.progress import RunProgress
from ..data.cache import cache_for
from ..data.loader import FoldDataModule
from ..engine.predictor import predict_outputs
from ..engine.runtime import quiet_lightning, timing_trainer
from ..models.pretrained import OFFLINE_PACKAGES
from ..training.module import MaskClassifier
from .plan import (
    EPOCH_CHOICES,
    FOLD_CHOICES,
    Speed,
    Workload,
    member_seconds,
    no_lighter,
    redo_note,
    relative_cost,
)

# (backbone, input size), cheapest first (input pixels x RELATIVE_COST). All have offline ImageNet weights. lite2
# at 96 and 128 px: a larger backbone at small photos' own size, where a larger input would only upsample them.
CANDIDATES: tuple[tuple[str, int], ...] = (
    ("tf_efficientnet_lite0", 96),
    ("tf_efficientnet_lite0", 128),
    ("tf_efficientnet_lite2", 96),
    ("tf_efficientnet_lite0", 160),
    ("tf_efficientnet_lite2", 128),
    ("tf_efficientnet_lite1", 192),
    ("tf_efficientnet_lite2", 224),
    ("tf_efficientnet_lite2", 260),
)
OUTLIER_MADS = 3.0  # a batch slower than median + this many scaled MADs is dropped: something else ran on the machine
MAD_SCALE = 1.4826  # MAD x this estimates the standard deviation of normal noise
PREDICT_PASSES = 2  # prediction is timed this many times over the same photos; the fastest pass counts
# A heavier candidate measured faster per unit of work (pixels x RELATIVE_COST) than a lighter one by more than this
# is measured again: per-photo costs (decode, the optimizer step, kernel launches) make small inputs slower per
# pixel, but a 1.5x gap on the CPU is more often a measurement slowed by other work.
REDO_TOLERANCE = 0.5
# A heavier candidate still measured faster per photo than a lighter one by more than this is capped: no input or
# model that does more work per photo trains more photos per second.
CAP_TOLERANCE = 0.10


@dataclass(frozen=True)
class Timing:
    """Repeated timings of one thing, summarised: the median of those kept, how many were taken and dropped, and
    the spread of the kept ones (scaled MAD / median)."""

    seconds: float
    taken: int
    rejected: int
    spread: float


def robust_seconds(seconds: Sequence[float], mads: float = OUTLIER_MADS) -> Timing:
    """The median of ``seconds`` once those above ``median + mads * MAD_SCALE * MAD`` are dropped.

    Only slow outliers are dropped: a machine can be slowed by other work, not sped up. The median and the MAD
    are not moved by a few outliers themselves, so one stalled batch neither counts nor hides the others."""
    values = np.asarray(seconds, dtype=float)
    if values.size == 0:
        raise ValueError("no timings to summarise")
    median = float(np.median(values))
    mad = MAD_SCALE * float(np.median(np.abs(values - median)))
    kept = values[values <= median + mads * mad]
    centre = float(np.median(kept))
    spread = MAD_SCALE * float(np.median(np.abs(kept - centre))) / centre if centre > 0 else 0.0
    return Timing(centre, int(values.size), int(values.size - kept.size), round(spread, 4))


def heavier(speed: Speed, other: Speed) -> bool:
    """Whether ``speed``'s candidate surely does more work per photo than ``other``'s: a larger input with a backbone
    no lighter, or a heavier backbone at the same input (backbones compared as ``no_lighter`` does)."""
    if not no_lighter(speed.backbone, other.backbone):
        return False
    return speed.size > other.size or (speed.size == other.size and not no_lighter(other.backbone, speed.backbone))


def work(speed: Speed) -> float:
    """Work per photo of a candidate, in lite0-pixels: input pixels x the backbone's ``relative_cost``."""
    return relative_cost(speed.backbone) * speed.size**2


def outpaced(speed: Speed, measured: Sequence[Speed], tolerance: float = REDO_TOLERANCE) -> Speed | None:
    """The lighter candidate in ``measured`` that ``speed`` trains faster *per unit of work* than by most,
    beyond ``tolerance``; None when its training speed is plausible (the redo rule)."""
    ratios = {
        id(s): speed.train_photos_per_s * work(speed) / (s.train_photos_per_s * work(s))
        for s in measured
        if heavier(speed, s)
    }
    beaten = [s for s in measured if ratios.get(id(s), 0.0) > 1 + tolerance]
    return max(beaten, key=lambda s: ratios[id(s)], default=None)


def faster_per_photo(speed: Speed, measured: Sequence[Speed], tolerance: float = CAP_TOLERANCE) -> bool:
    """Whether ``speed`` trains more photos/s than a lighter candidate in ``measured``, beyond ``tolerance``."""
    limit = 1 + tolerance
    return any(heavier(speed, s) and speed.train_photos_per_s > s.train_photos_per_s * limit for s in measured)


def cap_speed(speed: Speed, measured: Sequence[Speed]) -> Speed:
    """``speed`` with its training and prediction photos/s no higher than those of any lighter candidate in
    ``measured``, and a note in ``timing`` of what was capped and why."""
    lighter = [s for s in measured if heavier(speed, s)]
    if not lighter:
        return speed
    train = min(speed.train_photos_per_s, *(s.train_photos_per_s for s in lighter))
    infer = min(speed.infer_photos_per_s, *(s.infer_photos_per_s for s in lighter))
    reference = min(lighter, key=lambda s: s.train_photos_per_s)
    note = (
        f"measured twice faster per photo ({speed.train_photos_per_s:.1f} photos/s) than {reference.backbone} at "
        f"{reference.size} px ({reference.train_photos_per_s:.1f}), which does less work per photo: capped at "
        f"train {train:.1f}, predict {infer:.1f} photos/s"
    )
    timing = {
        **speed.timing,
        "capped": note,
        "measured_train_photos_per_s": speed.train_photos_per_s,
        "measured_infer_photos_per_s": speed.infer_photos_per_s,
    }
    return replace(speed, train_photos_per_s=train, infer_photos_per_s=infer, timing=timing)


class _BatchClock(pl.Callback):
    """Wall time and photos of every training batch, and when the first one started."""

    def __init__(self):
        self.batch_seconds: list[float] = []
        self.batch_photos: list[int] = []
        self.first_start: float | None = None

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self._started = time.perf_counter()
        self.first_start = self.first_start or self._started

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        _sync(module.device)
        self.batch_seconds.append(time.perf_counter() - self._started)
        self.batch_photos.append(len(batch[0]))


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
    rounds: int = 2,
) -> Speed:
    """Time ``rounds`` epochs of ``warmup + batches`` training batches over the same photos (all but the first
    ``warmup`` batches count) and ``PREDICT_PASSES`` prediction passes over them; summarised by ``robust_seconds``
    and the fastest pass. ``Speed.timing`` records how many timings were taken and dropped, and their spread.

    Batches of 64 on a GPU (the recipes' size), 32 on a CPU, where photos/s hardly depends on it and
    calibration time counts against the budget. The photos are decoded once for all rounds.
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
    cache = cache_for(photos, cfg.data, cfg.data.cache_dir, progress=False)
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
    trainer = timing_trainer(cfg, max(rounds, 1), [clock], limit_train_batches=batches + warmup)
    trainer.fit(module, datamodule=datamodule)
    per_photo = [t / max(n, 1) for t, n in zip(clock.batch_seconds, clock.batch_photos, strict=True)]
    train = robust_seconds(per_photo[warmup:] or per_photo)
    train_speed = 1.0 / train.seconds
    warmup_excess = sum(clock.batch_seconds[:warmup]) - sum(clock.batch_photos[:warmup]) * train.seconds
    setup_seconds = (clock.first_start - started) + warmup_excess

    passes = []
    for _ in range(PREDICT_PASSES):  # the first pass may pay for warming up; the fastest is what predictions cost
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
        passes.append(time.perf_counter() - started)
    infer_speed = len(rows) / max(min(passes), 1e-9)
    timing = {
        "train_batches": train.taken,
        "train_rejected": train.rejected,
        "train_spread": train.spread,
        "predict_passes": len(passes),
        "predict_spread": round((max(passes) - min(passes)) / max(min(passes), 1e-9), 4),
    }
    return Speed(
        backbone,
        size,
        cfg.model.pretrained,
        round(train_speed, 2),
        round(infer_speed, 2),
        round(max(setup_seconds, 0.0) + 1.0, 2),
        round(len(photos) / max(decode_seconds, 1e-3), 1),
        timing,
    )


def measure_plausibly(
    manifest: pd.DataFrame,
    backbone: str,
    size: int,
    measured: Sequence[Speed],
    accelerator: str = "auto",
    overrides: tuple[str, ...] = (),
) -> tuple[Speed, Speed | None]:
    """``measure``; when it says the candidate trains faster per pixel than a lighter one in ``measured``
    (``outpaced``), either measurement may be the one slowed by other work, so both are measured once more and
    each keeps the faster of its two (``faster_of``: a machine is slowed, never sped up). Capped at the lighter
    candidates' speed (``cap_speed``) when still faster per photo (``faster_per_photo``).

    Returns the candidate's speed and the lighter one's new speed (None when nothing was redone)."""
    speed = measure(manifest, backbone, size, accelerator, overrides)
    beaten = outpaced(speed, measured)
    if beaten is None:
        return speed, None
    why = (
        f"{backbone} at {size} px measured {speed.train_photos_per_s:.1f} photos/s, over "
        f"{1 + REDO_TOLERANCE:g}x faster per pixel than {beaten.backbone} at {beaten.size} px "
        f"({beaten.train_photos_per_s:.1f} photos/s): both measured again"
    )
    speed = faster_of(speed, measure(manifest, backbone, size, accelerator, overrides), why)
    lighter = faster_of(beaten, measure(manifest, beaten.backbone, beaten.size, accelerator, overrides), why)
    others = [lighter if s is beaten else s for s in measured]
    return (cap_speed(speed, others) if faster_per_photo(speed, others) else speed), lighter


def faster_of(first: Speed, again: Speed, why: str) -> Speed:
    """The one of two measurements of a candidate that trains more photos/s, with ``timing`` saying ``why`` it was
    redone and what both measured."""
    kept = first if first.train_photos_per_s >= again.train_photos_per_s else again
    earlier = first.timing.get("train_tries", [first.train_photos_per_s])  # a lighter one may be redone again
    timing = {
        **kept.timing,
        "redone": why,
        "first_train_photos_per_s": first.train_photos_per_s,
        "again_train_photos_per_s": again.train_photos_per_s,
        "train_tries": [*earlier, again.train_photos_per_s],
    }
    return replace(kept, timing=timing)


def calibrate(
    manifest: pd.DataFrame,
    workload: Workload,
    budget_minutes: float,
    candidates: tuple[tuple[str, int], ...] = CANDIDATES,
    accelerator: str = "auto",
    overrides: tuple[str, ...] = (),
    progress: bool = True,
) -> tuple[list[Speed], list[dict]]:
    """Measured speeds of the candidates that could fit the budget (on photos of the training ``manifest``; each
    ``measure_plausibly``), and a note for every candidate skipped. ``progress``: a line per candidate
    (``maskcls.core.progress.RunProgress``)."""
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
        covering = [
            s for s in speeds if photo_size and photo_size <= s.size < size and no_lighter(s.backbone, backbone)
        ]
        if covering:
            skipped.append(
                {
                    "backbone": backbone,
                    "size": size,
                    "reason": f"the photos are about {photo_size} px and {covering[0].backbone} was measured at "
                    f"{covering[0].size} px: a larger input only upsamples them",
                }
            )
            shown.skip(name, "skipped: only upsamples the photos")
            continue
        if speeds:
            reference = speeds[0]
            relative = relative_cost(backbone) * size**2 / work(reference)
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
                        f"{smallest:.0f} min at the measured speed of {reference.backbone} at {reference.size} px "
                        f"(budget {budget_minutes:.0f} min)",
                    }
                )
                shown.skip(name, "skipped: too slow for the budget")
                continue
        shown.start(name)
        speed, lighter = measure_plausibly(manifest, backbone, size, speeds, accelerator, overrides)
        if lighter is not None:  # measured again beside this candidate: its faster measurement replaces it
            speeds = [lighter if (s.backbone, s.size) == (lighter.backbone, lighter.size) else s for s in speeds]
            first, again = (lighter.timing[f"{t}_train_photos_per_s"] for t in ("first", "again"))
            shown.say(
                f"measured {lighter.backbone} at {lighter.size} px again beside it: train {first:.1f} then "
                f"{again:.1f} photos/s, kept {lighter.train_photos_per_s:.1f}"
            )
        speeds.append(speed)
        shown.advance(1)
        shown.finish(
            name,
            f"train {speeds[-1].train_photos_per_s:.1f} photos/s, predict {speeds[-1].infer_photos_per_s:.1f} "
            f"photos/s{redo_note(speeds[-1].timing)}",
        )
    return speeds, skipped
