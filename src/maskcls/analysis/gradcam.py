"""Grad-CAM (the ``grad-cam`` package, pytorch-grad-cam) for any maskcls network: where does each head look?

The target is ``log p(head = value)`` from the network's own probabilities: for an 18-class head the head's
marginal (log-sum-exp of its six classes' log-probabilities), for the three-head model that output's own
log-softmax. The target layer is found automatically: for a CNN the last feature map before pooling; for a vision
transformer (timm's ViT / DeiT / BEiT, or an ``hf:`` model) the first norm of the last block, whose tokens are
reshaped back to the patch grid (prefix tokens such as CLS dropped) by ``TokenGrid``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.config import AugmentConfig, DataConfig
from ..core.labels import HEAD_SIZES, NUM_CLASSES
from ..data.augment import TEST_VIEWS, BatchPreprocess, to_float_nchw
from ..data.framing import Framer, Framing
from ..models.factory import MaskNet
from ..models.heads import split_blocks

TARGET_HEADS = ("mask", "gender", "age", "class")
_AXES = {"mask": (1, 2), "gender": (0, 2), "age": (0, 1)}  # axes of the (3, 2, 3) class grid to sum out


def class_log_probs(model: MaskNet, logits: torch.Tensor) -> torch.Tensor:
    """``(B, 18)`` log-probabilities of the classes, computed stably for every 18-class head."""
    blocks = split_blocks(model.head, logits)
    if set(blocks) == set(HEAD_SIZES):
        mask, gender, age = (F.log_softmax(blocks[name].float(), dim=1) for name in HEAD_SIZES)
        return (mask[:, :, None, None] + gender[:, None, :, None] + age[:, None, None, :]).reshape(
            len(logits), NUM_CLASSES
        )
    if model.task != "classes":
        raise ValueError(f"Grad-CAM targets need an 18-class model, not a '{model.task}' head")
    return F.log_softmax(logits.float(), dim=1)


class HeadTarget:
    """A pytorch-grad-cam target: ``log p(head = value)`` of one photo's logits."""

    def __init__(self, model: MaskNet, head: str, value: int):
        if head not in TARGET_HEADS:
            raise ValueError(f"unknown Grad-CAM head '{head}'; choose one of {', '.join(TARGET_HEADS)}")
        self.model, self.head, self.value = model, head, int(value)

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        log_probs = class_log_probs(self.model, logits.reshape(1, -1))[0]
        if self.head == "class":
            return log_probs[self.value]
        return torch.logsumexp(log_probs.reshape(3, 2, 3), dim=_AXES[self.head])[self.value]


@dataclass
class TokenGrid:
    """pytorch-grad-cam ``reshape_transform`` for transformer tokens ``(B, T, C)`` -> ``(B, C, h, w)``.

    The patch grid follows from the token count and the input size: the smallest number of prefix tokens (CLS,
    distillation, registers) for which the rest form an ``h x w`` grid with the input's aspect ratio.
    """

    input_hw: tuple[int, int]

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        prefix, (height, width) = self.grid(tokens.shape[1])
        patches = tokens[:, prefix:, :]
        return patches.reshape(len(tokens), height, width, tokens.shape[2]).permute(0, 3, 1, 2)

    def grid(self, count: int) -> tuple[int, tuple[int, int]]:
        image_h, image_w = self.input_hw
        for prefix in range(0, min(count, 17)):
            patches = count - prefix
            if patches <= prefix:
                break
            stride = math.sqrt(image_h * image_w / patches)
            height, width = round(image_h / stride), round(image_w / stride)
            if height * width == patches:
                return prefix, (height, width)
        raise ValueError(f"cannot lay {count} tokens out as a patch grid of a {image_h}x{image_w} input")


