"""Choices that depend on the machine: numeric precision, and how chatty Lightning is."""

from __future__ import annotations

import logging
import warnings

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
