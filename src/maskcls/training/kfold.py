"""Person-level k-fold training: one model per fold, out-of-fold (OOF) predictions for every photo.

A run directory holds everything needed to predict and to judge the run::

    config.yaml  run.json  folds.csv  skipped.csv
    fold_<k>/model.safetensors  fold_<k>/model.json  fold_<k>/oof.csv  fold_<k>/checkpoints/
    fold_<k>/tensorboard/  fold_<k>/csv/metrics.csv
    oof.csv  metrics.csv  summary.json  curves.png  confusion.png
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, LearningRateMonitor, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from .. import __version__
from ..analysis.plots import confusion_figure, training_curves
from ..config import Config, load_config
from ..data.cache import ImageCache, build_cache, default_cache_root
from ..data.folds import assign_folds
from ..data.images import ImageLimits
from ..data.layout import SKIP_HINT, DataError, Problem, read_train
from ..data.loader import FoldDataModule, balanced_weights
from ..inference.predictor import predict_probs
from ..io import save_figure, write_csv, write_json, write_yaml
from ..labels import NUM_CLASSES
from ..metrics import classification_metrics
from ..models.artifact import save_model
from ..runtime import quiet_lightning, resolve_precision
from ..tables import PROB_COLUMNS, read_oof, with_probs
from .module import MaskClassifier

class RunError(RuntimeError):
    """A run directory that cannot be used as asked (exists already, incomplete, inconsistent)."""


@dataclass
class TrainingData:
    """The usable photos (manifest with ``cache_row``), their decoded pixels, and what was left out."""

    manifest: pd.DataFrame
    cache: ImageCache
    problems: list[Problem]


def prepare_training_data(train_dir: str | Path, cfg: Config, progress: bool = True) -> TrainingData:
    """Read and check the layout, decode every photo once, and apply ``data.on_bad_image``."""
    manifest, problems = read_train(train_dir, cfg.labels.thresholds)
    cache = build_cache(
        manifest[["image_id", "path"]],
        cfg.data.cache_hw,
        default_cache_root(cfg.data.cache_dir),
        ImageLimits.from_config(cfg.data),
        workers=cfg.data.decode_workers,
        progress=progress,
    )
    image_problems = cache.problems(manifest["path"].tolist())
    problems = problems + image_problems
    manifest = manifest.assign(cache_row=np.arange(len(manifest)))
    manifest = manifest[~manifest["path"].isin({p.file for p in image_problems})].reset_index(drop=True)
    if problems and cfg.data.on_bad_image == "fail":
        raise DataError(f"{len(problems)} problem(s) found in {train_dir}; nothing was trained.", problems, SKIP_HINT)
    if manifest.empty:
        raise DataError(f"no usable photos in {train_dir}", problems)
    return TrainingData(manifest, cache, problems)


def train_kfold(
    train_dir: str | Path, cfg: Config, out_dir: str | Path, force: bool = False, progress: bool = True, callbacks: Sequence[Callback] = ()
) -> dict:
    """Train every fold of a new run in ``out_dir``; returns the summary (also in ``summary.json``).

    ``callbacks`` are extra Lightning callbacks given to every fold's trainer (e.g. Optuna pruning).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        if not force:
            raise RunError(f"{out_dir} already holds a run; use --resume {out_dir} to continue it, --force to replace it, or another --out")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_yaml(out_dir / "config.yaml", cfg.to_dict())
    write_json(out_dir / "run.json", {"data": str(Path(train_dir).resolve()), "maskcls_version": __version__})
    return _run(Path(train_dir), cfg, out_dir, resume=False, progress=progress, callbacks=callbacks)


def resume_kfold(out_dir: str | Path, progress: bool = True) -> dict:
    """Continue a killed run: finished folds are kept, the interrupted one restarts from its last checkpoint."""
    out_dir = Path(out_dir)
    for name in ("config.yaml", "run.json"):
        if not (out_dir / name).is_file():
            raise RunError(f"cannot resume {out_dir}: {name} is missing (was it made by `maskcls train`?)")
    cfg = load_config(out_dir / "config.yaml")
    train_dir = Path(json.loads((out_dir / "run.json").read_text())["data"])
    return _run(train_dir, cfg, out_dir, resume=True, progress=progress)