def find_target_layer(model: MaskNet, input_hw: tuple[int, int]) -> tuple[nn.Module, TokenGrid | None]:
    """The layer to explain and, for transformers, the token reshape. Decided by one forward pass: if the last
    spatial output before pooling is a feature map ``(B, C, H, W)`` the network is a CNN, if it is tokens
    ``(B, T, C)`` a transformer."""
    outputs: list[tuple[nn.Module, int]] = []

    def record(module, _inputs, output):
        if isinstance(output, torch.Tensor) and (
            output.dim() == 3 or (output.dim() == 4 and output.shape[-1] * output.shape[-2] > 1)
        ):
            outputs.append((module, output.dim()))

    hooks = [m.register_forward_hook(record) for m in model.backbone.modules() if m is not model.backbone]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, *input_hw))
    finally:
        for hook in hooks:
            hook.remove()
    if not outputs:
        raise ValueError(f"Grad-CAM: found no feature map or token sequence in {type(model.backbone).__name__}")
    last_module, last_dim = outputs[-1]
    if last_dim == 4:
        return last_module, None
    token_modules = {id(module) for module, dim in outputs if dim == 3}
    blocks = [
        m
        for m in model.backbone.modules()
        if isinstance(m, (nn.ModuleList, nn.Sequential)) and len(m) and all(id(b) in token_modules for b in m)
    ]
    if not blocks:
        raise ValueError(
            f"Grad-CAM: {type(model.backbone).__name__} outputs tokens but has no list of transformer blocks"
        )
    last_block = max(blocks, key=len)[-1]
    norm = next((m for m in last_block.modules() if isinstance(m, nn.LayerNorm)), last_block)
    return norm, TokenGrid(input_hw)


def load_inputs(paths: Sequence[str], data_cfg: DataConfig) -> tuple[torch.Tensor, np.ndarray]:
    """Network inputs ``(N, 3, h, w)`` for ``paths``, decoded and cropped exactly as prediction does (cache size,
    framing, centre view, normalisation), and the same crops as float RGB ``(N, h, w, 3)`` in [0, 1] to draw on."""
    framer = Framer(Framing.from_config(data_cfg))
    pixels = torch.from_numpy(np.stack([framer.read(path, data_cfg.cache_hw)[0] for path in paths]))
    inputs = BatchPreprocess(data_cfg, AugmentConfig())(pixels, train=False)
    shown = TEST_VIEWS["identity"](to_float_nchw(pixels), data_cfg.size_hw).permute(0, 2, 3, 1).numpy()
    return inputs.contiguous(), shown


def grad_cam(
    models: Sequence[MaskNet], inputs: torch.Tensor, heads: Sequence[str], values: Sequence[int], batch_size: int = 16
) -> np.ndarray:
    """Grad-CAM maps ``(N, h, w)`` in [0, 1] of ``inputs`` for targets ``log p(heads[i] = values[i])``, averaged over
    ``models`` (one model: the fold model that did not train on the photo; several: e.g. all folds of a run)."""
    from pytorch_grad_cam import GradCAM

    maps = np.zeros((len(inputs), *inputs.shape[-2:]), dtype=np.float32)
    for model in models:
        model = model.eval().float()
        layer, reshape = find_target_layer(model, tuple(inputs.shape[-2:]))
        cam = GradCAM(
            model=model, target_layers=[layer], reshape_transform=reshape
        )  # not as a context manager: it would swallow IndexErrors
        try:
            for start in range(0, len(inputs), batch_size):
                rows = slice(start, start + batch_size)
                targets = [
                    HeadTarget(model, head, value) for head, value in zip(heads[rows], values[rows], strict=False)
                ]
                maps[rows] += cam(input_tensor=inputs[rows], targets=targets)
        finally:
            cam.activations_and_grads.release()
    return maps / max(len(models), 1)


def overlay(images: np.ndarray, maps: np.ndarray, weight: float = 0.5) -> np.ndarray:
    """uint8 RGB overlays ``(N, h, w, 3)``: the photo blended with the map in the jet colour scale."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    return np.stack(
        [
            show_cam_on_image(image.astype(np.float32), heat, use_rgb=True, image_weight=weight)
            for image, heat in zip(images, maps, strict=False)
        ]
    )
