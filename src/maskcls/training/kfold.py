"""Person-level k-fold training: one model per fold, out-of-fold (OOF) predictions for every photo.

A run directory holds everything needed to predict and to judge the run::

    config.yaml  run.json  folds.csv  skipped.csv  label_fixes.csv  label_changes.csv  (with --label-fixes)
    fold_<k>/model.safetensors  fold_<k>/model.json  fold_<k>/oof.csv  fold_<k>/checkpoints/
    fold_<k>/tensorboard/  fold_<k>/csv/metrics.csv
    oof.csv  metrics.csv  summary.json  curves.png  confusion.png
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from ..core.artifacts import (
    CONFIG_FILE,
    FOLD_FILE,
    FOLD_METRICS_FILE,
    FOLDS_FILE,
    LABEL_FIXES_FILE,
    LAST_CHECKPOINT_FILE,
    MODEL_META_FILE,
    MODEL_WEIGHTS_FILE,
    OOF_FILE,
    RUN_FILE,
    SKIPPED_FILE,
    SUMMARY_FILE,
    RunError,
    fold_dir,
)
from ..core.config import Config, ConfigError, load_config
from ..core.folds import assign_folds
from ..core.io import copy_file, save_figure, write_csv, write_json, write_yaml
from ..core.labels import NUM_CLASSES, AgeThresholds, decode, encode
from ..core.metrics import classification_metrics, head_metrics
from ..core.plots import confusion_figure, training_curves
from ..core.progress import RunProgress
from ..core.tables import HEAD_COLUMNS, PROB_COLUMNS, with_probs
from ..core.version import __version__
from ..data.cache import ImageCache, cache_for
from ..data.extra import ExtraSpec, describe_extras, limit_extras, read_extras
from ..data.folds import folds_from_file
from ..data.label_fixes import apply_label_fixes, read_label_fixes
from ..data.layout import SKIP_HINT, DataError, Problem, read_train
from ..data.loader import FoldDataModule, balanced_weights
from ..engine.lightning_progress import EpochProgress, lightning_bar
from ..engine.predictor import predict_outputs
from ..engine.runtime import quiet_lightning, resolve_precision
from ..models.artifact import save_model
from ..models.factory import check_backbone
from ..models.heads import create_head
from .losses import HeadCriterion
from .module import MaskClassifier


@dataclass
class TrainingData:
    """The usable photos (manifest with ``cache_row``), their decoded pixels, and what was left out."""

    manifest: pd.DataFrame
    cache: ImageCache
    problems: list[Problem]
    extra_sources: list[dict] = field(default_factory=list)
    label_changes: pd.DataFrame | None = None  # photos whose labels the --label-fixes overlay changed


def prepare_training_data(
    train_dir: str | Path, cfg: Config, progress: bool = True, extra=None, label_fixes: str | Path | None = None
) -> TrainingData:
    """Read and check the layout (and any ``extra`` sources, see ``data/extra.py``), decode every photo once,
    apply ``data.on_bad_image``.

    ``label_fixes`` (a reviewed fixes CSV, see ``data/label_fixes.py``) is applied on top of ``train.csv``, never to it.
    """
    manifest, problems = read_train(train_dir, cfg.labels.thresholds)
    label_changes = None
    if label_fixes is not None:
        manifest, label_changes = apply_label_fixes(
            manifest, read_label_fixes(label_fixes, train_dir, cfg.labels.thresholds), cfg.labels.thresholds
        )
    manifest = manifest.assign(source="train", origin="")
    spec = ExtraSpec.of(extra)
    extra_report = []
    if spec.sources:
        offered, extra_problems = read_extras(spec, cfg.labels.thresholds)
        used = limit_extras(offered, len(manifest), spec, cfg.cv.seed)
        extra_report = describe_extras(offered, used, spec)
        manifest = pd.concat([manifest, used], ignore_index=True)
        problems = problems + extra_problems
        if manifest["image_id"].duplicated().any():
            raise DataError(
                f"extra photos reuse image ids of {train_dir}, "
                f"e.g. '{manifest['image_id'][manifest['image_id'].duplicated()].iloc[0]}'"
            )
    cache = cache_for(manifest, cfg.data, cfg.data.cache_dir, progress, workers=cfg.data.decode_workers)
    image_problems = cache.problems(manifest["path"].tolist())
    problems = problems + image_problems
    manifest = manifest.assign(cache_row=np.arange(len(manifest)))
    if cache.faces is not None:
        manifest = manifest.assign(face_found=cache.face_found())
    manifest = manifest[~manifest["path"].isin({p.file for p in image_problems})].reset_index(drop=True)
    if problems and cfg.data.on_bad_image == "fail":
        raise DataError(f"{len(problems)} problem(s) found in {train_dir}; nothing was trained.", problems, SKIP_HINT)
    if not (manifest["source"] == "train").any():
        raise DataError(f"no usable photos in {train_dir}", problems)
    return TrainingData(manifest, cache, problems, extra_report, label_changes)


def train_kfold(
    train_dir: str | Path,
    cfg: Config,
    out_dir: str | Path,
    force: bool = False,
    progress: bool = True,
    callbacks: Sequence[Callback] = (),
    extra=None,
    label_fixes: str | Path | None = None,
) -> dict:
    """Train every fold of a new run in ``out_dir``; returns the summary (also in ``summary.json``).

    ``callbacks`` are extra Lightning callbacks given to every fold's trainer (e.g. Optuna pruning).
    ``extra``: extra labelled photos — a CSV (image_id, path, label), a competition-layout folder of
    whole persons, a list of them, or an ``ExtraSpec`` with limits. They are added to the training
    part of every fold and never to validation, so OOF scores stay honest.
    ``label_fixes`` is a reviewed fixes CSV applied on top of ``train.csv`` (which is never modified); the run keeps
    a copy (``label_fixes.csv``), its hash in ``run.json`` and the changed photos in ``label_changes.csv``.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    check_recipe(cfg)
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise RunError(
            f"{out_dir} already holds a run; use --resume {out_dir} to continue it, --force to replace it, "
            "or another --out"
        )
    fixes = read_label_fixes(label_fixes, train_dir, cfg.labels.thresholds) if label_fixes is not None else None
    extra = ExtraSpec.of(extra)
    # Every check (recipe, backbone, layout and columns, label fixes, extra data, photos, folds) passes before
    # anything is written to out_dir: a failed attempt leaves it as it was and a corrected rerun is not refused.
    data = prepare_training_data(train_dir, cfg, progress, extra, fixes.path if fixes is not None else None)
    manifest = assign_run_folds(data.manifest, cfg)
    if out_dir.exists() and any(out_dir.iterdir()):
        shutil.rmtree(out_dir)  # --force, only now that the new run is known to start
    out_dir.mkdir(parents=True, exist_ok=True)
    write_yaml(out_dir / CONFIG_FILE, cfg.to_dict())
    run = {"data": str(Path(train_dir).resolve()), **extra.to_run(), "maskcls_version": __version__}
    if fixes is not None:
        copy_file(fixes.path, out_dir / LABEL_FIXES_FILE)
        run["label_fixes"] = fixes.record()
    write_json(out_dir / RUN_FILE, run)
    return _run(cfg, out_dir, data, manifest, started, resume=False, progress=progress, callbacks=callbacks)


