"""The Python API: ``maskcls.load``, ``maskcls.train`` and ``maskcls.solve``, what a notebook imports.

The ``maskcls`` command is a thin shell over these three. Only ``maskcls.core`` is imported here at the top, so
``import maskcls`` stays light and a wrong argument is refused before torch is loaded; training, prediction and
solving import their layers inside the function that needs them. An exported ``.onnx`` file is loaded and run
without torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .core.artifacts import (
    MODEL_META_FILE,
    ONNX_SUFFIX,
    SUMMARY_FILE,
    RunError,
    check_trained_dir,
    combination_sources,
    directory_kind,
    ensemble_members,
    fold_dir,
    kfold_runs,
    read_json,
    read_summary,
    run_labels,
    solve_final,
)
from .core.budget import parse_budget

if TYPE_CHECKING:
    import pandas as pd

    from .core.config import Config

__all__ = ["Model", "SolveResult", "TrainResult", "load", "parse_budget", "solve", "train"]

DEFAULT_BATCH_SIZE = 64
DEFAULT_BUDGET = "20m"
PHOTO_COLUMNS = ["image", "class", "mask", "gender", "age_group"]  # then p0..p17 and error


# ----------------------------------------------------------------------------- load, predict


class Model:
    """A trained directory (k-fold run, ensemble, combination, solve output) or an exported ``.onnx`` file,
    ready to predict photos. Made by ``maskcls.load``."""

    def __init__(self, path: Path, kind: str, info: dict[str, Any], onnx=None):
        self.path = path
        self.kind = kind
        self.info = info
        self._onnx = onnx  # export.runtime.OnnxModel for kind "onnx"

    def __repr__(self) -> str:
        return f"maskcls.Model(kind={self.kind!r}, path={str(self.path)!r})"

    @property
    def predictions_dir(self) -> Path:
        """Where ``predict_eval`` writes when not told: the directory itself, a solve's final combination,
        the folder of an ``.onnx`` file."""
        if self.kind == "onnx":
            return self.path.parent
        return solve_final(self.path) if self.kind == "solve" else self.path

    def predict(
        self,
        photos: str | Path | Iterable[str | Path],
        tta: str | None = None,
        batch_size: int | None = None,
        *,
        calibrate: bool = False,
        accelerator: str = "auto",
        out: str | Path | None = None,
        progress: bool = False,
    ) -> pd.DataFrame:
        """One row per photo: ``image``, ``class``, ``mask``, ``gender``, ``age_group``, ``p0``..``p17`` and
        ``error`` (empty, or why the photo could not be read: its class is then missing and its probabilities NaN).

        ``photos`` is a folder (every .jpg / .jpeg / .png under it), one path or a list of paths. ``tta`` names
        another test-time augmentation set than the model's (not for ``.onnx`` files, whose TTA is fixed at
        export); ``calibrate`` applies the temperature stored by ``maskcls calibrate``; ``out`` also writes
        ``predictions.csv`` there (the table of ``maskcls predict PHOTOS --out``).
        """
        import numpy as np
        import pandas as pd

        from .core.tables import PROB_COLUMNS
        from .inference.outputs import file_rows

        paths = _photo_paths(photos)
        frame = pd.DataFrame({"image_id": paths, "path": paths})
        batch_size = batch_size or DEFAULT_BATCH_SIZE
        if self.kind == "onnx":
            self._refuse_for_onnx(tta=tta, calibrate=calibrate)
            from .export.runtime import predict_photos

            prediction = predict_photos(self._onnx, frame, batch_size, progress=progress)
            age_names = self._onnx.metadata.labels.age_names
        else:
            prediction = self._predict_table(frame, tta, batch_size, accelerator, progress, calibrate)
            age_names = run_labels(self.predictions_dir).thresholds.names()
        rows = file_rows(paths, prediction, age_names, out)
        table = pd.DataFrame(
            {
                "image": rows["file"],
                "class": rows["class"],
                "mask": rows["mask"],
                "gender": rows["gender"],
                "age_group": rows["age"],
            }
        )
        probs = pd.DataFrame(np.asarray(prediction.probs, dtype=np.float64), columns=PROB_COLUMNS)
        return pd.concat([table, probs, rows[["error"]]], axis=1)

    def predict_eval(
        self,
        eval_dir: str | Path,
        out: str | Path | None = None,
        *,
        tta: str | None = None,
        batch_size: int | None = None,
        on_bad_image: str = "fail",
        mc_dropout: int = 0,
        calibrate: bool = False,
        persons: str | Path | None = None,
        group_size: int | None = None,
        accelerator: str = "auto",
        progress: bool = True,
    ) -> pd.DataFrame:
        """Predict an eval folder (``info.csv`` + ``images/``): write ``test_probs.csv``, ``submission.csv`` and
        ``predict.json`` to ``out`` (default: ``predictions_dir``) and return the submission.

        ``persons`` (a groups CSV from ``maskcls group``) and ``group_size`` make the answers person-consistent;
        ``mc_dropout`` passes of Monte-Carlo dropout add ``mc_mutual_information`` (not for ``.onnx`` files).
        """
        batch_size = batch_size or DEFAULT_BATCH_SIZE
        if self.kind == "onnx":
            self._refuse_for_onnx(tta=tta, calibrate=calibrate, mc_dropout=mc_dropout)
            from .export.runtime import predict_eval_onnx

            return predict_eval_onnx(
                self.path,
                eval_dir,
                out,
                on_bad_image=on_bad_image,
                batch_size=batch_size,
                progress=progress,
                persons=persons,
                group_size=group_size,
            )
        from .inference.predict import predict_eval

        return predict_eval(
            self.predictions_dir,
            eval_dir,
            out,
            on_bad_image=on_bad_image,
            tta=tta,
            mc_samples=mc_dropout,
            batch_size=batch_size,
            accelerator=accelerator,
            progress=progress,
            calibrate=calibrate,
            persons=persons,
            group_size=group_size,
        )

    def _predict_table(self, frame, tta, batch_size, accelerator, progress, calibrate):
        from .core.artifacts import stored_temperature
        from .core.metrics import apply_temperature
        from .core.tables import PROB_COLUMNS
        from .inference.predict import predict_table

        directory = self.predictions_dir
        temperature = stored_temperature(directory) if calibrate else None  # fails before predicting
        prediction = predict_table(
            directory, frame, tta=tta, batch_size=batch_size, accelerator=accelerator, progress=progress
        )
        if prediction.probs.shape[1] != len(PROB_COLUMNS):
            raise RunError(
                f"{directory} predicts a single head, not the 18 classes; predict with the combined directory instead"
            )
        if temperature is not None:
            prediction.probs = apply_temperature(prediction.probs, temperature)
        return prediction

    def _refuse_for_onnx(self, tta=None, calibrate=False, mc_dropout=0) -> None:
        if tta is not None or mc_dropout:
            raise ValueError(
                f"{self.path}: the TTA set of an exported model is fixed when exporting (maskcls export --tta SET), "
                "and it has no Monte-Carlo dropout"
            )
        if calibrate:
            raise ValueError(f"{self.path}: calibrate needs a trained directory (its temperature is stored there)")


def load(path: str | Path) -> Model:
    """A trained directory (k-fold run, ensemble, combination, solve output) or an exported ``.onnx`` file as a
    ``Model``; anything else raises ``RunError`` saying what was expected."""
    path = Path(path)
    kind = directory_kind(path)
    if kind == "onnx" or (path.suffix == ONNX_SUFFIX and not path.exists()):
        from .export.runtime import OnnxModel

        onnx = OnnxModel(path)  # a missing or unreadable file is an ExportedModelError saying so
        return Model(path, "onnx", _onnx_info(path, onnx.metadata), onnx)
    if path.is_file():
        raise RunError(f"{path} is a file but not an exported .onnx model; give a trained directory or a .onnx file")
    if kind == "solve":
        final = solve_final(path)
        if not (final / SUMMARY_FILE).is_file():
            raise RunError(
                f"{path} is an unfinished solve (no {final.name}/{SUMMARY_FILE} yet): "
                f"continue it with `maskcls solve --resume {path}`"
            )
        check_trained_dir(final)
    else:
        check_trained_dir(path)
    return Model(path, kind, _directory_info(path, kind))


def _photo_paths(photos) -> list[str]:
    """The photos a folder holds (recursively, sorted), or the one path or list of paths given, as strings."""
    from .data.layout import IMAGE_SUFFIXES

    if isinstance(photos, (str, Path)):
        photos = Path(photos)
        if photos.is_dir():
            found = sorted(p for p in photos.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"no photos (.jpg, .jpeg, .png) in {photos}")
            return [str(p) for p in found]
        return [str(photos)]
    paths = [str(p) for p in photos]
    if not paths:
        raise ValueError("no photos given")
    return paths


def _directory_info(path: Path, kind: str) -> dict[str, Any]:
    """What a trained directory is: its k-fold runs' backbones, sizes, heads and folds, and its label schema."""
    from .core.config import DataConfig

    source = solve_final(path) if kind == "solve" else path
    runs = kfold_runs(source)
    metas = [_model_meta(run) for run in runs]
    labels = run_labels(source)
    summary = read_summary(path) if (path / SUMMARY_FILE).is_file() else {}
    info: dict[str, Any] = {
        "kind": kind,
        "path": str(path),
        "backbone": _one_or_all(meta["model"]["name"] for meta in metas),
        "image_size": _one_or_all(DataConfig(image_size=meta["data"]["image_size"]).size_hw for meta in metas),
        "head": _one_or_all(meta["model"]["head"] for meta in metas),
        "tta": _one_or_all(meta.get("tta", {}).get("name", "none") for meta in metas),
        "labels": {"age_middle": labels.age_middle, "age_old": labels.age_old},
        "age_groups": list(labels.thresholds.names()),
        "runs": [str(run) for run in runs],
        "folds": {str(run): [entry["fold"] for entry in read_summary(run)["folds"]] for run in runs},
    }
    if kind == "ensemble":
        info["members"] = [str(member) for member in ensemble_members(path)]
    elif kind == "combination":
        info["members"] = {head: str(source) for head, source in combination_sources(path).items()}
    elif kind == "solve":
        info["final"] = str(source)
        info["members"] = (
            [str(member) for member in ensemble_members(source)] if directory_kind(source) == "ensemble" else []
        )
    if "oof_macro_f1" in summary:
        info["oof_macro_f1"] = summary["oof_macro_f1"]
    return info


