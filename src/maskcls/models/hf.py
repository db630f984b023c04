"""Hugging Face vision backbones (ViT, DeiT, BEiT, ... any ``AutoModel`` image model), used like timm backbones.

A model name ``hf:<local folder or hub id>`` (``hf:/models/deit-small``, ``hf:facebook/deit-tiny-patch16-224``)
selects one. ``model.pretrained`` keeps its meaning: ``hub`` loads the weights with ``from_pretrained`` (a local
folder works offline), ``offline`` reads only a local folder or the Hugging Face cache, ``none`` is a random init
from the folder's config, and a path to a ``.safetensors`` / ``.pth`` file loads that state dict (read safely, via
:mod:`.pretrained`) into a model built from the config. A trained model is rebuilt from :meth:`HFBackbone.hf_config`,
stored in ``model.json``, so it needs neither the network nor the original folder.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

import torch
import transformers
from timm.models._manipulate import MATCH_PREV_GROUP
from torch import nn
from transformers import MODEL_MAPPING, AutoConfig, AutoModel, PretrainedConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.utils import cached_file

from ..core.config import NORMALIZE_PRESETS
from .pretrained import PretrainedWeightsError, read_state_dict

HF_PREFIX = "hf:"

# Their ``pooler`` is BERT's dense + tanh on the CLS token, which no image classifier of theirs trains
# (``ViTForImageClassification`` and ``DeiTForImageClassification`` read the final-normed CLS token), so the
# pooler is left out and the CLS token is the feature. Every other model type uses its own ``pooler_output``
# (BEiT: mean of the patch tokens + layernorm, or the CLS token when ``use_mean_pooling`` is off, exactly what
# ``BeitForImageClassification`` feeds its classifier; Swin / ConvNeXt: average pooling; DINOv2: CLS token),
# and a model without one is mean-pooled over its tokens (or over its feature map).
CLS_TOKEN_MODEL_TYPES = frozenset({"vit", "deit"})

# Parameters that are positions or learned tokens, not weights: excluded from weight decay, as timm does for ViTs.
NO_WEIGHT_DECAY_NAMES = frozenset(
    {"cls_token", "distillation_token", "mask_token", "position_embeddings", "relative_position_bias_table"}
)

# A checkpoint that leaves more than this share of the backbone's tensors at random init is for another model.
MAX_MISSING_SHARE = 0.1


def is_hf_name(name: str) -> bool:
    return name.startswith(HF_PREFIX)


def hf_source(name: str) -> str:
    """The local folder or hub id behind an ``hf:`` model name."""
    if not is_hf_name(name) or not name[len(HF_PREFIX) :].strip():
        raise ValueError(f"model.name '{name}': a Hugging Face backbone is named 'hf:<local folder or hub id>'")
    source = name[len(HF_PREFIX) :].strip()
    if source.startswith(("/", ".", "~")) or Path(source).expanduser().exists():
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise PretrainedWeightsError(
                f"model.name '{name}': {folder} is not a folder; point it at a folder written by save_pretrained"
            )
        return str(folder)
    return source


class HFBackbone(nn.Module):
    """A transformers image model whose forward gives pooled features ``(B, num_features)``, like a timm backbone."""

    def __init__(self, model: transformers.PreTrainedModel):
        super().__init__()
        if getattr(model, "main_input_name", "pixel_values") != "pixel_values":
            raise ValueError(
                f"{type(model).__name__} takes '{model.main_input_name}', not images: use a vision model "
                "(ViT, DeiT, BEiT, Swin, ConvNeXt, DINOv2, ...)"
            )
        # Our forward never masks patches, so a mask token would get no gradient (and trip up DDP): freeze it.
        for name, parameter in model.named_parameters():
            if name.rsplit(".", 1)[-1] == "mask_token":
                parameter.requires_grad_(False)
        self.model = model
        self.num_features = _feature_size(model.config)
        self.pooling = "cls" if model.config.model_type in CLS_TOKEN_MODEL_TYPES else "pooler"
        # Position embeddings are sized for config.image_size; interpolating them lets any input size through.
        self.interpolates_positions = "interpolate_pos_encoding" in inspect.signature(model.forward).parameters

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        extra = {"interpolate_pos_encoding": True} if self.interpolates_positions else {}
        output = self.model(pixel_values=images, **extra)
        if self.pooling == "cls":
            return output.last_hidden_state[:, 0]
        if getattr(output, "pooler_output", None) is not None:
            return output.pooler_output.flatten(1)
        hidden = output.last_hidden_state
        return hidden.mean(1) if hidden.dim() == 3 else hidden.flatten(2).mean(2)

    def hf_config(self) -> dict[str, Any]:
        """The model's config as plain JSON (for ``model.json``); :func:`hf_backbone_from_config` rebuilds from it."""
        config = json.loads(self.model.config.to_json_string(use_diff=False))
        return {**config, "model_type": self.model.config.model_type}

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Parameter groups in timm's format, for layer-wise lr decay (``create_optimizer_v2(layer_decay=...)``).

        ``stem``: everything registered before the first block (embeddings, BEiT's shared relative position bias);
        ``blocks``: one group per transformer block, the final norm / pooler joining the last one (timm's
        ``MATCH_PREV_GROUP``, as in timm's ViT). Names are relative to this module. ``coarse`` is accepted for
        timm's interface: each block is already one group.
        """
        blocks = self._block_list_name()
        names = [name for name, _ in self.named_parameters()]
        first_block = next(i for i, name in enumerate(names) if name.startswith(blocks + "."))
        stem = "|".join(re.escape(name) for name in names[:first_block])
        return {
            "stem": rf"^(?:{stem})$" if stem else None,
            "blocks": [(rf"^{re.escape(blocks)}\.(\d+)\.", None), (r"^model\.", MATCH_PREV_GROUP)],
        }

    def no_weight_decay(self) -> set[str]:
        """Learned tokens and position tables: decaying them towards zero only hurts (timm excludes them too)."""
        return {name for name, _ in self.named_parameters() if name.rsplit(".", 1)[-1] in NO_WEIGHT_DECAY_NAMES}

    def _block_list_name(self) -> str:
        depth = getattr(self.model.config, "num_hidden_layers", None)
        for name, module in self.named_modules():
            if isinstance(module, nn.ModuleList) and depth and len(module) == depth:
                return name
        raise ValueError(
            f"layer-wise lr decay: found no list of {depth} blocks in {type(self.model).__name__}; "
            "train it without layer decay"
        )


def check_hf_backbone(name: str, pretrained: str) -> None:
    """Refuse a bad ``hf:`` name before any work: a malformed name, or a local folder without a usable config.

    A hub id is only checked for its shape here; it is fetched (or found in the cache) when the model is built.
    """
    source = hf_source(name)
    if Path(source).is_dir():
        _load_config(source, local_only=True)


def create_hf_backbone(name: str, pretrained: str, drop_path_rate: float = 0.0) -> HFBackbone:
    """An ``hf:`` backbone with the weights ``pretrained`` asks for (``hub`` | ``offline`` | ``none`` | a file).

    ``drop_path_rate`` (stochastic depth) goes into the config, so :meth:`HFBackbone.hf_config` keeps it.
    """
    source = hf_source(name)
    weights_file = None if pretrained in ("hub", "offline", "none") else Path(pretrained).expanduser()
    if weights_file is not None and not weights_file.is_file():
        raise PretrainedWeightsError(
            f"model.pretrained: weights file not found: {weights_file}. " + _how_to_proceed(source)
        )
    config = _load_config(source, local_only=pretrained == "offline")
    if drop_path_rate:
        if not hasattr(config, "drop_path_rate"):
            raise ValueError(
                f"model.drop_path_rate: transformers' {config.model_type} has no stochastic depth; set it to 0"
            )
        config.drop_path_rate = drop_path_rate
    if pretrained == "none":
        return HFBackbone(_model_from_config(config))
    if weights_file is None:
        return HFBackbone(_load_pretrained(source, config, local_only=pretrained == "offline"))
    return HFBackbone(_load_weights_file(source, config, weights_file))


def hf_backbone_from_config(config: dict[str, Any]) -> HFBackbone:
    """A randomly initialised backbone from a stored :meth:`HFBackbone.hf_config`: no network, no folder."""
    model_type = config.get("model_type")
    if model_type not in CONFIG_MAPPING:
        raise ValueError(
            f"model type '{model_type}' is unknown to transformers {transformers.__version__} "
            f"(the model was saved with transformers {config.get('transformers_version', '?')}): install that version"
        )
    return HFBackbone(_model_from_config(CONFIG_MAPPING[model_type].from_dict(config)))


def hf_normalization(
    folder_or_config: str | Path | dict[str, Any],
) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """``(mean, std)`` the checkpoint's images were normalised with, from its preprocessor config.

    Feed the model the same: ``data.normalize`` must name a preset with these values (``hf_normalize_preset``
    finds it; google's ViT and microsoft's BEiT use 0.5 / 0.5 = ``inception``, facebook's DeiT ``imagenet``).
    Takes a folder, an ``hf:`` name, a hub id (HF cache or hub) or a preprocessor config dict; ``None`` when no
    preprocessor config can be found.
    """
    processor = folder_or_config if isinstance(folder_or_config, dict) else _read_preprocessor_config(folder_or_config)
    if processor is None or "image_mean" not in processor or "image_std" not in processor:
        return None
    if processor.get("do_normalize", True) is False:
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    return _per_channel(processor["image_mean"]), _per_channel(processor["image_std"])


def hf_normalize_preset(folder_or_config: str | Path | dict[str, Any]) -> str | None:
    """The ``data.normalize`` preset matching :func:`hf_normalization`, or ``None`` when none matches."""
    normalization = hf_normalization(folder_or_config)
    if normalization is None:
        return None
    for preset, (mean, std) in NORMALIZE_PRESETS.items():
        if all(abs(a - b) < 1e-3 for a, b in zip((*mean, *std), (*normalization[0], *normalization[1]), strict=False)):
            return preset
    return None


def _how_to_proceed(source: str) -> str:
    return (
        "Options: point model.name at a local folder written by save_pretrained (hf:/path/to/folder; e.g. run "
        f"AutoModel.from_pretrained('{source}').save_pretrained('/path/to/folder') where there is a network), "
        "model.pretrained=offline to read the Hugging Face cache, model.pretrained=<weights .safetensors/.pth file>, "
        "or model.pretrained=none to train from scratch (the last two still need the config)."
    )


def _load_config(source: str, local_only: bool) -> PretrainedConfig:
    try:
        return AutoConfig.from_pretrained(source, local_files_only=local_only)
    except Exception as err:  # network, unknown repo, unknown model type, ...: all end the same way for a user
        raise PretrainedWeightsError(
            f"could not get the Hugging Face config of 'hf:{source}' ({type(err).__name__}: {err}). "
            + _how_to_proceed(source)
        ) from None


def _model_kwargs(config: PretrainedConfig) -> dict[str, Any]:
    # float32 whatever the checkpoint's dtype (transformers 5 loads dtype="auto"); mixed precision is the trainer's job.
    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if config.model_type in CLS_TOKEN_MODEL_TYPES:
        kwargs["add_pooling_layer"] = False  # an unused pooler would also break DDP (parameters without grads)
    return kwargs


def _model_from_config(config: PretrainedConfig) -> transformers.PreTrainedModel:
    return AutoModel.from_config(config, **_model_kwargs(config))


def _model_class(config: PretrainedConfig) -> type:
    if type(config) not in MODEL_MAPPING:
        raise ValueError(
            f"transformers {transformers.__version__} has no AutoModel for model type '{config.model_type}'"
        )
    return MODEL_MAPPING[type(config)]


def _load_pretrained(source: str, config: PretrainedConfig, local_only: bool) -> transformers.PreTrainedModel:
    try:
        model, info = _model_class(config).from_pretrained(
            source, config=config, local_files_only=local_only, output_loading_info=True, **_model_kwargs(config)
        )
    except Exception as err:
        raise PretrainedWeightsError(
            f"could not get pretrained weights for 'hf:{source}' ({type(err).__name__}: {err}). "
            + _how_to_proceed(source)
        ) from None
    _check_fit(model, info["missing_keys"], f"hf:{source}")
    return model


def _load_weights_file(source: str, config: PretrainedConfig, path: Path) -> transformers.PreTrainedModel:
    """Through ``from_pretrained``, so task heads, ``vit.``-style prefixes and older key names are all handled."""
    state = read_state_dict(path)
    try:
        model, info = _model_class(config).from_pretrained(
            None, config=config, state_dict=state, output_loading_info=True, **_model_kwargs(config)
        )
    except Exception as err:
        raise PretrainedWeightsError(f"{path} does not load into 'hf:{source}' ({type(err).__name__}: {err})") from None
    _check_fit(model, info["missing_keys"], str(path))
    return model


def _check_fit(model: nn.Module, missing: set[str], origin: str) -> None:
    total = len(model.state_dict())
    if len(missing) > MAX_MISSING_SHARE * total:
        raise PretrainedWeightsError(
            f"{origin} does not fit this architecture: {len(missing)} of {total} tensors are missing from it "
            f"(e.g. {sorted(missing)[:3]}); is it for another model?"
        )


def _feature_size(config: PretrainedConfig) -> int:
    size = getattr(config, "hidden_size", None) or (getattr(config, "hidden_sizes", None) or [None])[-1]
    if not size:
        raise ValueError(f"cannot tell the feature size of model type '{config.model_type}' from its config")
    return int(size)


def _read_preprocessor_config(source: str | Path) -> dict[str, Any] | None:
    source = str(source).removeprefix(HF_PREFIX)
    folder = Path(source).expanduser()
    if folder.is_dir():
        path = folder / "preprocessor_config.json"
    else:
        try:
            found = cached_file(
                source,
                "preprocessor_config.json",
                _raise_exceptions_for_missing_entries=False,
                _raise_exceptions_for_connection_errors=False,
            )
        except (OSError, ValueError):  # not a valid hub id, no access, ...: nothing to read
            found = None
        path = Path(found) if found else None
    if path is None or not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _per_channel(value: float | list[float]) -> tuple[float, ...]:
    values = [value] * 3 if isinstance(value, (int, float)) else list(value)
    return tuple(float(v) for v in values)