def check_recipe(cfg: Config) -> None:
    """What the recipe alone can tell before any data is read: the backbone exists and its weights can be had
    (``models.factory.check_backbone``), and the loss fits the head (``loss.per_head`` outputs, component weights).

    Names (head, loss, optimizer, schedule, TTA) were already checked when the recipe was read.
    """
    if cfg.model.head == "separate":
        raise ConfigError(
            "model.head=separate trains one model per head: use training.combine.train_separate (maskcls train does)"
        )
    check_backbone(cfg.model)
    head = create_head(
        cfg.model.head, 8, cfg.model.drop_rate, samples=cfg.model.msd_samples, thresholds=cfg.labels.thresholds
    )
    try:
        HeadCriterion(head, cfg.loss, np.ones(NUM_CLASSES))
    except ValueError as err:
        raise ConfigError(str(err)) from None


def assign_run_folds(manifest: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """The manifest with a ``fold`` per photo: persons split by ``cv`` (or ``cv.folds_file``); extra photos get -1
    (training only, never validation)."""
    labelled = (manifest["source"] == "train").to_numpy()
    folds = np.full(len(manifest), -1, dtype=np.int64)
    if cfg.cv.folds_file:
        folds[labelled] = folds_from_file(manifest[labelled], cfg.cv.folds_file, cfg.cv.folds)
    else:
        folds[labelled] = assign_folds(manifest[labelled], cfg.cv.folds, cfg.cv.seed)
    return manifest.assign(fold=folds)


def resume_kfold(out_dir: str | Path, progress: bool = True, callbacks: Sequence[Callback] = ()) -> dict:
    """Continue a killed run: finished folds are kept, the interrupted one restarts from its last checkpoint."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    for name in (CONFIG_FILE, RUN_FILE):
        if not (out_dir / name).is_file():
            raise RunError(f"cannot resume {out_dir}: {name} is missing (was it made by `maskcls train`?)")
    cfg = load_config(out_dir / CONFIG_FILE)
    run = json.loads((out_dir / RUN_FILE).read_text())
    label_fixes = out_dir / LABEL_FIXES_FILE if run.get("label_fixes") else None
    data = prepare_training_data(Path(run["data"]), cfg, progress, ExtraSpec.from_run(run), label_fixes)
    manifest = assign_run_folds(data.manifest, cfg)
    return _run(cfg, out_dir, data, manifest, started, resume=True, progress=progress, callbacks=callbacks)


def _run(
    cfg: Config,
    out_dir: Path,
    data: TrainingData,
    manifest: pd.DataFrame,
    started: float,
    resume: bool,
    progress: bool,
    callbacks: Sequence[Callback] = (),
) -> dict:
    quiet_lightning()
    fold_numbers = list(cfg.cv.train_folds if cfg.cv.train_folds is not None else range(cfg.cv.folds))
    plan = RunProgress(
        f"train {out_dir}",
        [(f"fold {fold}", cfg.train.epochs) for fold in fold_numbers],
        unit="epoch",
        enabled=progress,
    )
    skipped_csv = out_dir / SKIPPED_FILE
    if data.problems:
        write_csv(skipped_csv, pd.DataFrame([{"file": p.file, "reason": p.reason} for p in data.problems]))
        plan.say(
            f"{len(data.problems)} problem photo(s) or row(s) left out (--on-bad-image skip); listed in {skipped_csv}"
        )
    else:
        skipped_csv.unlink(missing_ok=True)  # from an earlier attempt of a resumed run
    if data.label_changes is not None:
        write_csv(out_dir / "label_changes.csv", data.label_changes)
        plan.say(
            f"label fixes: {data.label_changes['image_id'].nunique()} photo(s) changed; "
            f"listed in {out_dir / 'label_changes.csv'}"
        )
    if data.extra_sources:  # where every extra photo came from, and how many the limits let in
        write_json(
            out_dir / RUN_FILE,
            {**json.loads((out_dir / RUN_FILE).read_text()), "extra_sources": data.extra_sources},
        )
    write_csv(out_dir / FOLDS_FILE, manifest[["image_id", "person_id", "label", "fold", "source", "origin"]])

    fold_results = []
    for fold in fold_numbers:
        fold_path = fold_dir(out_dir, fold)
        if resume and _fold_is_complete(fold_path):
            fold_results.append(json.loads((fold_path / FOLD_FILE).read_text()))
            plan.skip(f"fold {fold}", "finished before the resume")
            continue
        fold_results.append(
            train_fold(
                fold, cfg, data, manifest, fold_path, resume=resume, progress=progress, callbacks=callbacks, plan=plan
            )
        )

    return finish_run(
        out_dir, cfg, manifest, fold_results, time.perf_counter() - started, skipped_images=len(data.problems)
    )


def train_fold(
    fold: int,
    cfg: Config,
    data: TrainingData,
    manifest: pd.DataFrame,
    fold_dir: Path,
    resume: bool = False,
    progress: bool = True,
    callbacks: Sequence[Callback] = (),
    plan: RunProgress | None = None,
) -> dict:
    """Train on all folds but ``fold``, keep the checkpoint with the best validation macro F1, predict ``fold``.

    ``plan`` (the whole run's progress) is advanced every epoch and shown above the epoch bar.
    """
    fold_started = time.perf_counter()
    pl.seed_everything(cfg.train.seed + fold, workers=True, verbose=False)
    is_val = (manifest["fold"] == fold).to_numpy()
    train_part, val_part = manifest[~is_val], manifest[is_val]
    train_targets = _targets(train_part, cfg.labels.training_thresholds)
    train_labels = train_targets[:, 0]
    weights = balanced_weights(train_labels, cfg.sampler.alpha) if cfg.sampler.name == "balanced" else None
    datamodule = FoldDataModule(
        str(data.cache.path),
        train_part["cache_row"].to_numpy(),
        train_targets,
        val_part["cache_row"].to_numpy(),
        _targets(val_part),
        batch_size=cfg.train.batch_size,
        sample_weights=weights,
        seed=cfg.train.seed + fold,
        workers=cfg.data.loader_workers,
        device_cache=cfg.data.device_cache,
        device_cache_gb=cfg.data.device_cache_gb,
    )
    module = MaskClassifier(cfg.to_dict(), np.bincount(train_labels, minlength=NUM_CLASSES).tolist())

    checkpoint = ModelCheckpoint(
        dirpath=fold_dir / "checkpoints",
        filename="best",
        monitor="val_macro_f1",
        mode="max",
        save_last=True,
        enable_version_counter=False,
    )
    callbacks = [checkpoint, LearningRateMonitor(logging_interval="step"), *callbacks]
    if cfg.train.early_stopping_patience:
        callbacks.append(EarlyStopping(monitor="val_macro_f1", mode="max", patience=cfg.train.early_stopping_patience))
    if plan is not None:
        callbacks.append(EpochProgress(plan, f"fold {fold}"))
    if progress:
        callbacks.append(lightning_bar(plan))
    if resume:
        _keep_earlier_metrics(fold_dir / "csv")
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
        log_every_n_steps=max(1, min(20, len(train_part) // cfg.train.batch_size)),
        enable_model_summary=False,
        enable_progress_bar=progress,
        benchmark=True
        if torch.cuda.is_available()
        else None,  # cuDNN picks the fastest kernels for the fixed input size
    )
    last = fold_dir / "checkpoints" / LAST_CHECKPOINT_FILE
    trainer.fit(
        module, datamodule=datamodule, ckpt_path=str(last) if resume and last.is_file() else None, weights_only=True
    )
    _close_loggers(trainer)

    best = torch.load(checkpoint.best_model_path or last, map_location="cpu", weights_only=True)
    module.load_state_dict(best["state_dict"])
    model = module.eval_model
    outputs = predict_outputs(
        model,
        cfg.data,
        str(data.cache.path),
        val_part["cache_row"].to_numpy(),
        batch_size=cfg.train.batch_size,
        accelerator=cfg.train.accelerator,
        precision=cfg.train.precision,
        progress=progress,
        tta=cfg.tta.name,
        merge=cfg.tta.merge,
        plan=plan,
    )
    oof = oof_table(val_part, outputs, model.task)
    scores = task_metrics(oof, model.task)
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
        save_model(fold_dir, model, cfg, extra={"fold": fold, "val_macro_f1": scores.get("macro_f1")})
        write_csv(fold_dir / OOF_FILE, oof)
        write_json(fold_dir / FOLD_FILE, result)
    if plan is not None:
        plan.finish(f"fold {fold}", f"macro F1 {scores['macro_f1']:.4f} (best epoch {result['best_epoch']})")
    return result


def _targets(part: pd.DataFrame, thresholds: AgeThresholds | None = None) -> np.ndarray:
    """``(N, 2)`` = [class, age in years] per photo, as the data loaders hand them to the model; with
    ``thresholds`` (``labels.train_age_old``), the class of every photo of known age takes its age group from
    them (photos of unknown age, such as pseudo-labels, keep their label)."""
    labels, ages = part["label"].to_numpy(), part["age"].to_numpy()
    if thresholds is not None:
        mask, gender, _ = decode(labels)
        labels = np.where(ages >= 0, encode(mask, gender, thresholds.group(np.maximum(ages, 0))), labels)
    return np.stack([labels, ages], axis=1)


def oof_table(part: pd.DataFrame, outputs: dict[str, np.ndarray], task: str) -> pd.DataFrame:
    """Out-of-fold rows: keys and p0..p17 for the 18-class task; the head's columns (m*, g* or a*, plus
    age and age_pred for age regression) for a single-head model."""
    keys = part[["image_id", "person_id", "fold", "label"]].reset_index(drop=True)
    if task == "classes":
        return with_probs(keys, outputs["probs"])
    table = pd.concat(
        [keys.assign(age=part["age"].to_numpy()), pd.DataFrame(outputs["probs"], columns=HEAD_COLUMNS[task])], axis=1
    )
    if "age_value" in outputs:
        table["age_pred"] = outputs["age_value"]
    return table


def oof_task(oof: pd.DataFrame) -> str:
    """Which task an OOF table holds, from its columns."""
    if PROB_COLUMNS[0] in oof:
        return "classes"
    for task, columns in HEAD_COLUMNS.items():
        if columns[0] in oof:
            return task
    raise RunError("an out-of-fold table without probability columns")


def task_metrics(oof: pd.DataFrame, task: str) -> dict[str, float]:
    if task == "classes":
        return classification_metrics(oof["label"].to_numpy(), oof[PROB_COLUMNS].to_numpy())
    predicted = oof["age_pred"].to_numpy() if "age_pred" in oof else None
    return head_metrics(
        oof["label"].to_numpy(), oof[HEAD_COLUMNS[task]].to_numpy(), task, oof["age"].to_numpy(), predicted
    )


def _fold_is_complete(fold_dir: Path) -> bool:
    return all((fold_dir / name).is_file() for name in (MODEL_WEIGHTS_FILE, MODEL_META_FILE, OOF_FILE, FOLD_FILE))


def _loggers(cfg: Config, fold_dir: Path) -> list:
    """TensorBoard (default), CSV, and Weights & Biases (offline with ``train.wandb_offline`` or
    ``WANDB_MODE=offline``)."""
    loggers = []
    if "tensorboard" in cfg.train.loggers:
        loggers.append(
            TensorBoardLogger(save_dir=str(fold_dir), name="tensorboard", version="", default_hp_metric=False)
        )
    if "csv" in cfg.train.loggers:
        loggers.append(CSVLogger(save_dir=str(fold_dir), name="csv", version=""))
    if "wandb" in cfg.train.loggers:
        from lightning.pytorch.loggers import WandbLogger

        run_name = fold_dir.parent.name
        loggers.append(
            WandbLogger(
                project=cfg.train.wandb_project,
                group=run_name,
                name=f"{run_name}-{fold_dir.name}",
                save_dir=str(fold_dir),
                offline=cfg.train.wandb_offline or os.environ.get("WANDB_MODE") == "offline",
                config=cfg.to_dict(),
            )
        )
    return loggers


def _keep_earlier_metrics(csv_dir: Path) -> None:
    """Lightning's CSV logger deletes an existing metrics.csv; keep the killed attempt's rows as a numbered part."""
    current = csv_dir / FOLD_METRICS_FILE
    if current.is_file():
        current.rename(csv_dir / f"metrics.part{len(list(csv_dir.glob('metrics.part*.csv')))}.csv")


def _close_loggers(trainer: pl.Trainer) -> None:
    """Each fold is its own W&B run: finish it before the next fold starts one."""
    for logger in trainer.loggers:
        if type(logger).__name__ == "WandbLogger":
            logger.experiment.finish()


def finish_run(
    out_dir: Path,
    cfg: Config,
    manifest: pd.DataFrame,
    fold_results: list[dict],
    wall_seconds: float,
    skipped_images: int = 0,
) -> dict:
    """Gather fold outputs into the run's tables, plots and summary (``skipped_images``: problems listed in
    ``skipped.csv``)."""
    oof = pd.concat(
        [
            pd.read_csv(fold_dir(out_dir, r["fold"]) / OOF_FILE, dtype={"image_id": str, "person_id": str})
            for r in fold_results
        ],
        ignore_index=True,
    )
    write_csv(out_dir / OOF_FILE, oof)
    task = oof_task(oof)
    scores = task_metrics(oof, task)
    metrics = _epoch_metrics(out_dir, [r["fold"] for r in fold_results])
    if not metrics.empty:
        write_csv(out_dir / FOLD_METRICS_FILE, metrics)
        save_figure(out_dir / "curves.png", training_curves(metrics))
    if task == "classes":
        predicted = oof[PROB_COLUMNS].to_numpy().argmax(axis=1)
        save_figure(
            out_dir / "confusion.png",
            confusion_figure(oof["label"].to_numpy(), predicted, cfg.labels.thresholds, "out-of-fold confusion matrix"),
        )
    summary = {
        "task": task,
        "extra_images": int((manifest["source"] == "extra").sum()),
        "extra_persons": int(manifest.loc[manifest["source"] == "extra", "person_id"].nunique()),
        **{f"oof_{k}" if k in ("macro_f1", "accuracy") else k: v for k, v in scores.items()},
        "folds": fold_results,
        "images": int((manifest["source"] == "train").sum()),
        "persons": int(manifest.loc[manifest["source"] == "train", "person_id"].nunique()),
        "oof_images": int(len(oof)),
        "model": cfg.model.name,
        "image_size": list(cfg.data.size_hw),
        "epochs": cfg.train.epochs,
        "wall_seconds": round(wall_seconds, 1),
        "skipped_images": skipped_images,
    }
    if "face_found" in manifest:  # data.face_crop: photos where no face was found were used whole
        summary["face_crop"] = {
            "photos": int(len(manifest)),
            "no_face": int((~manifest["face_found"].astype(bool)).sum()),
        }
    write_json(out_dir / SUMMARY_FILE, summary)
    return summary


def _epoch_metrics(out_dir: Path, folds: list[int]) -> pd.DataFrame:
    """One row per fold and epoch from Lightning's CSV logs (it writes step and epoch values on separate rows)."""
    frames = []
    for fold in folds:
        csv_dir = fold_dir(out_dir, fold) / "csv"
        parts = sorted(csv_dir.glob("metrics.part*.csv"), key=lambda p: int(p.stem.removeprefix("metrics.part"))) + [
            csv_dir / FOLD_METRICS_FILE
        ]
        parts = [p for p in parts if p.is_file() and p.stat().st_size > 0]  # a fold killed before its first row
        if not parts:
            continue
        logged = pd.concat([pd.read_csv(p) for p in parts], ignore_index=True)  # a replayed epoch's later rows win
        logged = logged.rename(columns={"train_loss_epoch": "train_loss"})
        keep = [c for c in logged.columns if c in ("epoch", "train_loss") or c.startswith("val_")]
        per_epoch = logged[keep].dropna(subset=["epoch"]).groupby("epoch", as_index=False).last()
        frames.append(per_epoch.assign(fold=fold))
    if not frames:
        return pd.DataFrame()
    table = pd.concat(frames, ignore_index=True)
    return table[["fold", "epoch"] + [c for c in table.columns if c not in ("fold", "epoch")]]
