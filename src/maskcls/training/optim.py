"""Optimizers and learning-rate schedules by name, through timm's factories.

Schedules step once per optimizer update (not per epoch), so warmup and decay are smooth even
when a run has only a few epochs.
"""

from __future__ import annotations

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2

from ..config import OptimConfig, SchedulerConfig


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW, SGD, ... from timm's registry; weight decay is not applied to biases and norms."""
    try:
        return create_optimizer_v2(model, opt=cfg.name, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum)
    except (ValueError, AssertionError) as err:
        raise ValueError(f"optim.name '{cfg.name}': {err}") from None


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: SchedulerConfig, epochs: int, steps_per_epoch: int):
    """A timm scheduler updated per step with ``step_update(global_step)``; warmup comes before the decay."""
    try:
        scheduler, _ = create_scheduler_v2(
            optimizer,
            sched=cfg.name,
            num_epochs=epochs,
            warmup_epochs=cfg.warmup_epochs,
            warmup_lr=cfg.warmup_lr,
            warmup_prefix=True,
            min_lr=cfg.min_lr,
            step_on_epochs=False,
            updates_per_epoch=max(1, steps_per_epoch),
        )
    except (ValueError, AssertionError) as err:
        raise ValueError(f"scheduler.name '{cfg.name}': {err}") from None
    if scheduler is None:
        raise ValueError(f"unknown scheduler.name '{cfg.name}'")
    return scheduler
