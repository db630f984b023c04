"""The LightningModule: what is specific to this task. Lightning owns the loop, devices, precision,
checkpoints, logging and DDP."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import torch

from ..config import Config
from ..data.augment import BatchPreprocess
from ..metrics import classification_metrics
from ..models.factory import create_model
from .losses import build_loss
from .optim import build_optimizer, build_scheduler


class MaskClassifier(pl.LightningModule):
    def __init__(self, config: dict, class_counts: list[int], steps_per_epoch: int):
        super().__init__()
        self.save_hyperparameters()
        self.cfg = Config.model_validate(config)
        self.model = create_model(self.cfg.model)
        self.preprocess = BatchPreprocess(self.cfg.data, self.cfg.augment)
        self.criterion = build_loss(self.cfg.loss, np.asarray(class_counts))
        self.steps_per_epoch = steps_per_epoch
        self._val_outputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, labels, positions = batch
        return self.preprocess(images, train=self.trainer.training), labels, positions

    def on_train_epoch_start(self) -> None:
        # Augmentation and dropout draw from this seed, so a run resumed at an epoch boundary replays
        # exactly what the uninterrupted run would have done.
        torch.manual_seed(self.cfg.train.seed * 1000 + self.current_epoch + 7919 * self.global_rank)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels, _ = batch
        loss = self.criterion(self(images), labels)
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(labels))
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        images, labels, positions = batch
        logits = self(images)
        self.log("val_loss", self.criterion(logits, labels), on_epoch=True, sync_dist=True, batch_size=len(labels))
        self._val_outputs.append((positions, self.model.probabilities(logits), labels))

    def on_validation_epoch_end(self) -> None:
        if not self._val_outputs:
            return
        positions, probs, labels = (torch.cat(parts) for parts in zip(*self._val_outputs))
        self._val_outputs.clear()
        if self.trainer.world_size > 1:
            # Every rank sees the whole validation set once: gather, then drop the padding
            # DistributedSampler adds (repeated positions), so no sample counts twice.
            positions, probs, labels = (self.all_gather(t).flatten(0, 1) for t in (positions, probs, labels))
        order = np.unique(positions.cpu().numpy(), return_index=True)[1]
        metrics = classification_metrics(labels.cpu().numpy()[order], probs.float().cpu().numpy()[order])
        self.log_dict({f"val_{k}": v for k, v in metrics.items() if k != "macro_f1"})
        self.log("val_macro_f1", metrics["macro_f1"], prog_bar=True)

    def configure_optimizers(self):
        optimizer = build_optimizer(self.model, self.cfg.optim)
        scheduler = build_scheduler(optimizer, self.cfg.scheduler, self.cfg.train.epochs, self.steps_per_epoch)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def lr_scheduler_step(self, scheduler, metric) -> None:
        scheduler.step_update(num_updates=self.global_step)