def _run(train_dir: Path, cfg: Config, out_dir: Path, resume: bool, progress: bool, callbacks: Sequence[Callback] = ()) -> dict:
    quiet_lightning()
    started = time.perf_counter()
    data = prepare_training_data(train_dir, cfg, progress)
    if data.problems:
        write_csv(out_dir / "skipped.csv", pd.DataFrame([{"file": p.file, "reason": p.reason} for p in data.problems]))
    manifest = data.manifest.assign(fold=assign_folds(data.manifest, cfg.cv.folds, cfg.cv.seed))
    write_csv(out_dir / "folds.csv", manifest[["image_id", "person_id", "label", "fold"]])

    fold_results = []
    for fold in cfg.cv.train_folds if cfg.cv.train_folds is not None else range(cfg.cv.folds):
        fold_dir = out_dir / f"fold_{fold}"
        if resume and _fold_is_complete(fold_dir):
            fold_results.append(json.loads((fold_dir / "fold.json").read_text()))
            continue
        fold_results.append(train_fold(fold, cfg, data, manifest, fold_dir, resume=resume, progress=progress, callbacks=callbacks))

    return _finish(out_dir, cfg, manifest, fold_results, time.perf_counter() - started)


def train_fold(
    fold: int,
    cfg: Config,
    data: TrainingData,
    manifest: pd.DataFrame,
    fold_dir: Path,
    resume: bool = False,
    progress: bool = True,
    callbacks: Sequence[Callback] = (),
) -> dict:
    """Train on all folds but ``fold``, keep the checkpoint with the best validation macro F1, predict ``fold``."""
    fold_started = time.perf_counter()
    pl.seed_everything(cfg.train.seed + fold, workers=True, verbose=False)
    is_val = (manifest["fold"] == fold).to_numpy()
    train_part, val_part = manifest[~is_val], manifest[is_val]
    train_labels = train_part["label"].to_numpy()
    weights = balanced_weights(train_labels, cfg.sampler.alpha) if cfg.sampler.name == "balanced" else None
    datamodule = FoldDataModule(
        str(data.cache.path),
        train_part["cache_row"].to_numpy(),
        train_labels,
        val_part["cache_row"].to_numpy(),
        val_part["label"].to_numpy(),
        batch_size=cfg.train.batch_size,
        sample_weights=weights,
        seed=cfg.train.seed + fold,
        workers=cfg.data.loader_workers,
    )
    batches = len(train_part) // cfg.train.batch_size if len(train_part) > cfg.train.batch_size else 1
    steps_per_epoch = math.ceil(batches / cfg.train.accumulate_grad_batches)
    module = MaskClassifier(cfg.to_dict(), np.bincount(train_labels, minlength=NUM_CLASSES).tolist(), steps_per_epoch)

    checkpoint = ModelCheckpoint(
        dirpath=fold_dir / "checkpoints", filename="best", monitor="val_macro_f1", mode="max", save_last=True, enable_version_counter=False
    )
    callbacks = [checkpoint, LearningRateMonitor(logging_interval="step"), *callbacks]
    if cfg.train.early_stopping_patience:
        callbacks.append(EarlyStopping(monitor="val_macro_f1", mode="max", patience=cfg.train.early_stopping_patience))
    if progress:
        callbacks.append(RichProgressBar(leave=True))
    trainer = pl.Trainer(
        max_epochs=cfg.train.epochs,
        accelerator=cfg.train.accelerator,
        devices=cfg.train.devices,
        num_nodes=cfg.train.num_nodes,
        strategy=cfg.train.strategy,
        precision=resolve_precision(cfg.train.precision, cfg.train.accelerator),
        callbacks=callbacks,
        logger=_loggers(cfg, fold_dir),
        gradient_clip_val=cfg.train.grad_clip or None,
        accumulate_grad_batches=cfg.train.accumulate_grad_batches,
        num_sanity_val_steps=0,
        log_every_n_steps=max(1, min(20, steps_per_epoch)),
        enable_model_summary=False,
        enable_progress_bar=progress,
    )
    last = fold_dir / "checkpoints" / "last.ckpt"
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(last) if resume and last.is_file() else None, weights_only=True)

    best = torch.load(checkpoint.best_model_path or last, map_location="cpu", weights_only=True)
    module.load_state_dict(best["state_dict"])
    val_probs = predict_probs(module.model, cfg.data, str(data.cache.path), val_part["cache_row"].to_numpy(), cfg.train.batch_size, cfg.train.accelerator, cfg.train.precision, progress)
    oof = with_probs(val_part[["image_id", "person_id", "fold", "label"]], val_probs)
    scores = classification_metrics(oof["label"].to_numpy(), val_probs)
    result = {
        "fold": fold,
        "best_epoch": int(best["epoch"]),
        "epochs_run": int(trainer.current_epoch),
        "train_images": int(len(train_part)),
        "val_images": int(len(val_part)),
        **scores,
        "wall_seconds": round(time.perf_counter() - fold_started, 1),
    }
    if trainer.is_global_zero:
        save_model(fold_dir, module.model, cfg, extra={"fold": fold, "val_macro_f1": scores.get("macro_f1")})
        write_csv(fold_dir / "oof.csv", oof)
        write_json(fold_dir / "fold.json", result)
    return result


