"""Figures people would rather look at than read: training curves, confusion matrices, class balance, reliability."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from sklearn.metrics import confusion_matrix  # noqa: E402

from .labels import NUM_CLASSES, AgeThresholds, class_names  # noqa: E402


def training_curves(metrics: pd.DataFrame, learning_rates: pd.DataFrame | None = None):
    """Loss and validation macro F1 per epoch, one colour per fold (``metrics.csv`` of a run); with
    ``learning_rates`` (fold, step, lr) a third panel with the learning rate per optimiser step.

    A star marks each fold's best epoch (highest validation macro F1: the checkpoint that was kept).
    """
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    figure, axes = plt.subplots(
        1, 3 if learning_rates is not None else 2, figsize=(17 if learning_rates is not None else 12, 4.2)
    )
    colours = sns.color_palette("tab10")
    fold_handles = []
    for index, (fold, rows) in enumerate(metrics.groupby("fold")):
        colour = colours[index % len(colours)]
        for column, style in (("train_loss", "-"), ("val_loss", "--")):
            if column in rows and rows[column].notna().any():
                axes[0].plot(rows["epoch"], rows[column], style, color=colour)
        if "val_macro_f1" in rows and rows["val_macro_f1"].notna().any():
            axes[1].plot(rows["epoch"], rows["val_macro_f1"], marker="o", markersize=3, color=colour)
            best = rows.loc[rows["val_macro_f1"].idxmax()]
            axes[1].plot(
                best["epoch"],
                best["val_macro_f1"],
                marker="*",
                markersize=14,
                color=colour,
                markeredgecolor="black",
                linestyle="none",
            )
            for axis in axes[:2]:
                axis.axvline(best["epoch"], color=colour, linestyle=":", alpha=0.5)
        fold_handles.append(Line2D([], [], color=colour, label=f"fold {fold}"))
    axes[0].set(title="loss per epoch", xlabel="epoch", ylabel="loss")
    axes[1].set(title="validation macro F1 per epoch", xlabel="epoch", ylabel="validation macro F1", ylim=(0, 1))
    if learning_rates is not None:
        for index, (_fold, rows) in enumerate(learning_rates.groupby("fold")):
            axes[2].plot(rows["step"], rows["lr"], color=colours[index % len(colours)])
        axes[2].set(title="learning rate per optimiser step", xlabel="optimiser step", ylabel="learning rate")
    style_handles = [
        Line2D([], [], color="grey", linestyle="-", label="train loss"),
        Line2D([], [], color="grey", linestyle="--", label="validation loss"),
        Line2D(
            [],
            [],
            color="grey",
            marker="*",
            markersize=12,
            markeredgecolor="black",
            linestyle="none",
            label="best epoch (kept)",
        ),
    ]
    for axis in axes:
        axis.grid(alpha=0.3)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[-1].legend(
        handles=fold_handles + style_handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=9, frameon=False
    )
    figure.tight_layout()
    return figure


def confusion_figure(
    labels: np.ndarray, predicted: np.ndarray, thresholds: AgeThresholds = AgeThresholds(), title: str = ""
):
    """18x18 confusion matrix, rows normalised to recall so rare classes are as visible as common ones,
    with each class's recall (and its number of photos) in a bar beside its row."""
    matrix = confusion_matrix(labels, predicted, labels=range(NUM_CLASSES))
    support = matrix.sum(axis=1)
    recall = matrix / np.maximum(support[:, None], 1)
    figure, (axis, side) = plt.subplots(1, 2, figsize=(13.5, 9), gridspec_kw={"width_ratios": [5, 1.1]})
    names = class_names(thresholds)
    sns.heatmap(
        recall,
        annot=matrix,
        fmt="d",
        cmap="Blues",
        vmin=0,
        vmax=1,
        xticklabels=names,
        yticklabels=names,
        ax=axis,
        cbar_kws={"label": "share of the true class"},
    )
    axis.set(xlabel="predicted", ylabel="true", title=title or "confusion matrix (numbers: photos; colour: recall)")
    axis.tick_params(labelsize=7)
    per_class = np.diag(recall)
    positions = np.arange(NUM_CLASSES) + 0.5
    side.barh(positions, np.where(support > 0, per_class, 0), height=0.7, color=plt.get_cmap("Blues")(0.45))
    for y, value, count in zip(positions, per_class, support, strict=False):
        side.text(0.02, y, f"{value:.2f}  (n={count})" if count else "no photos", va="center", fontsize=7)
    side.set(xlim=(0, 1), ylim=(NUM_CLASSES, 0), title="recall per class", xlabel="recall")
    side.set_yticks([])
    side.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    return figure


