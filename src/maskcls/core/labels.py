"""The competition's label schema, kept exact: ``class = mask * 6 + gender * 3 + age_group``.

Every other module speaks in these integers; names are for people (plots, tables).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np


class Mask(IntEnum):
    WEAR = 0
    INCORRECT = 1
    NOT_WEAR = 2


class Gender(IntEnum):
    MALE = 0
    FEMALE = 1


class AgeGroup(IntEnum):
    YOUNG = 0
    MIDDLE = 1
    OLD = 2


NUM_CLASSES = 18
HEAD_SIZES = {"mask": 3, "gender": 2, "age": 3}

# Photo file stems of one person folder and the mask state each one shows.
STEM_TO_MASK = {
    "mask1": Mask.WEAR,
    "mask2": Mask.WEAR,
    "mask3": Mask.WEAR,
    "mask4": Mask.WEAR,
    "mask5": Mask.WEAR,
    "incorrect_mask": Mask.INCORRECT,
    "normal": Mask.NOT_WEAR,
}
GENDER_BY_NAME = {"male": Gender.MALE, "female": Gender.FEMALE}
MASK_NAMES = ("wear", "incorrect", "not_wear")
GENDER_NAMES = ("male", "female")


@dataclass(frozen=True)
class AgeThresholds:
    """Age cuts: ``age < middle`` is young, ``age >= old`` is old. Teams moved ``old`` to 58 on purpose."""

    middle: int = 30
    old: int = 60

    def __post_init__(self) -> None:
        if not 0 < self.middle < self.old:
            raise ValueError(f"age thresholds must satisfy 0 < middle < old, got middle={self.middle}, old={self.old}")

    def group(self, age):
        """Age group (0, 1, 2) of one age or an array of ages."""
        ages = np.asarray(age)
        groups = (ages >= self.middle).astype(np.int64) + (ages >= self.old).astype(np.int64)
        return int(groups) if groups.ndim == 0 else groups

    def names(self) -> tuple[str, str, str]:
        return (f"<{self.middle}", f"{self.middle}-{self.old - 1}", f">={self.old}")


def encode(mask, gender, age_group):
    """Class index from the three heads; works on ints and on numpy arrays."""
    if _is_array(mask, gender, age_group):
        return np.asarray(mask) * 6 + np.asarray(gender) * 3 + np.asarray(age_group)
    if not (0 <= int(mask) < 3 and 0 <= int(gender) < 2 and 0 <= int(age_group) < 3):
        raise ValueError(f"no class for mask={mask}, gender={gender}, age_group={age_group}")
    return int(mask) * 6 + int(gender) * 3 + int(age_group)


def decode(label):
    """``(mask, gender, age_group)`` of a class index (int or numpy array)."""
    if isinstance(label, (int, np.integer)):
        label = int(label)
        if not 0 <= label < NUM_CLASSES:
            raise ValueError(f"class index must be in 0..17, got {label}")
        return label // 6, (label // 3) % 2, label % 3
    labels = np.asarray(label)
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise ValueError("class indices must be in 0..17")
    return labels // 6, (labels // 3) % 2, labels % 3


def class_names(thresholds: AgeThresholds = AgeThresholds()) -> list[str]:
    """Readable names of the 18 classes, e.g. ``wear/female/30-59``."""
    ages = thresholds.names()
    return [f"{MASK_NAMES[m]}/{GENDER_NAMES[g]}/{ages[a]}" for m in range(3) for g in range(2) for a in range(3)]


def head_probabilities(probs: np.ndarray) -> dict[str, np.ndarray]:
    """Marginal probabilities of mask, gender and age from 18-class probabilities ``(N, 18)``."""
    joint = np.asarray(probs).reshape(-1, 3, 2, 3)
    return {"mask": joint.sum(axis=(2, 3)), "gender": joint.sum(axis=(1, 3)), "age": joint.sum(axis=(1, 2))}


def joint_from_heads(mask_probs: np.ndarray, gender_probs: np.ndarray, age_probs: np.ndarray) -> np.ndarray:
    """18-class probabilities from independent head probabilities (outer product, in class order)."""
    joint = mask_probs[:, :, None, None] * gender_probs[:, None, :, None] * age_probs[:, None, None, :]
    return joint.reshape(-1, NUM_CLASSES)  # -1, not len(): keeps the batch axis symbolic in an ONNX export


def _is_array(*values) -> bool:
    return any(isinstance(v, (np.ndarray, list, tuple)) for v in values)