def _model_meta(run: Path) -> dict:
    """``model.json`` of a k-fold run's first finished fold."""
    folds = read_summary(run)["folds"]
    return read_json(fold_dir(run, folds[0]["fold"]) / MODEL_META_FILE)


def _one_or_all(values: Iterable):
    """The value all k-fold runs share, else the list of each one's (in ``info["runs"]`` order)."""
    values = list(values)
    return values[0] if len(set(values)) == 1 else values


def _onnx_info(path: Path, metadata) -> dict[str, Any]:
    return {
        "kind": "onnx",
        "path": str(path),
        "backbone": metadata.architecture,
        "image_size": tuple(metadata.preprocess.image_size),
        "head": metadata.head,
        "tta": metadata.tta.name,
        "labels": {"age_middle": metadata.labels.age_middle, "age_old": metadata.labels.age_old},
        "age_groups": list(metadata.labels.age_names),
        "folds": list(metadata.folds),
        "run_id": metadata.run_id,
        "model_id": metadata.model_id,
    }


# ----------------------------------------------------------------------------- train


@dataclass
class TrainResult:
    """What ``maskcls.train`` made: the run directory and its ``summary.json``."""

    run_dir: Path
    summary: dict = field(repr=False)

    @property
    def oof_macro_f1(self) -> float:
        """The out-of-fold macro F1 (of the combination, for one with an age model or separate heads)."""
        return self.summary["oof_macro_f1"]

    @property
    def kind(self) -> str:
        """``run`` for a k-fold run, ``combination`` for one with an age model or separate heads."""
        return directory_kind(self.run_dir)

    def load(self) -> Model:
        return load(self.run_dir)


