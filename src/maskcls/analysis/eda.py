"""Exploratory data analysis of a training folder (and an eval folder): one HTML page a data scientist keeps open.

A written summary first (rarest classes, imbalance, anything odd), then the tables and plots the
competition's teams made by hand: class counts and shares, mask / gender / age, persons per gender x
age group, the age histogram by gender, photos per person, race, photo sizes, brightness per mask
status, colour means / stds (the normalisation constants they imply), train vs eval (sizes,
brightness, colour: a shift shows here), exact and near-duplicate photos (within train across
persons, and train x eval), labelled sample photos, and every problem found in the layout.
Tables are computed first; the figures draw them; the page only assembles both.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ..core.config import NORMALIZE_PRESETS
from ..core.io import save_figure, write_text
from ..core.labels import GENDER_NAMES, MASK_NAMES, NUM_CLASSES, AgeThresholds, class_names
from ..core.plots import class_balance
from ..data.images import ImageError, read_image, read_resized
from ..data.label_fixes import read_train_with_fixes
from ..data.layout import Problem, read_eval
from .duplicates import duplicate_pairs, person_pairs
from .photo_stats import channel_moments, photo_stats

MASK_COLOURS = {
    "wear": "#0072b2",
    "incorrect": "#e69f00",
    "not_wear": "#009e73",
}  # Okabe-Ito: told apart in colour-blind vision too
MASK_STYLES = {"wear": "-", "incorrect": "--", "not_wear": ":"}
SPLIT_COLOURS = {"train": "#0072b2", "eval": "#d55e00"}
FEW_SIZES = 6
# Every figure a report may write (and names earlier versions wrote), so a new report removes the stale ones.
REPORT_FIGURES = {
    "class_counts.png",
    "heads.png",
    "persons_gender_age.png",
    "age_by_gender.png",
    "race.png",
    "brightness.png",
    "sizes.png",
    "duplicates.jpg",
    "samples.jpg",
    "age_histogram.png",
    "image_stats.png",
    "samples.png",
}
# Train and eval brightness differ when a two-sample KS test says so (p) by a margin worth a look (statistic).
SHIFT_KS, SHIFT_P = 0.1, 0.001
COLOUR_SHIFT = 0.03  # channel means (0..1) further apart than this


@dataclass
class Section:
    """One part of the page: a title, HTML tables or text, and figures (file name -> caption)."""

    title: str
    html: str = ""
    figures: dict[str, str] = field(default_factory=dict)


def eda_report(
    train_dir: str | Path,
    out_dir: str | Path,
    thresholds: AgeThresholds = AgeThresholds(),
    eval_dir: str | Path | None = None,
    samples_per_class: int = 6,
    near_distance: int = 2,
    seed: int = 0,
    progress: bool = True,
    workers: int = 0,
    label_fixes: str | Path | None = None,
) -> Path:
    """Write ``out_dir/index.html`` and its PNG plots; returns the HTML path.

    Every photo is read once (in parallel threads) for its size, brightness, colour moments and hashes.
    ``label_fixes``: a reviewed fixes CSV applied on top of ``train.csv`` (never modified), named on the page.
    """
    train_dir, out_dir = Path(train_dir), Path(out_dir)
    manifest, problems, fixes = read_train_with_fixes(train_dir, thresholds, label_fixes)
    if manifest.empty:
        raise ValueError(f"no usable photos found in {train_dir} ({len(problems)} problem(s) found)")
    train_stats = photo_stats(manifest["path"].tolist(), f"reading {len(manifest)} training photos", workers, progress)
    train_stats = pd.concat([manifest[["image_id", "person_id", "mask"]].reset_index(drop=True), train_stats], axis=1)
    problems = problems + [
        Problem(path, reason) for path, reason in zip(train_stats["path"], train_stats["error"], strict=False) if reason
    ]
    eval_stats = None
    if eval_dir is not None:
        info, eval_problems = read_eval(eval_dir)
        present = info[~info["path"].isin({p.file for p in eval_problems})].reset_index(drop=True)
        eval_stats = photo_stats(present["path"].tolist(), f"reading {len(present)} eval photos", workers, progress)
        eval_stats = pd.concat([present[["image_id"]].assign(person_id="(eval)"), eval_stats], axis=1)
        problems = (
            problems
            + eval_problems
            + [
                Problem(path, reason)
                for path, reason in zip(eval_stats["path"], eval_stats["error"], strict=False)
                if reason
            ]
        )

    persons = manifest.drop_duplicates("person_id")
    classes = class_table(manifest, thresholds)
    cross = persons_by_gender_and_age(persons, thresholds)
    pairs = duplicate_pairs(train_stats, eval_stats, near_distance)
    sections = [
        _classes_section(classes, thresholds),
        _persons_section(manifest, persons, cross, thresholds),
        _photos_section(train_stats, eval_stats),
        _duplicates_section(pairs, near_distance, eval_stats is not None),
        _samples_section(manifest, thresholds, samples_per_class, np.random.default_rng(seed)),
        _problems_section(problems),
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    for section in sections:
        for name, (caption, figure) in list(section.figures.items()):
            save_figure(out_dir / name, figure)
            section.figures[name] = caption
    written = {name for section in sections for name in section.figures}
    for stale in REPORT_FIGURES - written:  # from an earlier report in the same folder (e.g. duplicates found then)
        (out_dir / stale).unlink(missing_ok=True)
    summary = summarise(manifest, persons, classes, cross, problems, pairs, train_stats, eval_stats, thresholds)
    facts = {
        "persons": f"{len(persons):,}",
        "photos": f"{len(manifest):,}" + (f" (eval: {len(eval_stats):,})" if eval_stats is not None else ""),
        "imbalance (largest / smallest class)": _imbalance(classes),
        "problems found": f"{len(problems):,}",
    }
    if fixes is not None:
        facts["label fixes"] = f"{fixes.path} ({fixes.rows} rows, sha256 {fixes.sha256[:12]})"
    title = f"{train_dir}" + (f" and {eval_dir}" if eval_dir is not None else "")
    return write_text(out_dir / "index.html", _html_page(title, summary, facts, sections))


# -- tables -----------------------------------------------------------------------------------------------


def class_table(manifest: pd.DataFrame, thresholds: AgeThresholds = AgeThresholds()) -> pd.DataFrame:
    """The 18 classes: photos, share of all photos, persons, and the ratio of the largest class to each."""
    photos = manifest["label"].value_counts().reindex(range(NUM_CLASSES), fill_value=0)
    persons = manifest.groupby("label")["person_id"].nunique().reindex(range(NUM_CLASSES), fill_value=0)
    table = pd.DataFrame(
        {
            "class": range(NUM_CLASSES),
            "name": class_names(thresholds),
            "photos": photos.to_numpy(),
            "share": photos.to_numpy() / max(len(manifest), 1),
            "persons": persons.to_numpy(),
        }
    )
    table["largest / this"] = np.where(
        table["photos"] > 0, table["photos"].max() / table["photos"].clip(lower=1), np.inf
    )
    return table


def persons_by_gender_and_age(persons: pd.DataFrame, thresholds: AgeThresholds = AgeThresholds()) -> pd.DataFrame:
    """Persons per gender (rows) and age group (columns), with totals."""
    table = pd.crosstab(
        persons["gender"].map(dict(enumerate(GENDER_NAMES))),
        persons["age_group"].map(dict(enumerate(thresholds.names()))),
    )
    table = table.reindex(index=list(GENDER_NAMES), columns=list(thresholds.names()), fill_value=0)
    table["all"] = table.sum(axis=1)
    table.loc["all"] = table.sum(axis=0)
    return table.rename_axis(index="gender", columns="age group")


def size_table(train_stats: pd.DataFrame, eval_stats: pd.DataFrame | None) -> pd.DataFrame:
    """Photos per size (width x height), train and eval side by side, most common first."""
    columns = {"train": _sizes(train_stats)}
    if eval_stats is not None:
        columns["eval"] = _sizes(eval_stats)
    table = pd.DataFrame(columns).fillna(0).astype(int)
    return table.sort_values(list(columns), ascending=False).rename_axis("size (w x h)")


def colour_table(train_stats: pd.DataFrame, eval_stats: pd.DataFrame | None) -> pd.DataFrame:
    """Per-channel mean and std (0..1) of train (and eval) pixels, beside ImageNet's constants."""
    mean, std = channel_moments(train_stats)
    imagenet_mean, imagenet_std = NORMALIZE_PRESETS["imagenet"]
    table = pd.DataFrame({"train mean": mean, "train std": std}, index=pd.Index(["R", "G", "B"], name="channel"))
    if eval_stats is not None and (eval_stats["error"] == "").any():
        eval_mean, eval_std = channel_moments(eval_stats)
        table["eval mean"], table["eval std"] = eval_mean, eval_std
    table["ImageNet mean"], table["ImageNet std"] = imagenet_mean, imagenet_std
    return table


