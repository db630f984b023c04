"""The ``maskcls`` command. Each sub-command parses its arguments, calls one library function and
prints the result; everything it does is importable without the CLI."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help=__doc__)
out = Console()
err = Console(stderr=True)


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
            err.print(f"[bold red]error:[/] {error}", markup=True, highlight=False)
            raise typer.Exit(2) from None

    return run


@app.command("demo-data")
@_user_errors
def demo_data(
    out_dir: Path = typer.Argument(..., help="Folder to create (train/, eval/, eval_answers.csv)."),
    persons: int = typer.Option(200, help="Persons in train/ (7 photos each)."),
    eval_persons: int = typer.Option(40, help="Persons in eval/."),
    seed: int = typer.Option(0),
    force: bool = typer.Option(False, "--force", help="Replace out_dir if it exists."),
):
    """Draw the built-in demo data set (synthetic faces) in the competition layout."""
    from .data.demo import generate_demo

    generate_demo(out_dir, persons=persons, eval_persons=eval_persons, seed=seed, force=force)
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
    resume: Optional[Path] = typer.Option(None, help="Continue the killed run in this directory."),
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
    overrides = list(set_) + ([f"data.on_bad_image={on_bad_image}"] if on_bad_image else [])
    cfg = load_config(config, overrides)
    summary = train_kfold(data, cfg, out_dir, force=force, progress=not quiet)
    _print_summary(summary, out_dir)


@app.command()
@_user_errors
def predict(
    files: Optional[List[Path]] = typer.Argument(None, help="Photos to classify (prints a table)."),
    run: Path = typer.Option(..., help="A finished run directory (runs/NAME)."),
    data: Optional[Path] = typer.Option(None, help="An eval/ folder (info.csv + images/): writes submission.csv."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Where test_probs.csv and submission.csv go (default: the run)."),
    on_bad_image: str = typer.Option("fail", help="fail, or skip unreadable eval photos (they get the fallback class)."),
    batch_size: int = typer.Option(64),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
):
    """Predict an eval folder (submission.csv) or loose photos (a table)."""
    from .inference.predict import predict_eval, predict_files

    if data is None and not files:
        raise typer.BadParameter("give --data EVAL_DIR or one or more photo files")
    if data is not None:
        submission = predict_eval(run, data, out_dir, on_bad_image, batch_size, progress=not quiet)
        target = out_dir or run
        out.print(f"wrote {target}/submission.csv ({len(submission)} rows) and {target}/test_probs.csv")
    if files:
        table = predict_files(run, files)
        view = Table("file", "class", "mask", "gender", "age", "probability")
        for row in table.itertuples():
            if row.error:
                view.add_row(row.file, "-", "-", "-", "-", f"[red]{row.error}[/]")
            else:
                view.add_row(row.file, str(row._2), row.mask, row.gender, row.age, f"{row.probability:.3f}")
        out.print(view)


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


def _print_summary(summary: dict, run_dir: Path) -> None:
    table = Table("fold", "macro F1", "accuracy", "mask acc", "gender acc", "age acc", "best epoch", "seconds", title=f"run {run_dir}")
    for fold in summary["folds"]:
        table.add_row(str(fold["fold"]), f"{fold['macro_f1']:.4f}", f"{fold['accuracy']:.4f}", f"{fold['mask_accuracy']:.4f}", f"{fold['gender_accuracy']:.4f}", f"{fold['age_accuracy']:.4f}", str(fold["best_epoch"]), f"{fold['wall_seconds']:.0f}")
    table.add_row("OOF", f"{summary['oof_macro_f1']:.4f}", f"{summary['oof_accuracy']:.4f}", f"{summary['mask_accuracy']:.4f}", f"{summary['gender_accuracy']:.4f}", f"{summary['age_accuracy']:.4f}", "", f"{summary['wall_seconds']:.0f}", style="bold")
    out.print(table)
    out.print(f"out-of-fold macro F1: [bold]{summary['oof_macro_f1']:.4f}[/]  (files in {run_dir})")


if __name__ == "__main__":
    app()