def _fold_is_complete(fold_dir: Path) -> bool:
    return all((fold_dir / name).is_file() for name in ("model.safetensors", "model.json", "oof.csv", "fold.json"))


def _loggers(cfg: Config, fold_dir: Path) -> list:
    loggers = []
    if "tensorboard" in cfg.train.loggers:
        loggers.append(TensorBoardLogger(save_dir=str(fold_dir), name="tensorboard", version="", default_hp_metric=False))
    if "csv" in cfg.train.loggers:
        loggers.append(CSVLogger(save_dir=str(fold_dir), name="csv", version=""))
    return loggers


def _finish(out_dir: Path, cfg: Config, manifest: pd.DataFrame, fold_results: list[dict], wall_seconds: float) -> dict:
    """Gather fold outputs into the run's tables, plots and summary."""
    oof = pd.concat([read_oof(out_dir / f"fold_{r['fold']}" / "oof.csv") for r in fold_results], ignore_index=True)
    write_csv(out_dir / "oof.csv", oof)
    scores = classification_metrics(oof["label"].to_numpy(), oof[PROB_COLUMNS].to_numpy())
    metrics = _epoch_metrics(out_dir, [r["fold"] for r in fold_results])
    if not metrics.empty:
        write_csv(out_dir / "metrics.csv", metrics)
        save_figure(out_dir / "curves.png", training_curves(metrics))
    predicted = oof[PROB_COLUMNS].to_numpy().argmax(axis=1)
    save_figure(out_dir / "confusion.png", confusion_figure(oof["label"].to_numpy(), predicted, cfg.labels.thresholds, "out-of-fold confusion matrix"))
    summary = {
        **{f"oof_{k}" if k in ("macro_f1", "accuracy") else k: v for k, v in scores.items()},
        "folds": fold_results,
        "images": int(len(manifest)),
        "persons": int(manifest["person_id"].nunique()),
        "oof_images": int(len(oof)),
        "model": cfg.model.name,
        "image_size": list(cfg.data.size_hw),
        "epochs": cfg.train.epochs,
        "wall_seconds": round(wall_seconds, 1),
    }
    write_json(out_dir / "summary.json", summary)
    return summary


def _epoch_metrics(out_dir: Path, folds: list[int]) -> pd.DataFrame:
    """One row per fold and epoch from Lightning's CSV logs (it writes step and epoch values on separate rows)."""
    frames = []
    for fold in folds:
        path = out_dir / f"fold_{fold}" / "csv" / "metrics.csv"
        if not path.is_file():
            continue
        logged = pd.read_csv(path)
        logged = logged.rename(columns={"train_loss_epoch": "train_loss"})
        keep = [c for c in logged.columns if c in ("epoch", "train_loss") or c.startswith("val_")]
        per_epoch = logged[keep].dropna(subset=["epoch"]).groupby("epoch", as_index=False).last()
        frames.append(per_epoch.assign(fold=fold))
    if not frames:
        return pd.DataFrame()
    table = pd.concat(frames, ignore_index=True)
    return table[["fold", "epoch"] + [c for c in table.columns if c not in ("fold", "epoch")]]