def _sizes(stats: pd.DataFrame) -> pd.Series:
    readable = stats[stats["error"] == ""]
    counts = readable.groupby([readable["width"].astype(int), readable["height"].astype(int)]).size()
    return pd.Series(counts.to_numpy(), index=[f"{width}x{height}" for width, height in counts.index], dtype=np.int64)


# -- the written summary ------------------------------------------------------------------------------------


def summarise(manifest, persons, classes, cross, problems, pairs, train_stats, eval_stats, thresholds) -> list[str]:
    """A few sentences for the top of the page: size, the rarest classes, and anything odd found."""
    names = thresholds.names()
    lines = [
        f"{len(persons):,} persons and {len(manifest):,} photos in {int((classes['photos'] > 0).sum())} of the "
        f"{NUM_CLASSES} classes."
    ]
    present = classes[classes["photos"] > 0].sort_values("photos", kind="stable")
    largest = classes.loc[classes["photos"].idxmax()]
    rare = ", ".join(
        f"{name} ({photos:,} photos, 1/{largest['photos'] / photos:.0f} of the largest)"
        for name, photos in zip(present["name"].head(3), present["photos"].head(3), strict=False)
    )
    lines.append(
        f"Rarest classes: {rare}. The largest is {largest['name']} ({largest['photos']:,}); "
        f"imbalance ratio {_imbalance(classes)}."
    )
    old = int(cross.loc["all", names[2]])
    lines.append(
        f"Persons aged {names[2]}: {old:,} of {len(persons):,} ({old / max(len(persons), 1):.1%}); "
        f"female share {int(cross.loc['female', 'all']) / max(len(persons), 1):.0%}."
    )
    odd = []
    missing = classes[classes["photos"] == 0]
    if len(missing):
        odd.append(f"no photos at all for class(es) {', '.join(missing['name'])}")
    if problems:
        odd.append(f"{len(problems):,} problem(s) in the layout or the files (listed at the end)")
    short = manifest.groupby("person_id").size()
    if (short < 7).any():
        odd.append(f"{int((short < 7).sum()):,} person(s) with fewer than 7 usable photos")
    within = pairs[pairs["kind"] == "train-train"]
    if len(within):
        shared = person_pairs(pairs)
        odd.append(
            f"{len(shared):,} pair(s) of training persons share near-identical photos ({len(within):,} photo pairs, "
            f"{int(within['identical'].sum()):,} identical files): the same face on both sides of a fold split"
        )
    across = pairs[pairs["kind"] == "train-eval"]
    if len(across):
        odd.append(
            f"{across['image_b'].nunique():,} eval photo(s) nearly identical to training photos "
            f"({int(across['identical'].sum()):,} identical files)"
        )
    if eval_stats is not None:
        odd += _shift_notes(train_stats, eval_stats)
    lines.append(
        "Worth a look: " + "; ".join(odd) + "."
        if odd
        else "Nothing odd found: no problems, no duplicate photos"
        + (", and eval looks like train in size, brightness and colour." if eval_stats is not None else ".")
    )
    return lines