def train(
    data: str | Path | None = None,
    config: str | Path | None = "lite0_baseline",
    out: str | Path | None = None,
    overrides: Iterable[str] | Mapping[str, Any] = (),
    *,
    resume: bool = False,
    force: bool = False,
    age_config: str | Path | None = None,
    extra: Iterable[str | Path] | str | Path = (),
    extra_max_per_class: int | None = None,
    extra_ratio: float | None = None,
    label_fixes: str | Path | None = None,
    on_bad_image: str | None = None,
    devices: str | int | None = None,
    num_nodes: int | None = None,
    strategy: str | None = None,
    loggers: Iterable[str] = (),
    compile: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train one model per person-level fold of ``data`` into ``out`` (``maskcls train``); returns a ``TrainResult``.

    ``config`` is a shipped recipe's name or a YAML path (None: the defaults, which are the lite0 baseline);
    ``overrides`` are ``key=value`` strings as for ``--set`` (or a mapping of them), applied to ``age_config`` too.
    ``on_bad_image``, ``devices``, ``num_nodes``, ``strategy``, ``loggers`` and ``compile`` are shorthands for
    the recipe keys ``data.on_bad_image`` and ``train.*``. With ``age_config`` (or a recipe with
    ``model.head: separate``) ``out`` becomes a combination. ``resume=True`` continues the killed run in ``out``.
    The recipe is read and checked before anything is trained or written.
    """
    if out is None:
        raise ValueError("give out, the run directory to create (or to continue with resume=True)")
    out = Path(out)
    if resume:
        from .training.kfold import resume_kfold

        return TrainResult(out, resume_kfold(out, progress=progress))
    if data is None:
        raise ValueError("give data, a training folder in the competition layout (or resume=True)")
    settings = _overrides(overrides)
    for key, value in (
        ("data.on_bad_image", on_bad_image),
        ("train.devices", devices),
        ("train.num_nodes", num_nodes),
        ("train.strategy", strategy),
    ):
        if value is not None:
            settings.append(f"{key}={value}")
    loggers = [loggers] if isinstance(loggers, str) else list(loggers)
    if loggers:
        settings.append(f"train.loggers=[{', '.join(loggers)}]")
    if compile:
        settings.append("train.compile=true")
    cfg = _config(config, settings)
    age_cfg = _config(age_config, settings) if age_config is not None else None
    extra = [extra] if isinstance(extra, (str, Path)) else list(extra)
    if age_cfg is not None or cfg.model.head == "separate":
        if extra or extra_max_per_class is not None or extra_ratio is not None:
            raise ValueError("extra photos are not added to runs with an age model or separate heads")
        from .training.combine import train_separate, train_with_age_model

        if age_cfg is not None:
            summary = train_with_age_model(
                data, cfg, age_cfg, out, force=force, progress=progress, label_fixes=label_fixes
            )
        else:
            summary = train_separate(data, cfg, out, force=force, progress=progress, label_fixes=label_fixes)
        return TrainResult(out, summary)
    from .data.extra import ExtraSpec
    from .training.kfold import train_kfold

    extra_spec = ExtraSpec(ExtraSpec.of(extra).sources, extra_max_per_class, extra_ratio)
    summary = train_kfold(data, cfg, out, force=force, progress=progress, extra=extra_spec, label_fixes=label_fixes)
    return TrainResult(out, summary)


def _overrides(overrides: Iterable[str] | Mapping[str, Any]) -> list[str]:
    if isinstance(overrides, str):
        return [overrides]
    if isinstance(overrides, Mapping):
        return [f"{key}={value}" for key, value in overrides.items()]
    return list(overrides)


def _config(config: str | Path | None, overrides: list[str]) -> Config:
    from .core.config import load_config

    return load_config(config, overrides)


# ----------------------------------------------------------------------------- solve


@dataclass
class SolveResult:
    """What ``maskcls.solve`` made: the solve directory, its summary, the submission and the plan it followed.
    A dry run has only the plan (``summary`` and ``submission`` are None)."""

    out_dir: Path
    plan: Any = field(repr=False)  # solve.plan.Plan: stages with estimated (and, when done, actual) minutes
    summary: dict | None = field(default=None, repr=False)
    submission: Path | None = None

    @property
    def dry_run(self) -> bool:
        return self.summary is None

    @property
    def oof_macro_f1(self) -> float | None:
        """The honest out-of-fold macro F1 of the final combination."""
        return None if self.summary is None else self.summary["final"].get("oof_macro_f1")

    def load(self) -> Model:
        """The final combination as a ``Model``."""
        if self.summary is None:
            raise RunError("a dry run trains nothing: there is no model to load")
        return load(self.out_dir)


def solve(
    data: str | Path | None = None,
    eval_dir: str | Path | None = None,
    budget: str | float | None = None,
    out: str | Path = "runs/solve",
    *,
    preset: str = "best",
    device: str = "auto",
    dry_run: bool = False,
    resume: bool = False,
    candidates: Iterable[str | tuple[str, int]] = (),
    overrides: Iterable[str] | Mapping[str, Any] = (),
    recipes: str | Path | None = None,
    group_size: int | None = 7,
    on_bad_image: str = "fail",
    max_epochs: int | None = None,
    force: bool = False,
    progress: bool = True,
    announce=None,
    holdout: float = 0.15,
    real_masks: str | Path | None = None,
    faces: str | Path | None = None,
    faces_check: bool = False,
    faces_share: float | None = None,
) -> SolveResult:
    """The best submission within ``budget`` (``maskcls solve``): calibrate, plan, train members, ensemble,
    pseudo-label, person-consistency, in ``out``; returns a ``SolveResult``.

    ``budget`` is ``"45m"``, ``"1h30m"``, ``"90s"`` or minutes (default 20 minutes; with ``resume=True`` the
    recorded budget unless given). ``candidates`` are backbones to calibrate instead of the built-in ladder,
    ``"BACKBONE@SIZE"`` strings or ``(backbone, size)`` pairs; ``overrides`` apply to every member's recipe;
    ``group_size`` is the photos per person in the eval set (None: unknown). ``announce(plan)`` is called once
    the plan is made, before anything is trained. ``dry_run`` calibrates and plans only (and writes ``plan.json``).
    ``holdout`` is the share of training persons set aside to take every keep / drop decision on (0: decide on
    the out-of-fold proxy); ``summary["holdout"]`` is the final submission's score on them. ``real_masks`` is a
    folder of real photos with a ``labels.csv`` (``path``, ``mask``) that the final model's mask head is scored
    on (``summary["real_masks"]``). ``faces`` is plain face photos (a CSV with path, gender, age, or a folder)
    made into masked training persons for the rarest groups, which every member trains with; ``faces_check``
    trains the lead without them too and keeps them only where the holdout says they help (``summary["faces"]``);
    ``faces_share`` caps the extra persons as a share of the training persons (default: the planner chooses
    among 0.25, 0.5 and 1 by the budget; 0.25 with ``faces_check``).
    Arguments are checked before anything heavy is imported.
    """
    out = Path(out)
    minutes = parse_budget(budget) if budget is not None else None
    if not 0 <= holdout < 0.5:
        raise ValueError(f"the holdout share must be at least 0 and below 0.5, got {holdout}")
    if faces_check and not faces:
        raise ValueError("--faces-check compares training with and without --faces: give --faces SOURCE too")
    if faces_share is not None and not (faces and 0 < faces_share <= 4):
        raise ValueError(f"--faces-share must be above 0 and at most 4, with --faces SOURCE; got {faces_share}")
    pairs = [_candidate(item) for item in candidates]
    settings = _overrides(overrides)
    planned = []

    def keep(plan) -> None:
        planned.append(plan)
        if announce is not None:
            announce(plan)

    if resume:
        from .solver.run import resume_solve

        summary = resume_solve(out, minutes, progress=progress, announce=keep)
        return SolveResult(out, planned[-1] if planned else None, summary, Path(summary["submission"]))
    if data is None or eval_dir is None:
        raise ValueError("give data (a training folder) and eval_dir (the eval folder), or resume=True")
    from .solver.run import solve as run_solve

    summary = run_solve(
        data,
        eval_dir,
        out,
        minutes if minutes is not None else parse_budget(DEFAULT_BUDGET),
        preset=preset,
        accelerator=device,
        dry_run=dry_run,
        candidates=pairs or None,
        overrides=settings,
        recipes_dir=recipes,
        group_size=group_size or None,
        on_bad_image=on_bad_image,
        max_epochs=max_epochs,
        force=force,
        progress=progress,
        announce=keep,
        holdout_share=holdout,
        real_masks=real_masks,
        faces=faces,
        faces_check=faces_check,
        faces_share=faces_share,
    )
    if dry_run:
        return SolveResult(out, planned[-1])
    return SolveResult(out, planned[-1], summary, Path(summary["submission"]))


def _candidate(item: str | tuple[str, int]) -> tuple[str, int]:
    if not isinstance(item, str):
        name, size = item
        return str(name), int(size)
    name, sep, size = item.rpartition("@")
    if not sep or not name or not size.isdigit():
        raise ValueError(f"candidate '{item}': write BACKBONE@SIZE, e.g. tf_efficientnet_lite0@128")
    return name, int(size)
