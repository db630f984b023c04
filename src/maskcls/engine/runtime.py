"""Choices that depend on the machine: numeric precision, how chatty Lightning is, and the bare Trainer that
speed measurements train with."""

from __future__ import annotations

import logging
import warnings

import lightning.pytorch as pl
import torch


def resolve_precision(precision: str, accelerator: str = "auto") -> str:
    """``auto`` means bf16 mixed precision on a GPU that supports it, full fp32 elsewhere (CPU bf16 is slow)."""
    if precision != "auto":
        return precision
    on_gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "bf16-mixed" if on_gpu and torch.cuda.is_bf16_supported() else "32-true"


def quiet_lightning() -> None:
    """Keep the console for progress bars and results: hide Lightning's start-up banners and tips."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*The number of training batches.*")
    warnings.filterwarnings("ignore", message=".*overridden `on_after_batch_transfer`.*")
    warnings.filterwarnings(
        "ignore", message=".*module\\(s\\) in eval mode at the start of training.*"
    )  # the EMA copy, on purpose


def timing_trainer(cfg, max_epochs: int, callbacks: list, **limits) -> pl.Trainer:
    """A Trainer that only trains, on one device at the recipe's precision: no validation, logger, checkpoints,
    summary or progress bar, so a speed measurement (``maskcls bench``, solve's calibration) times training alone.
    ``limits`` are further Trainer arguments (e.g. ``limit_train_batches``)."""
    return pl.Trainer(
        max_epochs=max_epochs,
        accelerator=cfg.train.accelerator,
        devices=1,
        precision=resolve_precision(cfg.train.precision, cfg.train.accelerator),
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=callbacks,
        **limits,
    )
