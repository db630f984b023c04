"""Test-time augmentation sets, keyed by name, and how their predictions are merged.

A set is a list of views (``data/augment.py: TEST_VIEWS``) of each photo; the model predicts every
view and the results are merged by the mean of the probabilities (``mean_probs``, default) or by
the mean of the logits, turned into probabilities once (``mean_logits``). The same set is used for
out-of-fold predictions during training (``tta.name`` in the recipe) and for test predictions, so
OOF scores and stackers see predictions made the same way.
"""

from __future__ import annotations

TTA_SETS: dict[str, tuple[str, ...]] = {
    "none": ("identity",),
    "flip": ("identity", "hflip"),
    "flip_zoom": ("identity", "hflip", "zoom_in", "zoom_out"),
    "full": ("identity", "hflip", "zoom_in", "zoom_out", "brighter", "darker"),
}
MERGES = ("mean_probs", "mean_logits")


def tta_views(name: str) -> tuple[str, ...]:
    if name not in TTA_SETS:
        raise ValueError(f"unknown TTA set '{name}'; choose one of {sorted(TTA_SETS)}")
    return TTA_SETS[name]
