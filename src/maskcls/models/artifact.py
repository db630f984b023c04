"""A trained model on disk: ``model.safetensors`` (weights only) + ``model.json`` (how to rebuild and feed it).

The JSON holds the architecture, head, input size, normalisation (and face crop, when trained with
it) and label schema, so a model folder is usable on its own, without the recipe that trained it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from ..core.artifacts import MODEL_META_FILE, MODEL_WEIGHTS_FILE
from ..core.config import Config, DataConfig, LabelsConfig, ModelConfig
from ..core.io import atomic_path, write_json
from .factory import MaskNet, create_model

FORMAT = "maskcls-model/1"
WEIGHTS_FILE = MODEL_WEIGHTS_FILE
META_FILE = MODEL_META_FILE
FACE_CROP_KEYS = (
    "face_crop",
    "face_margin",
    "face_detector",
    "face_upsample",
    "face_detect_size",
    "face_pad",
)  # prediction crops as training did


class ModelFileError(RuntimeError):
    """A model folder that is missing files or does not match itself."""


def save_model(directory: str | Path, model: MaskNet, cfg: Config, extra: dict[str, Any] | None = None) -> None:
    directory = Path(directory)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp))
    meta = {
        "format": FORMAT,
        "model": cfg.model.model_dump(mode="json"),
        "data": cfg.data.model_dump(
            mode="json", include={"image_size", "resize_margin", "center_crop", "normalize", *FACE_CROP_KEYS}
        ),
        "tta": cfg.tta.model_dump(mode="json"),
        "task": model.task,
        "labels": cfg.labels.model_dump(mode="json"),
        "num_classes": 18,
        **({"hf_config": model.backbone.hf_config()} if hasattr(model.backbone, "hf_config") else {}),
        **(extra or {}),
    }
    write_json(directory / META_FILE, meta)


def load_model(directory: str | Path) -> tuple[MaskNet, dict[str, Any]]:
    """Rebuild the network from ``model.json`` and load ``model.safetensors`` strictly."""
    directory = Path(directory)
    meta_path, weights_path = directory / META_FILE, directory / WEIGHTS_FILE
    for path in (meta_path, weights_path):
        if not path.is_file():
            raise ModelFileError(f"{path} is missing: not a trained model folder (was training interrupted?)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ModelFileError(f"{meta_path} is not valid JSON ({err})") from None
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{meta_path}: unknown format {meta.get('format')!r}, expected {FORMAT!r}")
    labels = LabelsConfig.model_validate(meta["labels"])
    backbone = None
    if "hf_config" in meta:  # rebuilt from the stored config: needs neither the original folder nor the network
        from .hf import hf_backbone_from_config

        backbone = hf_backbone_from_config(meta["hf_config"])
    model = create_model(
        ModelConfig.model_validate(meta["model"]), pretrained="none", thresholds=labels.thresholds, backbone=backbone
    )
    try:
        state = load_file(str(weights_path))
    except Exception as err:
        raise ModelFileError(f"{weights_path} is not a readable safetensors file ({err})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ModelFileError(f"{weights_path} does not match the architecture in {meta_path}: {err}") from None
    return model.eval(), meta


def data_config_of(meta: dict[str, Any]) -> DataConfig:
    return DataConfig.model_validate(meta["data"])


def labels_config_of(meta: dict[str, Any]) -> LabelsConfig:
    return LabelsConfig.model_validate(meta["labels"])
