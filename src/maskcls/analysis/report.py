"""Evaluation report of a trained directory (a run, an ensemble or a combination): one self-contained HTML page.

Tables first, then figures drawn from them, then a page that only assembles them (as scikit-learn's display
objects do). The page embeds its plots as PNG data URIs and needs no script, font or file beside it; the same
tables are written as CSV / JSON next to it, and ``report.json`` holds the headline numbers the CLI prints.

Sections: recipe and data; scores and the classes that cost the most macro F1; 18x18 and per-head confusion
matrices (counts and row-normalised); per-class precision / recall / F1 / support; training curves per fold
(loss, macro F1, learning rate); the worst confusions with example photos per head; Grad-CAM overlays of right and
wrong predictions per head (k-fold runs; every photo explained by the fold model that did not train on it);
calibration before / after temperature scaling; scores by gender, age group and race; per-member scores
(ensembles and combinations).
"""

from __future__ import annotations

import base64
import html
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ..core.artifacts import (
    CALIBRATION_FILE,
    COMBINE_FILE,
    CONFIG_FILE,
    ENSEMBLE_FILE,
    FOLD_METRICS_FILE,
    OOF_FILE,
    SUMMARY_FILE,
    directory_kind,
    fold_dir,
    kfold_run_of,
    run_label_fixes,
    run_labels,
    run_record,
    stored_temperature,
)
from ..core.io import atomic_dir, write_csv, write_json, write_text
from ..core.labels import NUM_CLASSES, AgeThresholds, class_names, decode
from ..core.metrics import classification_metrics
from ..core.plots import confusion_pair_figure, head_confusions_figure, photo_grid, training_curves
from ..core.progress import track
from ..core.tables import TableError, probs_of, read_oof, with_probs
from ..data.extra import ExtraSpec
from ..data.images import ImageError, read_resized
from ..data.label_fixes import read_train_with_fixes
from ..data.layout import read_train
from .calibration import CalibrationReport, calibration_report, reliability_figure
from .evaluation import (
    HEADS,
    confusion_tables,
    gradcam_selection,
    head_names,
    per_class_table,
    top_confusions,
    worst_predictions,
)
from .fairness import fairness_table

SECTIONS = {
    "recipe": "Recipe and data",
    "scores": "Scores",
    "confusion": "Confusion matrices",
    "per-class": "Per-class scores",
    "curves": "Training curves",
    "worst": "Worst confusions",
    "gradcam": "Grad-CAM",
    "calibration": "Calibration",
    "fairness": "Fairness",
    "members": "Members",
}
_THUMB_HW = (96, 72)


class ReportError(ValueError):
    """A directory the report cannot describe (no 18-class predictions, no labels)."""


@dataclass
class Judged:
    """The predictions being judged: keys, true ``label``, p0..p17, and the photos' manifest columns where found."""

    table: pd.DataFrame
    source: str
    kind: str
    thresholds: AgeThresholds
    photos_note: str = ""
    member_scores: pd.DataFrame | None = None
    extra: dict = field(default_factory=dict)

    @property
    def has_photos(self) -> bool:
        return "path" in self.table