def _shift_notes(train_stats: pd.DataFrame, eval_stats: pd.DataFrame) -> list[str]:
    from scipy.stats import ks_2samp

    notes = []
    train_ok, eval_ok = train_stats[train_stats["error"] == ""], eval_stats[eval_stats["error"] == ""]
    if train_ok.empty or eval_ok.empty:
        return notes
    test = ks_2samp(train_ok["brightness"], eval_ok["brightness"])
    ks = test.statistic
    if ks > SHIFT_KS and test.pvalue < SHIFT_P:
        notes.append(
            f"eval brightness differs from train (mean {eval_ok['brightness'].mean():.0f} "
            f"vs {train_ok['brightness'].mean():.0f}, KS {ks:.2f})"
        )
    train_sizes, eval_sizes = set(_sizes(train_ok).index), set(_sizes(eval_ok).index)
    if eval_sizes - train_sizes:
        notes.append(f"eval has photo sizes train does not ({', '.join(sorted(eval_sizes - train_sizes)[:5])})")
    train_mean, eval_mean = channel_moments(train_ok)[0], channel_moments(eval_ok)[0]
    if np.abs(train_mean - eval_mean).max() > COLOUR_SHIFT:
        notes.append(f"eval colour means differ from train ({_triple(eval_mean)} vs {_triple(train_mean)})")
    return notes


