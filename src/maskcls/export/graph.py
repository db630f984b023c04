"""Everything ``predict --run`` does after decoding a photo, as one ``nn.Module``: the graph that is exported.

Input: uint8 photos ``(N, H, W, 3)`` at the run's cache size, exactly what ``data.images.read_resized``
(the decode-once cache) gives. Inside: the test-time views (centre crop, flip, zooms, brightness) and
normalisation of ``data.augment.BatchPreprocess``, every chosen fold model on all views in one batched
pass, the views merged as the recipe says (``inference.predictor.merge_views``) and the folds averaged.
Outputs: the 18 class probabilities, the mask / gender / age probabilities (their marginals; for a
three-head model these are its own heads) and each fold's probabilities (for ``disagreement``).
With everything in the graph, a runtime needs nothing but the shared, torch-free decoder.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..core.artifacts import COMBINE_FILE, ENSEMBLE_FILE, MODEL_WEIGHTS_FILE, RunError, fold_dir
from ..core.config import AugmentConfig, DataConfig
from ..core.labels import GENDER_NAMES, MASK_NAMES, class_names
from ..core.tta import tta_views
from ..data.augment import BatchPreprocess
from ..data.framing import Framing
from ..engine.predictor import merge_views
from ..inference.predict import TrainedRun, load_run
from ..models.factory import MaskNet
from .metadata import OUTPUT_NAMES, ExportMetadata, InputSpec, LabelSpec, PreprocessSpec, TTASpec


class PredictionGraph(nn.Module):
    """uint8 NHWC photos at the cache size -> (probs, mask, gender, age, fold_probs)."""

    def __init__(self, models: list[MaskNet], data_cfg: DataConfig, views: tuple[str, ...], merge: str):
        super().__init__()
        self.models = nn.ModuleList(models).eval()
        self.preprocess = BatchPreprocess(data_cfg, AugmentConfig())
        self.cache_hw = data_cfg.cache_hw
        self.views = tuple(views)
        self.merge = merge

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        batch = pixels.shape[0]
        inputs = torch.cat([self.preprocess(pixels, train=False, view=view) for view in self.views])
        fold_probs = torch.stack([self._fold_probs(model, inputs, batch) for model in self.models], dim=1)
        probs = fold_probs.mean(dim=1)
        joint = probs.reshape(-1, 3, 2, 3)  # class = mask * 6 + gender * 3 + age_group
        return probs, joint.sum(dim=(2, 3)), joint.sum(dim=(1, 3)), joint.sum(dim=(1, 2)), fold_probs

    def _fold_probs(self, model: MaskNet, inputs: torch.Tensor, batch: int) -> torch.Tensor:
        logits = model(inputs).float().unflatten(0, (len(self.views), batch))
        return merge_views(model.head, list(logits.unbind(0)), self.merge)


def build_graph(
    run: str | Path | TrainedRun, folds: list[int] | None = None, tta: str | None = None
) -> tuple[PredictionGraph, ExportMetadata]:
    """The graph of ``folds`` (default: all) of a finished k-fold run, and the metadata that describes it.

    ``tta`` overrides the run's test-time augmentation set (its recipe's ``tta.name``).
    """
    if not isinstance(run, TrainedRun):
        run = load_trained_run(run)
    chosen = list(run.folds) if folds is None else [int(k) for k in folds]
    missing = [k for k in chosen if k not in run.folds]
    if missing or not chosen:
        raise RunError(f"{run.directory} has folds {run.folds}; cannot export fold(s) {missing or chosen}")
    tta_cfg = run.meta.get("tta", {})
    tta_name = tta or tta_cfg.get("name", "none")
    merge = tta_cfg.get("merge", "mean_probs")
    views = tta_views(tta_name)
    data_cfg, labels_cfg = run.data_cfg, run.labels_cfg
    models = [run.models[run.folds.index(k)] for k in chosen]
    graph = PredictionGraph(models, data_cfg, views, merge)
    mean, std = data_cfg.mean_std
    cache_h, cache_w = data_cfg.cache_hw
    metadata = ExportMetadata(
        opset=None,
        run_id=run.directory.resolve().name,
        model_id=f"{run.directory.resolve().name}:{_weights_digest(run.directory, chosen, tta_name, merge)}",
        architecture=run.meta["model"]["name"],
        head=run.meta["model"]["head"],
        folds=tuple(chosen),
        fallback_class=run.fallback_class,
        input=InputSpec.for_framing(cache_h, cache_w, Framing.from_config(data_cfg)),
        preprocess=PreprocessSpec(
            image_size=data_cfg.size_hw,
            resize_margin=data_cfg.resize_margin,
            normalize=data_cfg.normalize,
            mean=mean,
            std=std,
        ),
        labels=LabelSpec(
            age_middle=labels_cfg.age_middle,
            age_old=labels_cfg.age_old,
            mask_names=MASK_NAMES,
            gender_names=GENDER_NAMES,
            age_names=labels_cfg.thresholds.names(),
            class_names=tuple(class_names(labels_cfg.thresholds)),
        ),
        tta=TTASpec(name=tta_name, views=views, merge=merge),
        exported_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    return graph, metadata


def load_trained_run(run_dir: str | Path) -> TrainedRun:
    """A k-fold run whose models predict the 18 classes; anything else is refused with the reason."""
    run_dir = Path(run_dir)
    for marker, kind in ((ENSEMBLE_FILE, "an ensemble"), (COMBINE_FILE, "a combination of runs")):
        if (run_dir / marker).is_file():
            raise RunError(
                f"{run_dir} is {kind}; export its k-fold member runs one by one "
                "(ensembles and combinations are not exported)"
            )
    run = load_run(run_dir)
    if run.task != "classes":
        raise RunError(
            f"{run_dir} predicts the {run.task} head alone, not the 18 classes; only 18-class runs are exported"
        )
    return run


class TorchModel:
    """A run served by PyTorch through the same graph as its export: the ``--run`` twin of ``runtime.OnnxModel``."""

    def __init__(self, run_dir: str | Path, folds: list[int] | None = None, tta: str | None = None, threads: int = 0):
        if threads:
            torch.set_num_threads(threads)
        self.graph, self.metadata = build_graph(run_dir, folds, tta)
        self.source = str(run_dir)

    def predict(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        """The graph's outputs by name for a uint8 batch ``(N, H, W, 3)`` at the cache size."""
        with torch.inference_mode():
            outputs = self.graph(torch.from_numpy(np.ascontiguousarray(pixels)))
        return {name: tensor.numpy() for name, tensor in zip(OUTPUT_NAMES, outputs, strict=False)}


def _weights_digest(run_dir: Path, folds: list[int], tta: str, merge: str) -> str:
    """A short fingerprint of the weights and the TTA set: the same model gets the same id, served from torch or
    ONNX."""
    digest = hashlib.sha256(f"{tta}|{merge}|{folds}".encode())
    for fold in folds:
        with open(fold_dir(run_dir, fold) / MODEL_WEIGHTS_FILE, "rb") as handle:
            while block := handle.read(1 << 24):
                digest.update(block)
    return digest.hexdigest()[:12]