def class_balance(counts: np.ndarray, thresholds: AgeThresholds = AgeThresholds(), title: str = "photos per class"):
    figure, axis = plt.subplots(figsize=(11, 4))
    names = class_names(thresholds)
    bars = axis.bar(range(NUM_CLASSES), counts, color=sns.color_palette("tab20", NUM_CLASSES))
    axis.bar_label(bars, fontsize=7)
    axis.set_xticks(range(NUM_CLASSES), [f"{i}\n{n}" for i, n in enumerate(names)], rotation=90, fontsize=7)
    axis.set(title=title, ylabel="photos")
    figure.tight_layout()
    return figure


def confusion_pair_figure(matrix: np.ndarray, names: list[str], title: str, size: tuple[float, float] = (18, 7.5)):
    """A confusion matrix twice: photo counts, and rows normalised to recall (so rare classes read as well)."""
    matrix = np.asarray(matrix)
    recall = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    figure, axes = plt.subplots(1, 2, figsize=size)
    small = len(names) > 6
    options = dict(xticklabels=names, yticklabels=names, cbar=False, annot_kws={"fontsize": 6 if small else 9})
    sns.heatmap(matrix, annot=True, fmt="d", cmap="Blues", ax=axes[0], **options)
    sns.heatmap(
        recall, annot=np.round(recall * 100).astype(int), fmt="d", cmap="Blues", vmin=0, vmax=1, ax=axes[1], **options
    )
    axes[0].set(xlabel="predicted", ylabel="true", title=f"{title}: photos")
    axes[1].set(xlabel="predicted", ylabel="true", title=f"{title}: % of the true class (recall)")
    for axis in axes:
        axis.tick_params(labelsize=7 if small else 9)
    figure.tight_layout()
    return figure


def head_confusions_figure(items: list[tuple[str, np.ndarray, list[str]]]):
    """Small confusion matrices side by side (one column per (title, matrix, names)): counts above, recall below."""
    figure, axes = plt.subplots(2, len(items), figsize=(4.2 * len(items), 6.4), squeeze=False)
    for column, (title, matrix, names) in enumerate(items):
        matrix = np.asarray(matrix)
        recall = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        options = dict(xticklabels=names, yticklabels=names, cbar=False, annot_kws={"fontsize": 9})
        sns.heatmap(matrix, annot=True, fmt="d", cmap="Blues", ax=axes[0, column], **options)
        sns.heatmap(
            recall,
            annot=np.round(recall * 100).astype(int),
            fmt="d",
            cmap="Blues",
            vmin=0,
            vmax=1,
            ax=axes[1, column],
            **options,
        )
        axes[0, column].set(title=f"{title}: photos", ylabel="true")
        axes[1, column].set(title=f"{title}: % of the true value", xlabel="predicted", ylabel="true")
    figure.tight_layout()
    return figure


def photo_grid(rows: list[tuple[str, list[np.ndarray], list[str]]], cell: float = 1.5):
    """Rows of photos with a caption under each; each row is (title, images, captions)."""
    columns = max(1, max(len(images) for _, images, _ in rows))
    figure, axes = plt.subplots(len(rows), columns, figsize=(columns * cell, len(rows) * (cell * 1.45)), squeeze=False)
    for row, (title, images, captions) in enumerate(rows):
        for column in range(columns):
            axis = axes[row, column]
            axis.axis("off")
            if column < len(images):
                axis.imshow(images[column])
                axis.set_title(captions[column], fontsize=6.5)
        axes[row, 0].text(
            -0.08, 0.5, title, transform=axes[row, 0].transAxes, rotation=90, ha="right", va="center", fontsize=8
        )
    figure.tight_layout()
    return figure
