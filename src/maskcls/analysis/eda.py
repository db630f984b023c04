"""Exploratory data analysis of a training folder: an HTML page with PNG plots.

Class balance, mask / gender / age distributions, the age histogram with the group thresholds,
persons by race, photo size and brightness, and a sample grid per class. Problems found in the
layout are listed too: the report is meant to be opened before the first training run.
"""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image

from ..data.images import ImageError, read_resized
from ..data.label_fixes import read_train_with_fixes
from ..io import save_figure, write_text
from ..labels import GENDER_NAMES, MASK_NAMES, NUM_CLASSES, AgeThresholds, class_names
from ..progress import track
from .plots import class_balance


def eda_report(
    train_dir: str | Path,
    out_dir: str | Path,
    thresholds: AgeThresholds = AgeThresholds(),
    samples_per_class: int = 6,
    max_stat_images: int = 1500,
    seed: int = 0,
    progress: bool = True,
    label_fixes: str | Path | None = None,
) -> Path:
    """Write ``out_dir/index.html`` and its PNG plots; returns the HTML path. ``label_fixes``: a reviewed fixes
    CSV applied on top of ``train.csv`` (never modified), named on the page."""
    out_dir = Path(out_dir)
    manifest, problems, fixes = read_train_with_fixes(train_dir, thresholds, label_fixes)
    out_dir.mkdir(parents=True, exist_ok=True)
    if manifest.empty:
        raise ValueError(f"no photos found in {train_dir} (problems: {len(problems)})")
    persons = manifest.drop_duplicates("person_id")
    rng = np.random.default_rng(seed)
    stats = _photo_stats(manifest.sample(min(len(manifest), max_stat_images), random_state=seed), progress)

    figures = {
        "class_counts.png": ("Photos per class", class_balance(np.bincount(manifest["label"], minlength=NUM_CLASSES), thresholds)),
        "heads.png": ("Mask, gender and age group", _heads_figure(manifest, thresholds)),
        "age_histogram.png": ("Age of persons, with the group thresholds", _age_figure(persons, thresholds)),
        "race.png": ("Persons by race and gender", _race_figure(persons)),
        "image_stats.png": (f"Photo size and brightness ({len(stats)} photos sampled)", _stats_figure(stats)),
        "samples.png": ("Sample photos per class", _sample_grid(manifest, thresholds, samples_per_class, rng)),
    }
    for name, (_, figure) in figures.items():
        save_figure(out_dir / name, figure)

    counts = manifest["label"].value_counts().reindex(range(NUM_CLASSES), fill_value=0)
    facts = {
        "persons": len(persons),
        "photos": len(manifest),
        "rarest class": f"{class_names(thresholds)[counts.idxmin()]} ({counts.min()} photos)",
        "largest / smallest class": f"{counts.max() / max(counts.min(), 1):.1f}x",
        "problems found": len(problems),
    }
    if fixes is not None:
        facts["label fixes"] = f"{fixes.path} ({fixes.rows} rows, sha256 {fixes.sha256[:12]})"
    page = _html_page(Path(train_dir), facts, figures, problems)
    return write_text(out_dir / "index.html", page)


def _photo_stats(sample: pd.DataFrame, progress: bool) -> pd.DataFrame:
    rows = []
    for path, mask in track(list(zip(sample["path"], sample["mask"])), "photo statistics", enabled=progress):
        try:
            with Image.open(path) as image:
                width, height = image.size
            brightness = float(read_resized(path, (32, 32)).mean())
        except (OSError, ImageError):
            continue
        rows.append({"width": width, "height": height, "brightness": brightness, "mask": MASK_NAMES[mask]})
    return pd.DataFrame(rows, columns=["width", "height", "brightness", "mask"])


def _heads_figure(manifest: pd.DataFrame, thresholds: AgeThresholds):
    figure, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for axis, (column, names) in zip(axes, (("mask", MASK_NAMES), ("gender", GENDER_NAMES), ("age_group", thresholds.names()))):
        counts = manifest[column].value_counts().reindex(range(len(names)), fill_value=0)
        bars = axis.bar(names, counts.to_numpy(), color=["#4c72b0", "#dd8452", "#55a868"][: len(names)])
        axis.bar_label(bars, fontsize=8)
        axis.set(title=column.replace("_", " "), ylabel="photos")
    figure.tight_layout()
    return figure