def evaluation_report(
    run_dir: str | Path,
    out_dir: str | Path,
    data_dir: str | Path | None = None,
    gradcam: int = 48,
    examples: int = 8,
    seed: int = 0,
    batch_size: int = 64,
    progress: bool = True,
) -> dict:
    """Write ``out_dir/index.html`` (self-contained) with its tables; returns the headline numbers.

    ``data_dir``: a labelled folder in the training layout to predict and report on instead of the out-of-fold
    predictions. ``gradcam``: overlays in all (split evenly over the three heads, right and wrong); 0 for none.
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"run directory not found: {run_dir}")
    judged = _judged(run_dir, data_dir, batch_size, progress)
    table, names = judged.table, class_names(judged.thresholds)
    labels, probs = table["label"].to_numpy(dtype=np.int64), probs_of(table)
    predicted = probs.argmax(axis=1)

    scores = classification_metrics(labels, probs)
    per_class = per_class_table(labels, predicted, names)
    matrices = confusion_tables(labels, predicted)
    calibration = _calibration(run_dir, judged, labels, probs)
    fairness = fairness_table(table, judged.thresholds)
    worst = {head: worst_predictions(table, head, examples) for head in HEADS}
    confusions = pd.concat(
        [top_confusions(labels, predicted, head, judged.thresholds) for head in ("class", *HEADS)], ignore_index=True
    )
    curves = training_history(run_dir) if judged.kind == "run" and data_dir is None else None
    cams = (
        _gradcams(run_dir, judged, gradcam, seed, progress)
        if judged.kind == "run" and gradcam > 0 and judged.has_photos
        else None
    )

    headline = {
        "run": str(run_dir.resolve()),
        "judged": judged.source,
        "photos": int(len(table)),
        "persons": int(table["person_id"].nunique()),
        **{k: scores[k] for k in ("macro_f1", "accuracy", "mask_accuracy", "gender_accuracy", "age_accuracy")},
        "costliest_classes": per_class.nlargest(3, "macro_f1_cost")[["class", "name", "f1", "macro_f1_cost"]].to_dict(
            "records"
        ),
        "calibration": calibration.scores(),
        "worst_group": fairness.nsmallest(1, "macro_f1_gap")[
            ["attribute", "group", "photos", "macro_f1", "macro_f1_gap"]
        ].to_dict("records")[0],
        "gradcam_overlays": 0 if cams is None else int(sum(len(images) for _, images, _ in cams)),
    }
    sections = _sections(
        run_dir, judged, scores, per_class, matrices, curves, worst, confusions, cams, calibration, fairness, names
    )
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        write_csv(tmp / "per_class.csv", per_class)
        write_csv(tmp / "fairness.csv", fairness)
        write_csv(tmp / "confusions.csv", confusions)
        write_csv(
            tmp / "confusion_18.csv",
            pd.DataFrame(matrices["class"], index=names, columns=names).rename_axis("true \\ predicted").reset_index(),
        )
        write_csv(
            tmp / "worst_predictions.csv",
            pd.concat(worst.values(), ignore_index=True).drop(columns=["path"], errors="ignore"),
        )
        write_json(tmp / CALIBRATION_FILE, calibration.scores())
        if judged.member_scores is not None:
            write_csv(tmp / "members.csv", judged.member_scores)
        headline["wall_seconds"] = round(time.perf_counter() - started, 2)
        write_text(tmp / "index.html", _page(f"maskcls report: {run_dir.name}", headline, sections))
        write_json(tmp / "report.json", headline)
    return {**headline, "html": str(out_dir / "index.html")}


# ----------------------------------------------------------------------------------------------- inputs


def _judged(run_dir: Path, data_dir: str | Path | None, batch_size: int, progress: bool) -> Judged:
    kind = directory_kind(run_dir)
    thresholds = run_labels(run_dir).thresholds
    member_scores = None
    if data_dir is None:
        try:
            table = read_oof(run_dir / OOF_FILE)
        except TableError as err:
            raise ReportError(
                f"{err}: the report needs 18-class predictions "
                "(for a single-head run, report on the combined directory)"
            ) from None
        manifest, note = _training_manifest(run_dir, thresholds)
        if manifest is not None:
            table = table.merge(manifest.drop(columns=["label", "person_id"]), on="image_id", how="left")
            if table["path"].isna().any():
                note = (
                    f"{int(table['path'].isna().sum())} photos of {OOF_FILE} are not in the training folder any more; "
                    "they are shown without photos"
                )
        source = f"out-of-fold predictions ({run_dir / '{OOF_FILE}'})"
        if kind == "ensemble":
            member_scores = _member_scores_oof(run_dir)
        elif kind == "combination":
            summary = json.loads((run_dir / SUMMARY_FILE).read_text())
            member_scores = pd.DataFrame(
                [{"member": run, **score} for run, score in summary.get("source_scores", {}).items()]
            )
        return Judged(table, source, kind, thresholds, note, member_scores)
    manifest, problems = read_train(data_dir, thresholds)
    if manifest.empty:
        raise ReportError(f"no labelled photos found in {data_dir} ({len(problems)} problem(s))")
    table, member_scores = _predict_labelled(run_dir, manifest, kind, batch_size, progress)
    note = f"{len(problems)} problem(s) in {data_dir}; those photos were left out" if problems else ""
    return Judged(table, f"predictions on {Path(data_dir).resolve()}", kind, thresholds, note, member_scores)


def _training_manifest(run_dir: Path, thresholds: AgeThresholds) -> tuple[pd.DataFrame | None, str]:
    """The manifest of the folder the run trained on (with its label fixes), for photos and race; or a note why not."""
    data = run_record(run_dir).get("data")
    if not data or not (Path(data) / "train.csv").is_file():
        return (
            None,
            f"the training folder {data or '(not recorded)'} is not available: no photos and no race in this report",
        )
    manifest, _, _ = read_train_with_fixes(data, thresholds, run_label_fixes(run_dir))
    return manifest[["image_id", "person_id", "label", "path", "stem", "race"]], ""


def _predict_labelled(
    run_dir: Path, manifest: pd.DataFrame, kind: str, batch_size: int, progress: bool
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    from ..inference.predict import predict_table

    photos = manifest[["image_id", "path"]]
    member_scores = None
    if kind == "ensemble":
        from ..ensemble.build import load_ensemble

        ensemble = load_ensemble(run_dir)
        member_probs = [
            predict_table(member, photos, batch_size=batch_size, progress=progress).probs for member in ensemble.members
        ]
        probs = ensemble.combine(member_probs)
        readable = np.all(np.isfinite(probs), axis=1)
        labels = manifest["label"].to_numpy()[readable]
        member_scores = pd.DataFrame(
            [
                {"member": str(member), **classification_metrics(labels, p[readable])}
                for member, p in zip(ensemble.members, member_probs, strict=False)
            ]
        )
    else:
        probs = predict_table(run_dir, photos, batch_size=batch_size, progress=progress).probs
        if probs.shape[1] != NUM_CLASSES:
            raise ReportError(f"{run_dir} predicts a single head: report on the combined directory instead")
    table = with_probs(manifest[["image_id", "person_id", "label", "path", "stem", "race"]].assign(fold=-1), probs)
    return table[np.all(np.isfinite(probs), axis=1)].reset_index(drop=True), member_scores


def _member_scores_oof(run_dir: Path) -> pd.DataFrame:
    from ..ensemble.build import read_members

    recipe = json.loads((run_dir / ENSEMBLE_FILE).read_text())
    members = read_members([entry["path"] for entry in recipe["members"]], with_test=False)
    labels = members.oof["label"].to_numpy(dtype=np.int64)
    rows = [
        {"member": str(path), **classification_metrics(labels, probs)}
        for path, probs in zip(members.directories, members.oof_probs, strict=False)
    ]
    own = read_oof(run_dir / OOF_FILE).set_index("image_id").loc[members.oof["image_id"]]
    rows.append({"member": "ensemble (honest OOF)", **classification_metrics(labels, probs_of(own))})
    return pd.DataFrame(rows)


def _calibration(run_dir: Path, judged: Judged, labels: np.ndarray, probs: np.ndarray) -> CalibrationReport:
    """On OOF: cross-fitted temperatures. On a labelled folder: the run's temperature, fitted on its OOF (stored by
    ``maskcls calibrate`` or fitted here), applied as it would be by ``predict --calibrate``."""
    if judged.source.startswith("out-of-fold"):
        return calibration_report(probs, labels, judged.table["person_id"].to_numpy())
    if (run_dir / CALIBRATION_FILE).is_file():
        temperature = stored_temperature(run_dir)
    else:
        from ..core.metrics import fit_temperature

        oof = read_oof(run_dir / OOF_FILE)
        temperature = fit_temperature(probs_of(oof), oof["label"].to_numpy(dtype=np.int64))
    return calibration_report(probs, labels, temperature=temperature)


def training_history(run_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame | None] | None:
    """A run's ``metrics.csv`` (per fold and epoch), and the learning rate per fold and optimiser step from each fold's
    Lightning CSV log (None where none was logged); None for a directory without ``metrics.csv``."""
    run_dir = Path(run_dir)
    path = run_dir / FOLD_METRICS_FILE
    if not path.is_file():
        return None
    metrics = pd.read_csv(path)
    frames = []
    for fold in sorted(metrics["fold"].unique()):
        csv_dir = fold_dir(run_dir, fold) / "csv"
        parts = sorted(csv_dir.glob("metrics.part*.csv")) + [csv_dir / FOLD_METRICS_FILE]
        for part in (p for p in parts if p.is_file()):
            logged = pd.read_csv(part)
            lr_columns = [c for c in logged.columns if c.startswith("lr-")]
            if lr_columns and "step" in logged:
                rows = logged[["step", lr_columns[0]]].dropna()
                frames.append(
                    pd.DataFrame({"fold": fold, "step": rows["step"].to_numpy(), "lr": rows[lr_columns[0]].to_numpy()})
                )
    learning_rates = (
        pd.concat(frames, ignore_index=True).drop_duplicates(["fold", "step"], keep="last") if frames else None
    )
    return metrics, learning_rates


def _gradcams(
    run_dir: Path, judged: Judged, total: int, seed: int, progress: bool
) -> list[tuple[str, list[np.ndarray], list[str]]]:
    """Grad-CAM rows (title, overlays, captions): each photo explained by the fold model that did not train on it
    (for a labelled folder, the mean map of every fold model)."""
    import torch

    from ..inference.predict import load_run
    from .gradcam import grad_cam, load_inputs, overlay

    run = load_run(run_dir)
    table = judged.table[judged.table["path"].notna()].reset_index(drop=True)
    chosen = gradcam_selection(table, max(1, total // (2 * len(HEADS))), seed)
    inputs, shown = load_inputs(table.loc[chosen["row"], "path"].tolist(), run.data_cfg)
    maps = np.zeros(inputs.shape[:1] + inputs.shape[2:], dtype=np.float32)
    folds = table.loc[chosen["row"], "fold"].to_numpy()
    groups = [(fold, np.flatnonzero(folds == fold)) for fold in np.unique(folds)]
    for fold, rows in track(groups, "Grad-CAM", enabled=progress):
        models = [run.models[run.folds.index(fold)]] if fold in run.folds else run.models
        maps[rows] = grad_cam(
            models,
            inputs[torch.from_numpy(rows)],
            chosen["head"].to_numpy()[rows].tolist(),
            chosen["target"].to_numpy()[rows].tolist(),
        )
    overlays = overlay(shown, maps)
    result = []
    for (head, outcome), rows in chosen.groupby(["head", "outcome"], sort=False).groups.items():
        names = head_names(head, judged.thresholds)
        positions = [chosen.index.get_loc(r) for r in rows]
        captions = [
            f"true {names[chosen.at[r, 'true_value']]}\n"
            f"pred {names[chosen.at[r, 'target']]} {chosen.at[r, 'confidence']:.2f}"
            for r in rows
        ]
        result.append((f"{head}: {outcome}", [overlays[p] for p in positions], captions))
    return result


# ----------------------------------------------------------------------------------------------- page


def _sections(
    run_dir, judged, scores, per_class, matrices, curves, worst, confusions, cams, calibration, fairness, names
) -> list[tuple[str, str]]:
    thresholds = judged.thresholds
    body = {key: "" for key in SECTIONS}
    body["recipe"] = _recipe_html(run_dir, judged)
    score_rows = pd.DataFrame([{key.replace("_", " "): value for key, value in scores.items()}])
    costly = per_class.nlargest(3, "macro_f1_cost")
    body["scores"] = (
        _table(score_rows)
        + "<p>Classes that cost the most macro F1 (each class takes (1 - F1) / classes off it): "
        + "; ".join(
            f"<b>{html.escape(r.name)}</b> (F1 {r.f1:.3f}, costs {r.macro_f1_cost:.3f})" for r in costly.itertuples()
        )
        + "</p>"
    )
    head_figure = head_confusions_figure([(head, matrices[head], head_names(head, thresholds)) for head in HEADS])
    body["confusion"] = _figure(confusion_pair_figure(matrices["class"], names, "18 classes")) + _figure(head_figure)
    body["per-class"] = (
        _table(per_class, highlight=set(costly.index))
        + f"<p>macro F1 {scores['macro_f1']:.4f} = 1 - the sum of the costs.</p>"
    )
    if curves is not None:
        body["curves"] = _figure(training_curves(*curves))
    else:
        body["curves"] = (
            "<p>No training curves: "
            + (
                "an ensemble or a combination trains nothing itself."
                if judged.kind != "run"
                else f"this report judges predictions on another folder, or the run has no {FOLD_METRICS_FILE}."
            )
            + "</p>"
        )
    body["worst"] = _table(confusions) + "".join(_worst_html(worst[head], head, thresholds, judged) for head in HEADS)
    if cams:
        body["gradcam"] = (
            "<p>Where each head looks: Grad-CAM of log p(head = predicted value), on the photo's centre view as the "
            "model sees it. Every photo is explained by the fold model that did not train on it. Rows: right (random) "
            "and wrong (most confident) predictions.</p>" + _figure(photo_grid(cams, cell=1.6))
        )
    else:
        reason = {"ensemble": "an ensemble", "combination": "a combination"}.get(judged.kind)
        body["gradcam"] = (
            f"<p>No Grad-CAM: {reason} has no network of its own (see each member's report).</p>"
            if reason
            else "<p>No Grad-CAM (no photos or --gradcam 0).</p>"
        )
    body["calibration"] = (
        _table(
            pd.DataFrame(
                [
                    {"": "before", "NLL": calibration.nll_before, "ECE": calibration.ece_before},
                    {
                        "": f"after (T = {calibration.temperature:.3f})",
                        "NLL": calibration.nll_after,
                        "ECE": calibration.ece_after,
                    },
                ]
            )
        )
        + f"<p>{html.escape(calibration.note)}. Temperature scaling never changes the predicted class. "
        f"<code>maskcls calibrate --run RUN</code> stores T; <code>maskcls predict --calibrate</code> applies it.</p>"
        + _figure(reliability_figure(calibration))
    )
    worst_groups = set(fairness.nsmallest(3, "macro_f1_gap").index)
    body["fairness"] = (
        "<p>Scores per group of people (true gender and age group; race from train.csv). Macro F1 here averages the "
        "classes in the group's labels; gap: the group's minus everyone's on the same measure. Small groups give noisy "
        "scores: read the counts.</p>"
    ) + _table(fairness, highlight=worst_groups)
    if judged.member_scores is not None:
        body["members"] = _table(judged.member_scores)
    else:
        body["members"] = "<p>A single run: no members.</p>"
    return [(key, body[key]) for key in SECTIONS]


def _recipe_html(run_dir: Path, judged: Judged) -> str:
    facts: dict[str, str] = {"directory": str(run_dir.resolve()), "kind": judged.kind, "judged": judged.source}
    if judged.kind == "run":
        config = yaml.safe_load((run_dir / CONFIG_FILE).read_text()) if (run_dir / CONFIG_FILE).is_file() else {}
        picks = {
            "model": ("model", "name"),
            "head": ("model", "head"),
            "weights": ("model", "pretrained"),
            "input size": ("data", "image_size"),
            "epochs": ("train", "epochs"),
            "batch": ("train", "batch_size"),
            "loss": ("loss", "name"),
            "sampler": ("sampler", "name"),
            "optimizer": ("optim", "name"),
            "lr": ("optim", "lr"),
            "schedule": ("scheduler", "name"),
            "TTA": ("tta", "name"),
            "folds": ("cv", "folds"),
        }
        for label, (section, key) in picks.items():
            if key in config.get(section, {}):
                facts[label] = str(config[section][key])
    elif judged.kind == "ensemble":
        recipe = json.loads((run_dir / ENSEMBLE_FILE).read_text())
        facts.update(
            {"method": recipe["method"], "members": ", ".join(Path(m["path"]).name for m in recipe["members"])}
        )
        if recipe.get("learner") is not None:  # a stack's
            facts["learner"] = str(recipe["learner"])
        if recipe.get("weights") is not None:  # a vote's (equal for a soft vote)
            facts["weights"] = ", ".join(f"{weight:.3f}" for weight in recipe["weights"])
    else:
        recipe = json.loads((run_dir / COMBINE_FILE).read_text())
        facts.update({f"{head} from": run for head, run in recipe["sources"].items()})
        facts["age cuts"] = str(recipe.get("age_cuts"))
    record = run_record(run_dir)
    facts["training data"] = str(record.get("data"))
    if record.get("extra_sources"):
        facts["extra photos"] = "; ".join(
            f"{e['path']} ({e['used_images']} of {e['images']} photos used)" for e in record["extra_sources"]
        )
    elif record.get("extra"):  # runs from before the sources were described
        facts["extra photos"] = "; ".join(str(source) for source in ExtraSpec.from_run(record).sources)
    if record.get("label_fixes"):
        fixes = record["label_fixes"]
        facts["label fixes"] = (
            f"{fixes['path']} ({fixes['rows']} rows, sha256 {fixes['sha256'][:12]}; "
            f"kept as {kfold_run_of(run_dir) / '{LABEL_FIXES_FILE}'})"
        )
    summary_path = run_dir / SUMMARY_FILE
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        if "wall_seconds" in summary:  # an ensemble's is the time to fit and write it, not its members' training
            seconds = summary["wall_seconds"]
            facts["fitting wall time" if judged.kind == "ensemble" else "training wall time"] = (
                f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
            )
    table = judged.table
    labels = table["label"].to_numpy(dtype=np.int64)
    mask, gender, age = decode(labels)
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    names = class_names(judged.thresholds)
    facts.update(
        {
            "persons / photos": f"{table['person_id'].nunique()} / {len(table)}",
            "mask wear / incorrect / not worn": " / ".join(str(int((mask == v).sum())) for v in range(3)),
            "female": f"{(gender == 1).mean():.1%}",
            "age groups": ", ".join(f"{n} {(age == v).mean():.1%}" for v, n in enumerate(judged.thresholds.names())),
            "rarest class": f"{names[int(counts.argmin())]} ({int(counts.min())} photos)",
        }
    )
    if judged.photos_note:
        facts["note"] = judged.photos_note
    data_keys = [
        k
        for k in facts
        if k
        in (
            "training data",
            "extra photos",
            "label fixes",
            "persons / photos",
            "mask wear / incorrect / not worn",
            "female",
            "age groups",
            "rarest class",
            "note",
        )
    ]
    columns = [{k: v for k, v in facts.items() if k not in data_keys}, {k: facts[k] for k in data_keys}]
    tables = "".join(
        "<table>"
        + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in column.items())
        + "</table>"
        for column in columns
    )
    return f"<div class='columns'>{tables}</div>"


def _worst_html(worst: pd.DataFrame, head: str, thresholds: AgeThresholds, judged: Judged) -> str:
    names = head_names(head, thresholds)
    title = f"<h3>{head}: most confident wrong predictions</h3>"
    if worst.empty:
        return title + "<p>none</p>"
    captions = [
        f"{r.person_id}\ntrue {names[r.true_value]}\npred {names[r.predicted_value]} {r.confidence:.2f}"
        for r in worst.itertuples()
    ]
    if not judged.has_photos or worst["path"].isna().any():
        rows = worst.assign(
            true_value=[names[v] for v in worst["true_value"]],
            predicted_value=[names[v] for v in worst["predicted_value"]],
        )
        return title + _table(rows.drop(columns=["path"], errors="ignore"))
    images = []
    for path in worst["path"]:
        try:
            images.append(read_resized(path, _THUMB_HW))
        except ImageError:
            images.append(np.full((*_THUMB_HW, 3), 128, dtype=np.uint8))
    return title + _figure(photo_grid([(head, images, captions)], cell=1.4))


def _table(frame: pd.DataFrame, highlight: set | None = None) -> str:
    """An HTML table; rows whose index is in ``highlight`` are marked."""
    rows = []
    for index, row in frame.iterrows():
        cells = "".join(f"<td>{html.escape(_format(value))}</td>" for value in row)
        rows.append(f"<tr class='hi'>{cells}</tr>" if highlight and index in highlight else f"<tr>{cells}</tr>")
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _format(value) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{value:.4f}"
    return str(value)


def _figure(figure) -> str:
    """A matplotlib figure as an embedded PNG (closed after drawing)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(figure)
    return f"<img src='data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}'>"


