"""The LightningModule: what is specific to this task. Lightning owns the loop, devices, precision,
checkpoints, logging and DDP.

Batches arrive as ``(uint8 photos, targets, positions)`` where ``targets[:, 0]`` is the class and
``targets[:, 1]`` the age in years. Training turns classes into soft targets (label smoothing,
MixUp / CutMix) and sums the head's losses; validation scores the head's task (18 classes, or
one head for a single-head model) on every validation photo exactly once, across all ranks.
"""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import torch
from timm.data import Mixup
from timm.utils import ModelEmaV3

from ..core.config import Config
from ..core.metrics import classification_metrics, head_metrics
from ..data.augment import BatchPreprocess
from ..models.factory import create_model
from ..models.freeze import freeze_stages
from .losses import HeadCriterion
from .optim import build_optimizer, build_scheduler, step_scheduler


class MaskClassifier(pl.LightningModule):
    def __init__(self, config: dict, class_counts: list[int]):
        super().__init__()
        self.save_hyperparameters()
        self.cfg = cfg = Config.model_validate(config)
        self.model = create_model(
            cfg.model, thresholds=cfg.labels.thresholds
        ).train()  # transformers loads in eval mode
        freeze_stages(self.model.backbone, cfg.model.freeze_stages)
        self.ema = ModelEmaV3(self.model, decay=cfg.train.ema_decay, use_warmup=True) if cfg.train.ema_decay else None
        self.preprocess = BatchPreprocess(cfg.data, cfg.augment)
        self.criterion = HeadCriterion(
            self.model.head,
            cfg.loss,
            np.asarray(class_counts),
            age_cuts=cfg.labels.training_thresholds,
            age_soft_years=cfg.labels.train_age_soft_years,
        )
        self.mixup = (
            Mixup(
                mixup_alpha=cfg.augment.mixup,
                cutmix_alpha=cfg.augment.cutmix,
                prob=cfg.augment.mix_prob,
                label_smoothing=cfg.loss.label_smoothing,
                num_classes=18,
            )
            if cfg.augment.mixup or cfg.augment.cutmix
            else None
        )
        self._val_outputs: list[tuple[torch.Tensor, ...]] = []

    @property
    def eval_model(self):
        """The network that is validated and exported: the EMA of the weights when enabled."""
        return self.ema.module if self.ema is not None else self.model

    def configure_model(self) -> None:
        """``train.compile``: compile the network in place (its state dict keeps its names) for faster GPU steps."""
        if self.cfg.train.compile:
            self.model.compile()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, targets, positions = batch
        training = self.trainer.training
        if training:
            self._seed_batch()
        images = self.preprocess(images, train=training)
        labels, ages = targets[:, 0], targets[:, 1]
        if not training:
            return images, labels, ages, positions
        if self.mixup is not None:
            images, soft = self.mixup(images, labels)
        else:
            soft = self.criterion.soft_targets(labels, ages)
        return images, soft, ages, positions

    def _seed_batch(self) -> None:
        """Augmentation (torch for kornia, numpy for MixUp / CutMix) and dropout draw from a seed fixed by
        (epoch, batch, rank), so a resumed run replays exactly what the uninterrupted run would have done."""
        batch_number = self.trainer.fit_loop.epoch_loop.batch_progress.current.ready
        seed = (self.cfg.train.seed * 1_000_003 + self.current_epoch * 10_007 + batch_number) * 8 + self.global_rank
        pl.seed_everything(seed % 2**31, verbose=False)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, soft_targets, ages, _ = batch
        loss = self.criterion(self(images), soft_targets, ages)
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(images))
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update(self.model, step=self.global_step)

    def validation_step(self, batch, batch_idx: int) -> None:
        images, labels, ages, positions = batch
        model = self.eval_model
        logits = model(images)
        loss = self.criterion(logits, self.criterion.soft_targets(labels), ages)
        self.log("val_loss", loss, on_epoch=True, sync_dist=True, batch_size=len(labels))
        predicted_ages = (
            model.head.ages(logits) if hasattr(model.head, "ages") else torch.full_like(ages, -1, dtype=torch.float32)
        )
        self._val_outputs.append((positions, model.probabilities(logits), labels, ages.float(), predicted_ages.float()))

    def on_validation_epoch_end(self) -> None:
        if not self._val_outputs:
            return
        gathered = [torch.cat(parts) for parts in zip(*self._val_outputs, strict=False)]
        self._val_outputs.clear()
        if self.trainer.world_size > 1:
            # Every rank sees part of the validation set: gather, then drop the padding that
            # DistributedSampler adds (repeated positions), so each photo counts exactly once.
            gathered = [self.all_gather(t).flatten(0, 1) for t in gathered]
        positions, probs, labels, ages, predicted_ages = (t.float().cpu().numpy() for t in gathered)
        keep = np.unique(positions, return_index=True)[1]
        labels = labels[keep].astype(np.int64)
        if self.model.task == "classes":
            metrics = classification_metrics(labels, probs[keep])
        else:
            predicted = predicted_ages[keep] if hasattr(self.model.head, "ages") else None
            metrics = head_metrics(labels, probs[keep], self.model.task, ages[keep], predicted)
        self.log_dict({f"val_{k}": v for k, v in metrics.items() if k != "macro_f1"})
        self.log("val_macro_f1", metrics["macro_f1"], prog_bar=True)
        self.log("val_count", float(len(keep)))

    def configure_optimizers(self):
        train = self.cfg.train
        world = max(1, self.trainer.world_size)
        optimizer = build_optimizer(
            self.model, self.cfg.optim, effective_batch=train.batch_size * train.accumulate_grad_batches * world
        )
        steps_per_epoch = -(-self.trainer.estimated_stepping_batches // train.epochs)  # per rank, after accumulation
        scheduler = build_scheduler(optimizer, self.cfg.scheduler, train.epochs, int(steps_per_epoch))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def lr_scheduler_step(self, scheduler, metric) -> None:
        step_scheduler(scheduler, self.global_step)