def _imbalance(classes: pd.DataFrame) -> str:
    present = classes.loc[classes["photos"] > 0, "photos"]
    return f"{present.max() / present.min():.1f} : 1" if len(present) else "-"


def _triple(values) -> str:
    return "(" + ", ".join(f"{v:.3f}" for v in values) + ")"


# -- sections: tables and figures ---------------------------------------------------------------------------


def _classes_section(classes: pd.DataFrame, thresholds: AgeThresholds) -> Section:
    shown = classes.assign(
        share=classes["share"].map("{:.1%}".format),
        **{"largest / this": classes["largest / this"].map(lambda v: "-" if np.isinf(v) else f"{v:.1f}")},
    )
    return Section(
        "Classes",
        _table(shown, index=False),
        {"class_counts.png": ("Photos per class", class_balance(classes["photos"].to_numpy(), thresholds))},
    )


def _persons_section(
    manifest: pd.DataFrame, persons: pd.DataFrame, cross: pd.DataFrame, thresholds: AgeThresholds
) -> Section:
    per_person = (
        manifest.groupby("person_id")
        .size()
        .value_counts()
        .sort_index()
        .rename_axis("photos per person")
        .rename("persons")
        .to_frame()
    )
    body = (
        "<div class='row'><div><h3>Persons per gender and age group</h3>" + _table(cross) + "</div>"
        "<div><h3>Photos per person</h3>" + _table(per_person) + "</div></div>"
    )
    figures = {
        "heads.png": ("Photos per mask status, gender and age group", _heads_figure(manifest, thresholds)),
        "persons_gender_age.png": ("Persons per gender and age group", _persons_heatmap(cross)),
        "race.png": ("Persons by race and gender", _race_figure(persons)),
        "age_by_gender.png": ("Age of persons by gender, with the group thresholds", _age_figure(persons, thresholds)),
    }
    return Section("Persons, mask, gender and age", body, figures)


def _photos_section(train_stats: pd.DataFrame, eval_stats: pd.DataFrame | None) -> Section:
    sizes = size_table(train_stats, eval_stats)
    colours = colour_table(train_stats, eval_stats)
    mean, std = colours["train mean"].to_numpy(), colours["train std"].to_numpy()
    body = "<div class='row'>"
    if len(sizes) <= FEW_SIZES:
        body += "<div><h3>Photo sizes</h3>" + _table(sizes) + "</div>"
    body += (
        "<div><h3>Colour per channel (0..1)</h3>"
        + _table(colours.map(lambda v: f"{v:.3f}"))
        + f"<p>Normalisation constants these photos imply: <code>mean={_triple(mean)}, std={_triple(std)}</code> "
        "(computed at 128x128 over every readable training photo).</p></div></div>"
    )
    figures = {"brightness.png": ("Brightness of photos", _brightness_figure(train_stats, eval_stats))}
    if len(sizes) > FEW_SIZES:
        figures["sizes.png"] = ("Most common photo sizes", _sizes_figure(sizes))
    return Section(
        "Photos: size, brightness, colour" + (", train vs eval" if eval_stats is not None else ""), body, figures
    )


def _duplicates_section(pairs: pd.DataFrame, near_distance: int, with_eval: bool) -> Section:
    scope = "within train (different persons)" + (" and between train and eval" if with_eval else "")
    text = (
        f"<p>Photo pairs {scope} whose perceptual hash of the upper face (where masks never reach) differs by at most "
        f"{near_distance} of 64 bits, or whose files are identical. Pairs within one person are expected "
        "(the same photo with different masks) and not listed.</p>"
    )
    if pairs.empty:
        return Section("Duplicates and near-duplicates", text + "<p><b>None found.</b></p>")
    persons = person_pairs(pairs)
    if len(persons):
        text += "<h3>Training persons who share photos</h3>" + _table(persons.head(50), index=False)
    listed = pairs.head(500).assign(identical=pairs["identical"].head(500).map({True: "yes", False: ""}))
    text += (
        f"<details><summary>All {len(pairs):,} photo pairs{' (the first 500)' if len(pairs) > 500 else ''}</summary>"
        + _table(listed.drop(columns=["path_a", "path_b"]), index=False)
        + "</details>"
    )
    return Section(
        "Duplicates and near-duplicates",
        text,
        {"duplicates.jpg": ("The closest pairs, side by side", _pairs_figure(pairs))},
    )


