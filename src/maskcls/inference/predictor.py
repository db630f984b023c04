"""Class probabilities of cached photos from one trained network, through ``Trainer.predict``.

Out-of-fold and test predictions both go through here, so they are made the same way.
"""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import torch

from ..data.augment import BatchPreprocess
from ..data.loader import prediction_loader
from ..models.factory import MaskNet
from ..config import AugmentConfig, DataConfig
from ..runtime import resolve_precision


class Predictor(pl.LightningModule):
    def __init__(self, model: MaskNet, data_cfg: DataConfig):
        super().__init__()
        self.model = model
        self.preprocess = BatchPreprocess(data_cfg, AugmentConfig())

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, _, positions = batch
        return self.preprocess(images, train=False), positions

    def predict_step(self, batch, batch_idx: int):
        images, positions = batch
        return positions, self.model.probabilities(self.model(images))


def predict_probs(
    model: MaskNet,
    data_cfg: DataConfig,
    pixels: str | np.ndarray,
    rows: np.ndarray,
    batch_size: int = 64,
    accelerator: str = "auto",
    precision: str = "auto",
    progress: bool = True,
) -> np.ndarray:
    """``(len(rows), 18)`` probabilities for ``rows`` of ``pixels`` (cache file or array), in their order."""
    if len(rows) == 0:
        return np.zeros((0, 18), dtype=np.float32)
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=1,
        precision=resolve_precision(precision, accelerator),
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress,
    )
    outputs = trainer.predict(Predictor(model.eval(), data_cfg), prediction_loader(pixels, rows, batch_size))
    probs = np.zeros((len(rows), 18), dtype=np.float32)
    for positions, batch_probs in outputs:
        probs[positions.numpy()] = batch_probs.float().cpu().numpy()
    return probs
