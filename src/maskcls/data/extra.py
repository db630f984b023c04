"""Extra training photos from outside the training folder, kept out of validation.

An extra source is a CSV (image_id, path, label[, age]: pseudo-labels, ``maskcls import --to extra``)
or a folder in the competition layout (e.g. ``maskcls synth masks`` output). A layout's persons stay
whole persons — all 7 photos join a fold's training part together — under person ids namespaced by
the source (``extra:<source>:<id>``), so they never collide with the training data. Every extra row
keeps its source in ``origin``. Too many easy synthetic photos can swamp the real ones: a cap per
class and a ratio to the real photos limit what is added, taking whole persons in a seeded order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.labels import NUM_CLASSES, AgeThresholds
from .layout import DataError, Problem, read_extra, read_train


@dataclass(frozen=True)
class ExtraSpec:
    """Which extra sources to add and how much of them: ``max_per_class`` photos per class, ``ratio`` x the real
    photos."""

    sources: tuple[str, ...] = ()
    max_per_class: int | None = None
    ratio: float | None = None

    def __post_init__(self):
        if self.max_per_class is not None and self.max_per_class < 1:
            raise ValueError(f"--extra-max-per-class must be at least 1, got {self.max_per_class}")
        if self.ratio is not None and self.ratio <= 0:
            raise ValueError(f"--extra-ratio must be positive, got {self.ratio}")

    @classmethod
    def of(cls, extra) -> ExtraSpec:
        """An ``ExtraSpec`` from None, one path, a list of paths, or an ``ExtraSpec``."""
        if isinstance(extra, ExtraSpec):
            return extra
        if extra is None:
            return cls()
        paths = [extra] if isinstance(extra, (str, Path)) else list(extra)
        return cls(tuple(str(Path(p).resolve()) for p in paths))

    @classmethod
    def from_run(cls, run: dict) -> ExtraSpec:
        """The spec recorded in a run's ``run.json`` (also runs from before multiple sources and limits)."""
        return cls(tuple(cls.of(run.get("extra")).sources), run.get("extra_max_per_class"), run.get("extra_ratio"))

    def to_run(self) -> dict:
        return {"extra": list(self.sources), "extra_max_per_class": self.max_per_class, "extra_ratio": self.ratio}


def read_extras(spec: ExtraSpec, thresholds: AgeThresholds = AgeThresholds()) -> tuple[pd.DataFrame, list[Problem]]:
    """Manifest rows (``source="extra"``, ``origin`` = the source's path) of every source in ``spec``, and their
    problems."""
    frames, problems, names = [], [], set()
    for source in spec.sources:
        path = Path(source)
        if path.is_dir():
            rows, source_problems = read_train(path, thresholds)
            name = path.name if path.name != "train" else path.parent.name
            while name in names:
                name += "_"
            names.add(name)
            rows = rows.assign(
                image_id="extra:" + name + ":" + rows["image_id"],
                person_id="extra:" + name + ":" + rows["person_id"].astype(str),
            )
        elif path.is_file():
            rows, source_problems = read_extra(path)
        else:
            raise DataError(
                f"extra source not found: {source} "
                "(give a CSV of image_id,path,label or a folder in the competition layout)"
            )
        frames.append(rows.assign(source="extra", origin=str(path)))
        problems += source_problems
    if not frames:
        return pd.DataFrame(), problems
    extra = pd.concat(frames, ignore_index=True)
    duplicated = extra["image_id"][extra["image_id"].duplicated()].unique()
    if len(duplicated):
        raise DataError(
            f"{len(duplicated)} extra image id(s) appear in more than one extra source, e.g. '{duplicated[0]}'"
        )
    return extra, problems


def limit_extras(extra: pd.DataFrame, real_images: int, spec: ExtraSpec, seed: int) -> pd.DataFrame:
    """Whole persons of ``extra``, in a seeded random order, while every class stays within ``spec.max_per_class``
    photos and the total within ``spec.ratio`` x ``real_images``; everything when neither limit is set."""
    if extra.empty or (spec.max_per_class is None and spec.ratio is None):
        return extra
    cap = np.inf if spec.max_per_class is None else spec.max_per_class
    budget = np.inf if spec.ratio is None else np.floor(spec.ratio * real_images)
    persons = list(extra.groupby("person_id", sort=True).indices.items())
    counts, total, kept = np.zeros(NUM_CLASSES), 0, []
    for index in np.random.default_rng(seed).permutation(len(persons)):
        rows = persons[index][1]
        added = np.bincount(extra["label"].to_numpy()[rows], minlength=NUM_CLASSES)
        if (counts + added > cap).any() or total + len(rows) > budget:
            continue
        counts += added
        total += len(rows)
        kept.append(rows)
    return extra.iloc[np.sort(np.concatenate(kept))] if kept else extra.iloc[:0]


def describe_extras(extra_all: pd.DataFrame, extra_used: pd.DataFrame, spec: ExtraSpec) -> list[dict]:
    """Per source: persons and photos offered, and how many were used after the limits (for ``run.json``)."""
    report = []
    for source in spec.sources:
        offered = extra_all[extra_all["origin"] == str(Path(source))] if not extra_all.empty else extra_all
        used = extra_used[extra_used["origin"] == str(Path(source))] if not extra_used.empty else extra_used
        report.append(
            {
                "path": source,
                "kind": "layout" if Path(source).is_dir() else "csv",
                "persons": int(offered["person_id"].nunique()) if len(offered) else 0,
                "images": int(len(offered)),
                "used_persons": int(used["person_id"].nunique()) if len(used) else 0,
                "used_images": int(len(used)),
            }
        )
    return report