def _samples_section(
    manifest: pd.DataFrame, thresholds: AgeThresholds, per_class: int, rng: np.random.Generator
) -> Section:
    return Section(
        "Sample photos per class",
        "<p>Each photo is labelled with its person id, gender and age.</p>",
        {"samples.jpg": ("Sample photos per class", _sample_grid(manifest, thresholds, per_class, rng))},
    )


def _problems_section(problems: list[Problem]) -> Section:
    if not problems:
        return Section("Problems found", "<p>None.</p>")
    items = "".join(f"<li><code>{html.escape(p.file)}</code>: {html.escape(p.reason)}</li>" for p in problems[:200])
    more = f"<p>... and {len(problems) - 200} more</p>" if len(problems) > 200 else ""
    return Section(f"Problems found ({len(problems):,})", f"<ul>{items}</ul>{more}")


def _heads_figure(manifest: pd.DataFrame, thresholds: AgeThresholds):
    figure, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for axis, (column, names) in zip(
        axes, (("mask", MASK_NAMES), ("gender", GENDER_NAMES), ("age_group", thresholds.names())), strict=False
    ):
        counts = manifest[column].value_counts().reindex(range(len(names)), fill_value=0)
        bars = axis.bar(names, counts.to_numpy(), color=["#0072b2", "#e69f00", "#009e73"][: len(names)])
        axis.bar_label(bars, fontsize=8)
        axis.set(title=column.replace("_", " "), ylabel="photos")
    figure.tight_layout()
    return figure


def _persons_heatmap(cross: pd.DataFrame):
    figure, axis = plt.subplots(figsize=(5.0, 2.8))
    core = cross.drop(index="all", columns="all")
    sns.heatmap(core, annot=True, fmt="d", cmap="Blues", cbar_kws={"label": "persons"}, ax=axis)
    axis.set(xlabel="age group", ylabel="gender", title="persons per gender and age group")
    axis.tick_params(axis="y", rotation=0)
    figure.tight_layout()
    return figure


def _age_figure(persons: pd.DataFrame, thresholds: AgeThresholds):
    figure, axis = plt.subplots(figsize=(9, 3.5))
    bins = np.arange(int(persons["age"].min()), int(persons["age"].max()) + 2)
    by_gender = [persons.loc[persons["gender"] == g, "age"] for g in range(len(GENDER_NAMES))]
    axis.hist(by_gender, bins=bins, stacked=True, label=list(GENDER_NAMES), color=["#0072b2", "#e69f00"])
    for cut in (thresholds.middle, thresholds.old):
        axis.axvline(cut, color="crimson", linestyle="--")
        axis.text(cut + 0.3, axis.get_ylim()[1] * 0.92, f"{cut}", color="crimson")
    axis.set(
        xlabel="age (years)", ylabel="persons", title="age of persons by gender (stacked; dashed: group thresholds)"
    )
    axis.legend()
    figure.tight_layout()
    return figure


def _race_figure(persons: pd.DataFrame):
    table = persons.assign(gender=persons["gender"].map(dict(enumerate(GENDER_NAMES)))).pivot_table(
        index="race", columns="gender", values="person_id", aggfunc="count", fill_value=0
    )
    figure, axis = plt.subplots(figsize=(5.0, 3.2))
    table.plot.bar(ax=axis, rot=0, color=["#e69f00", "#0072b2"][: len(table.columns)])
    axis.set(ylabel="persons", xlabel="race", title="persons by race and gender")
    figure.tight_layout()
    return figure


def _brightness_figure(train_stats: pd.DataFrame, eval_stats: pd.DataFrame | None):
    panels = 2 if eval_stats is not None else 1
    figure, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 3.5), squeeze=False)
    readable = train_stats[train_stats["error"] == ""]
    bins = np.linspace(0, 255, 52)
    axis = axes[0, 0]
    for mask, name in enumerate(MASK_NAMES):
        values = readable.loc[readable["mask"] == mask, "brightness"]
        if len(values):
            axis.hist(
                values,
                bins=bins,
                density=True,
                histtype="step",
                linewidth=2,
                color=MASK_COLOURS[name],
                linestyle=MASK_STYLES[name],
                label=f"{name} ({len(values):,})",
            )
    axis.set(title="train: brightness by mask status", xlabel="mean brightness (0-255)", ylabel="density")
    axis.legend()
    if eval_stats is not None:
        axis = axes[0, 1]
        for split, stats in (("train", readable), ("eval", eval_stats[eval_stats["error"] == ""])):
            if len(stats):
                axis.hist(
                    stats["brightness"],
                    bins=bins,
                    density=True,
                    histtype="step",
                    linewidth=2,
                    color=SPLIT_COLOURS[split],
                    label=f"{split} ({len(stats):,})",
                )
        axis.set(title="brightness: train vs eval", xlabel="mean brightness (0-255)", ylabel="density")
        axis.legend()
    figure.tight_layout()
    return figure


