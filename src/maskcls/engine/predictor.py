"""Predictions of cached photos from one trained network, through ``Trainer.predict``.

Out-of-fold and test predictions both go through here, so they are made the same way: the same
test-time views (TTA) and merge, and optionally Monte-Carlo dropout (several stochastic passes
with dropout left on; their spread is the model's own uncertainty).
"""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn

from ..core.config import AugmentConfig, DataConfig
from ..core.metrics import disagreement
from ..core.progress import RunProgress
from ..core.tta import tta_views
from ..data.augment import BatchPreprocess
from ..data.loader import prediction_loader
from ..models.factory import MaskNet
from .lightning_progress import lightning_bar
from .runtime import quiet_lightning, resolve_precision


class Predictor(pl.LightningModule):
    def __init__(
        self, model: MaskNet, data_cfg: DataConfig, tta: str = "none", merge: str = "mean_probs", mc_samples: int = 0
    ):
        super().__init__()
        self.model = model
        self.preprocess = BatchPreprocess(data_cfg, AugmentConfig())
        self.views = tta_views(tta)
        self.merge = merge
        self.mc_samples = mc_samples

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, _, positions = batch
        return images, positions

    def predict_step(self, batch, batch_idx: int):
        images, positions = batch
        inputs = [self.preprocess(images, train=False, view=view) for view in self.views]
        if self.mc_samples:
            for module in self.model.modules():
                if isinstance(module, nn.Dropout):
                    module.train()
        passes = [self._one_pass(inputs) for _ in range(max(1, self.mc_samples))]
        outputs = {key: torch.stack([p[key] for p in passes]).mean(0) for key in passes[0]}
        if len(passes) > 1:
            outputs["mc_mutual_information"] = torch.from_numpy(
                disagreement(torch.stack([p["probs"] for p in passes]).float().cpu().numpy())
            )
        return positions, outputs

    def _one_pass(self, inputs: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        head = self.model.head
        logits = [self.model(x).float() for x in inputs]
        result = {"probs": merge_views(head, logits, self.merge)}
        if hasattr(head, "ages"):
            result["age_value"] = torch.stack([head.ages(l) for l in logits]).mean(0)
        return result


def merge_views(head: nn.Module, logits: list[torch.Tensor], merge: str) -> torch.Tensor:
    """Probabilities of a photo from the logits of its test-time views: mean of probabilities, or of logits."""
    if merge == "mean_logits":
        return head.probabilities(torch.stack(logits).mean(0))
    return torch.stack([head.probabilities(l) for l in logits]).mean(0)


def predict_outputs(
    model: MaskNet,
    data_cfg: DataConfig,
    pixels: str | np.ndarray,
    rows: np.ndarray,
    batch_size: int = 64,
    accelerator: str = "auto",
    precision: str = "auto",
    progress: bool = True,
    tta: str = "none",
    merge: str = "mean_probs",
    mc_samples: int = 0,
    plan: RunProgress | None = None,
) -> dict[str, np.ndarray]:
    """Per-photo outputs for ``rows`` of ``pixels`` (cache file or array), in their order.

    ``plan``: the whole job's progress, shown above the prediction bar on a terminal.

    Always ``probs`` (18 classes, or 3 age groups for an age model); ``age_value`` for age
    regression; ``mc_mutual_information`` with Monte-Carlo dropout.
    """
    quiet_lightning()
    predictor = Predictor(model.eval(), data_cfg, tta, merge, mc_samples)
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=1,
        precision=resolve_precision(precision, accelerator),
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress,
        callbacks=[lightning_bar(plan)] if progress else [],
    )
    batches = trainer.predict(predictor, prediction_loader(pixels, rows, batch_size)) if len(rows) else []
    outputs: dict[str, np.ndarray] = {}
    for positions, values in batches:
        for key, tensor in values.items():
            if key not in outputs:
                outputs[key] = np.zeros((len(rows), *tensor.shape[1:]), dtype=np.float32)
            outputs[key][positions.numpy()] = tensor.float().cpu().numpy()
    if "probs" not in outputs:
        outputs["probs"] = np.zeros((0, 18), dtype=np.float32)
    return outputs


def predict_probs(
    model: MaskNet, data_cfg: DataConfig, pixels: str | np.ndarray, rows: np.ndarray, **options
) -> np.ndarray:
    """Only the probabilities of ``predict_outputs``."""
    return predict_outputs(model, data_cfg, pixels, rows, **options)["probs"]