def _age_figure(persons: pd.DataFrame, thresholds: AgeThresholds):
    figure, axis = plt.subplots(figsize=(9, 3.5))
    axis.hist(persons["age"], bins=range(int(persons["age"].min()), int(persons["age"].max()) + 2), color="#4c72b0")
    for cut in (thresholds.middle, thresholds.old):
        axis.axvline(cut - 0.5, color="crimson", linestyle="--")
        axis.text(cut - 0.3, axis.get_ylim()[1] * 0.9, f"{cut}", color="crimson")
    axis.set(xlabel="age", ylabel="persons", title="age of persons (dashed: group thresholds)")
    figure.tight_layout()
    return figure


def _race_figure(persons: pd.DataFrame):
    table = persons.assign(gender=persons["gender"].map(dict(enumerate(GENDER_NAMES)))).pivot_table(index="race", columns="gender", values="person_id", aggfunc="count", fill_value=0)
    figure, axis = plt.subplots(figsize=(7, 3.5))
    table.plot.bar(ax=axis, rot=0)
    axis.set(ylabel="persons", title="persons by race and gender")
    figure.tight_layout()
    return figure


def _stats_figure(stats: pd.DataFrame):
    figure, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    if not stats.empty:
        sizes = stats.groupby(["width", "height"]).size().sort_values(ascending=False).head(10)
        axes[0].barh([f"{w}x{h}" for w, h in sizes.index], sizes.to_numpy(), color="#4c72b0")
        for mask, rows in stats.groupby("mask"):
            axes[1].hist(rows["brightness"], bins=30, alpha=0.5, label=mask)
        axes[1].legend()
    axes[0].set(title="most common photo sizes (w x h)", xlabel="photos")
    axes[1].set(title="mean brightness (0-255) by mask state", xlabel="brightness", ylabel="photos")
    figure.tight_layout()
    return figure


def _sample_grid(manifest: pd.DataFrame, thresholds: AgeThresholds, per_class: int, rng: np.random.Generator):
    names = class_names(thresholds)
    figure, axes = plt.subplots(NUM_CLASSES, per_class, figsize=(per_class * 1.1, NUM_CLASSES * 1.4))
    for label in range(NUM_CLASSES):
        paths = manifest.loc[manifest["label"] == label, "path"].to_numpy()
        chosen = rng.choice(paths, size=min(per_class, len(paths)), replace=False) if len(paths) else []
        for column in range(per_class):
            axis = axes[label, column]
            axis.axis("off")
            if column < len(chosen):
                try:
                    axis.imshow(read_resized(chosen[column], (96, 72)))
                except ImageError:
                    axis.text(0.5, 0.5, "unreadable", ha="center", fontsize=6)
        axes[label, 0].set_title(f"{label}: {names[label]}", fontsize=7, loc="left")
    figure.tight_layout()
    return figure


def _html_page(train_dir: Path, facts: dict, figures: dict, problems: list) -> str:
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts.items())
    sections = "".join(f"<h2>{html.escape(title)}</h2><img src='{name}' alt='{html.escape(title)}'>" for name, (title, _) in figures.items())
    problem_items = "".join(f"<li><code>{html.escape(p.file)}</code>: {html.escape(p.reason)}</li>" for p in problems[:200])
    more = f"<p>... and {len(problems) - 200} more</p>" if len(problems) > 200 else ""
    problem_block = f"<h2>Problems found ({len(problems)})</h2><ul>{problem_items}</ul>{more}" if problems else "<h2>Problems found</h2><p>none</p>"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>maskcls EDA: {html.escape(str(train_dir))}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}} img{{max-width:100%;border:1px solid #ddd}}
table{{border-collapse:collapse}} th,td{{padding:4px 12px;border-bottom:1px solid #eee;text-align:left}}</style></head>
<body><h1>Data report: {html.escape(str(train_dir))}</h1><table>{rows}</table>{problem_block}{sections}</body></html>
"""