def _sizes_figure(sizes: pd.DataFrame):
    top = sizes.head(10)
    figure, axis = plt.subplots(figsize=(7, 0.35 * len(top) + 1.2))
    top[::-1].plot.barh(ax=axis, color=[SPLIT_COLOURS[c] for c in top.columns])
    axis.set(xlabel="photos", ylabel="size (w x h)", title="most common photo sizes")
    figure.tight_layout()
    return figure


def _pairs_figure(pairs: pd.DataFrame, limit: int = 8):
    """The closest pair of each person pair (and of each eval photo), two pairs per row."""
    keys = [
        tuple(sorted((str(a), str(b)))) if kind == "train-train" else b_id
        for kind, a, b, b_id in zip(pairs["kind"], pairs["person_a"], pairs["person_b"], pairs["image_b"], strict=False)
    ]
    shown = pairs.loc[~pd.Series(keys, index=pairs.index).duplicated()].head(limit)
    rows = -(-len(shown) // 2)
    figure, axes = plt.subplots(rows, 4, figsize=(8.4, 2.3 * rows), squeeze=False)
    for axis in axes.flat:
        axis.set_axis_off()
    for index, pair in enumerate(shown.itertuples(index=False)):
        how = "identical files" if pair.identical else f"distance {pair.distance}"
        for side, (path, image_id, person) in enumerate(
            ((pair.path_a, pair.image_a, pair.person_a), (pair.path_b, pair.image_b, pair.person_b))
        ):
            axis = axes[index // 2, (index % 2) * 2 + side]
            _show(axis, path)
            label = (
                f"eval {_shorten(str(image_id), 14)}"
                if person == "(eval)"
                else f"{person} / {str(image_id).rsplit('/', 1)[-1]}"
            )
            axis.set_title(
                f"{pair.kind}, {how}\n{label}" if side == 0 else f"\n{label}",
                fontsize=7,
                loc="left" if side == 0 else "center",
            )
    figure.tight_layout()
    return figure


def _sample_grid(manifest: pd.DataFrame, thresholds: AgeThresholds, per_class: int, rng: np.random.Generator):
    """One mosaic image (fast to draw, small to store): a row per class, each photo captioned with person id, gender
    and age."""
    names = class_names(thresholds)
    cell_h, cell_w, caption, gap = 96, 72, 26, 6
    canvas = np.full((NUM_CLASSES * (cell_h + caption), per_class * (cell_w + gap), 3), 255, dtype=np.uint8)
    captions = []
    for label in range(NUM_CLASSES):
        rows = manifest[manifest["label"] == label]
        chosen = rows.iloc[rng.choice(len(rows), size=min(per_class, len(rows)), replace=False)] if len(rows) else rows
        top = label * (cell_h + caption)
        for column, photo in enumerate(chosen.itertuples(index=False)):
            left = column * (cell_w + gap)
            try:
                canvas[top : top + cell_h, left : left + cell_w] = read_resized(photo.path, (cell_h, cell_w))
            except ImageError:
                captions.append((left + cell_w / 2, top + cell_h / 2, "unreadable"))
            captions.append(
                (
                    left + cell_w / 2,
                    top + cell_h + 2,
                    f"{_shorten(str(photo.person_id), 12)}\n{GENDER_NAMES[photo.gender][0].upper()}, {photo.age}",
                )
            )
    height, width = canvas.shape[:2]
    margin = 1.2  # inches for the class names on the left
    figure = plt.figure(figsize=(width / 100 + margin, height / 100))
    axis = figure.add_axes((margin / (width / 100 + margin), 0, width / 100 / (width / 100 + margin), 1))
    axis.imshow(canvas, interpolation="nearest")
    axis.set_axis_off()
    for x, y, text in captions:
        axis.text(x, y, text, ha="center", va="top", fontsize=5.5, linespacing=1.1)
    for label in range(NUM_CLASSES):
        axis.text(
            -8, label * (cell_h + caption) + cell_h / 2, f"{label}\n{names[label]}", ha="right", va="center", fontsize=7
        )
    return figure


def _show(axis, path: str, size_hw: tuple[int, int] | None = None) -> None:
    """The photo (at ``size_hw``, or as it is) on ``axis``, or a note that it cannot be read."""
    try:
        axis.imshow(read_resized(path, size_hw) if size_hw else read_image(path))
        axis.set_axis_on()
        axis.set_xticks([])
        axis.set_yticks([])
    except ImageError:
        axis.text(0.5, 0.5, "unreadable", ha="center", va="center", fontsize=6, transform=axis.transAxes)


def _shorten(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- the page -------------------------------------------------------------------------------------------------


def _table(frame: pd.DataFrame, index: bool = True) -> str:
    """An HTML table: text left, numbers right-aligned (with thousands separators)."""
    if index:
        frame = frame.reset_index()
    head = "".join(f"<th>{html.escape(str(column))}</th>" for column in frame.columns)
    rows = "".join("<tr>" + "".join(_cell(value) for value in row) + "</tr>" for row in frame.itertuples(index=False))
    return f"<table class='data'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _cell(value) -> str:
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return f"<td class='num'>{value:,}</td>"
    if isinstance(value, (float, np.floating)):
        return f"<td class='num'>{value:,.3f}</td>"
    text = str(value)
    numeric = text.replace(".", "", 1).replace("%", "").replace(",", "").strip().isdigit() and not (
        text.startswith("0") and text[1:2].isdigit()
    )  # ids stay text
    return f"<td class='num'>{html.escape(text)}</td>" if numeric else f"<td>{html.escape(text)}</td>"


def _anchor(title: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in title.lower()).strip("-")


def _html_page(title: str, summary: list[str], facts: dict, sections: list[Section]) -> str:
    escaped = html.escape(title)
    fact_rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts.items())
    summary_items = "".join(f"<li>{html.escape(line)}</li>" for line in summary)
    nav = " · ".join(f"<a href='#{_anchor(s.title)}'>{html.escape(s.title)}</a>" for s in sections)
    body = ""
    for section in sections:
        images = "".join(
            f"<figure><img src='{name}' alt='{html.escape(caption)}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            for name, caption in section.figures.items()
        )
        body += (
            f"<section id='{_anchor(section.title)}'><h2>{html.escape(section.title)}</h2>{section.html}"
            f"<div class='figures'>{images}</div></section>"
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>maskcls EDA: {escaped}</title>
<style>
body{{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1200px;margin:1.5em auto;padding:0 1em;
color:#222;line-height:1.45}}
h1{{font-size:1.5em;margin-bottom:.2em}} h2{{border-bottom:2px solid #0072b2;padding-bottom:.2em;margin-top:1.6em}}
h3{{font-size:1em;margin:.8em 0 .3em}}
nav{{font-size:.9em;margin:.5em 0 1em}} nav a{{color:#0072b2;text-decoration:none}}
.summary{{background:#f3f7fb;border-left:4px solid #0072b2;padding:.6em 1.2em;margin:1em 0}}
.summary li{{margin:.25em 0}}
table{{border-collapse:collapse;font-size:.88em;margin:.3em 0 .8em}}
th,td{{padding:3px 10px;border-bottom:1px solid #e5e5e5;text-align:left}}
table.data td.num{{text-align:right;font-variant-numeric:tabular-nums}}
table.data tr:nth-child(even){{background:#fafafa}} table.data thead th{{background:#eef3f8}}
.row{{display:flex;flex-wrap:wrap;gap:2.5em;align-items:flex-start}}
.figures{{display:flex;flex-wrap:wrap;gap:0 1.5em;align-items:flex-start}} figure{{margin:.8em 0}}
img{{max-width:100%;border:1px solid #ddd}} figcaption{{font-size:.85em;color:#555}}
code{{background:#f4f4f4;padding:0 .25em}}
</style></head>
<body><h1>Data report: {escaped}</h1>
<nav>{nav}</nav>
<div class="summary"><b>At a glance</b><ul>{summary_items}</ul></div>
<table>{fact_rows}</table>
{body}
</body></html>
"""
