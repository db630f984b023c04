"""Fixed early layers (``model.freeze_stages``): the stem and first stages keep their pretrained weights.

Their backward pass is then skipped, which is where a small network spends most of a CPU step at full
resolution (tf_efficientnet_lite0 at 128 px, stem + first two stages fixed: the training step 2.1-2.2x
as fast on the project's 2-core VM, a whole run's epochs 1.66x). Stages are timm's coarse layer groups
(``group_matcher``): the stem is the first. Batch-norm layers inside them still normalise with batch
statistics and update their running ones.
"""

from __future__ import annotations

from timm.models import group_modules
from torch import nn


def freeze_stages(backbone: nn.Module, count: int) -> None:
    """Stop training the parameters of the first ``count`` layer groups of ``backbone``."""
    if count == 0:
        return
    matcher = getattr(backbone, "group_matcher", None)
    if matcher is None:
        raise ValueError(
            f"model.freeze_stages={count}: the backbone {type(backbone).__name__} does not name its stages "
            "(no group_matcher)"
        )
    groups = group_modules(backbone, matcher(coarse=True))
    ordered = [groups[key] for key in sorted(groups)]
    if count >= len(ordered):
        raise ValueError(
            f"model.freeze_stages={count} would fix the whole backbone: it has {len(ordered)} stages (stem included); "
            f"use at most {len(ordered) - 1}"
        )
    for names in ordered[:count]:
        for name in names:
            for parameter in backbone.get_submodule(name).parameters():
                parameter.requires_grad_(False)