def _page(title: str, headline: dict, sections: list[tuple[str, str]]) -> str:
    calibration, group = headline["calibration"], headline["worst_group"]
    summary = (
        f"<p class='headline'>macro F1 <b>{headline['macro_f1']:.4f}</b> · accuracy {headline['accuracy']:.4f} · "
        f"mask {headline['mask_accuracy']:.4f} · gender {headline['gender_accuracy']:.4f} · "
        f"age {headline['age_accuracy']:.4f} · ECE {calibration['ece_before']:.3f} → {calibration['ece_after']:.3f} "
        f"(T = {calibration['temperature']:.2f}) · weakest group: {html.escape(str(group['attribute']))} "
        f"{html.escape(str(group['group']))} (macro F1 {group['macro_f1']:.3f}) · "
        f"{headline['photos']} photos of {headline['persons']} persons, {html.escape(headline['judged'])}</p>"
    )
    contents = " · ".join(f"<a href='#{key}'>{SECTIONS[key]}</a>" for key, _ in sections)
    blocks = "".join(f"<section id='{key}'><h2>{SECTIONS[key]}</h2>{body}</section>" for key, body in sections)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1250px;margin:2em auto;color:#222}}
img{{max-width:100%;border:1px solid #ddd;margin:4px 0}}
table{{border-collapse:collapse;margin:6px 0;font-size:13px}}
th,td{{padding:3px 10px;border-bottom:1px solid #eee;text-align:left}}
tr.hi td{{background:#fde2e1}} .columns{{display:flex;gap:40px;align-items:flex-start}}
.headline{{background:#f3f6fa;padding:10px;border-radius:4px}} nav{{margin:8px 0}}</style></head>
<body><h1>{html.escape(title)}</h1>{summary}<nav>{contents}</nav>{blocks}</body></html>
"""
