"""Predict with any trained directory: a k-fold run, an ensemble, or a main + age-specific combination.

A k-fold run averages its fold models' probabilities; an ensemble combines its members' (which may
be ensembles too); a combined run joins the main run's mask and gender with the age model's age.
``predict_eval`` fills the competition's ``info.csv`` (same rows, same order) and writes
``test_probs.csv`` (p0..p17 plus ``entropy``, ``disagreement`` and, with Monte-Carlo dropout,
``mc_mutual_information``) beside ``submission.csv``; ``predict_files`` answers for loose photos.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.artifacts import (
    COMBINE_FILE,
    ENSEMBLE_FILE,
    MODEL_META_FILE,
    OOF_FILE,
    PREDICT_SKIPPED_FILE,
    SUMMARY_FILE,
    RunError,
    check_trained_dir,
    fold_dir,
    kfold_runs,
    stored_temperature,
)
from ..core.config import DataConfig, LabelsConfig
from ..core.metrics import apply_temperature, disagreement
from ..core.progress import RunProgress
from ..core.tables import PROB_COLUMNS
from ..data.cache import cache_for
from ..data.layout import DataError, Problem, read_eval, skip_hint, union_problems
from ..engine.predictor import predict_outputs
from ..ensemble.person_consistency import read_groups
from ..models.artifact import ModelFileError, load_model
from ..models.factory import MaskNet
from .outputs import Prediction, argmax_or, file_rows, fill_rows, write_eval_predictions


@dataclass
class TrainedRun:
    """The fold models of a finished k-fold run, and how they were fed and evaluated."""

    directory: Path
    models: list[MaskNet]
    meta: dict
    fallback_class: int
    folds: list[int] = field(default_factory=list)

    @property
    def data_cfg(self) -> DataConfig:
        return DataConfig.model_validate(self.meta["data"])

    @property
    def labels_cfg(self) -> LabelsConfig:
        return LabelsConfig.model_validate(self.meta["labels"])

    @property
    def task(self) -> str:
        return self.meta.get("task", "classes")


def load_run(run_dir: str | Path) -> TrainedRun:
    """The fold models of a finished run, checked to be complete and consistent with each other."""
    run_dir = Path(run_dir)
    check_trained_dir(run_dir)
    summary_path = run_dir / SUMMARY_FILE
    summary = json.loads(summary_path.read_text())
    folds = [entry["fold"] for entry in summary.get("folds", [])]
    if not folds:
        raise RunError(f"{summary_path} lists no trained folds")
    models, metas = [], []
    for fold in folds:
        try:
            model, meta = load_model(fold_dir(run_dir, fold))
        except ModelFileError as err:
            raise RunError(f"{run_dir} is incomplete: {err}") from None
        models.append(model)
        metas.append(meta)
    for fold, meta in zip(folds[1:], metas[1:], strict=False):
        for key in ("data", "labels", "task"):
            if _setting(meta, key) != _setting(metas[0], key):
                raise RunError(
                    f"{run_dir} is inconsistent: fold_{fold}/{MODEL_META_FILE} has {key}={meta.get(key)}, "
                    f"fold_{folds[0]} has {metas[0].get(key)}"
                )
    oof_path = run_dir / OOF_FILE
    fallback = int(pd.read_csv(oof_path, usecols=["label"])["label"].mode()[0]) if oof_path.is_file() else 0
    return TrainedRun(run_dir, models, metas[0], fallback, folds)


def _setting(meta: dict, key: str):
    """A fold's setting as it is used: keys a newer version added (e.g. ``data.face_crop``) read as their
    defaults, so a run resumed across versions stays consistent."""
    value = meta.get(key)
    if key == "data" and value is not None:
        return DataConfig.model_validate(value)
    if key == "labels" and value is not None:
        return LabelsConfig.model_validate(value)
    return value


def prediction_plan(run_dir: str | Path, title: str, enabled: bool = True) -> RunProgress:
    """One stage per k-fold run behind ``run_dir`` (ensemble members, combined runs), one unit per fold model."""

    check_trained_dir(Path(run_dir))
    stages = []
    for run in kfold_runs(run_dir):
        summary = run / SUMMARY_FILE
        stages.append((str(run), len(json.loads(summary.read_text()).get("folds", [])) if summary.is_file() else 1))
    return RunProgress(title, stages, unit="model", enabled=enabled)


def predict_table(
    run_dir: str | Path,
    photos: pd.DataFrame,
    tta: str | None = None,
    mc_samples: int = 0,
    batch_size: int = 64,
    accelerator: str = "auto",
    cache_dir: str | None = None,
    progress: bool = True,
    plan: RunProgress | None = None,
) -> Prediction:
    """Predictions of ``photos`` (``image_id``, ``path``) by whatever kind of trained directory ``run_dir`` is.

    ``tta`` overrides the test-time augmentation a run was evaluated with (its recipe's ``tta.name``).
    ``plan`` (see ``prediction_plan``) is advanced once per fold model.
    """
    run_dir = Path(run_dir)
    check_trained_dir(run_dir)
    options = dict(
        tta=tta,
        mc_samples=mc_samples,
        batch_size=batch_size,
        accelerator=accelerator,
        cache_dir=cache_dir,
        progress=progress,
        plan=plan,
    )
    if (run_dir / ENSEMBLE_FILE).is_file():
        from ..ensemble.build import load_ensemble

        ensemble = load_ensemble(run_dir)
        members = [predict_table(member, photos, **options) for member in ensemble.members]
        member_probs = [m.probs for m in members]
        probs = ensemble.combine(member_probs)
        readable = np.all(np.isfinite(probs), axis=1)
        spread = np.full(len(probs), np.nan)
        spread[readable] = disagreement(np.stack(member_probs)[:, readable])
        return Prediction(
            probs, ensemble.answers(member_probs), {"disagreement": spread}, union_problems(m.problems for m in members)
        )
    if (run_dir / COMBINE_FILE).is_file():
        from ..training.combine import load_combination

        combination = load_combination(run_dir)
        parts = {run: predict_table(run, photos, **options) for run in combination.runs}
        probs = combination.combine({run: (part.probs, part.columns.get("age_pred")) for run, part in parts.items()})
        return Prediction(
            probs,
            argmax_or(probs, combination.fallback_class),
            {},
            union_problems(part.problems for part in parts.values()),
        )
    return _predict_folds(load_run(run_dir), photos, **options)


def _predict_folds(
    run: TrainedRun, photos: pd.DataFrame, tta, mc_samples, batch_size, accelerator, cache_dir, progress, plan
) -> Prediction:
    data_cfg = run.data_cfg
    cache = cache_for(photos, data_cfg, cache_dir, progress)
    problems = cache.problems(photos["path"].tolist())
    bad_paths = {p.file for p in problems}
    good = np.flatnonzero(~photos["path"].isin(bad_paths).to_numpy())
    tta_cfg = run.meta.get("tta", {})
    if plan is not None:
        plan.start(str(run.directory), units=len(run.models))
    outputs = []
    for fold, model in zip(run.folds, run.models, strict=False):
        outputs.append(
            predict_outputs(
                model,
                data_cfg,
                str(cache.path),
                good,
                batch_size=batch_size,
                accelerator=accelerator,
                progress=progress,
                tta=tta or tta_cfg.get("name", "none"),
                merge=tta_cfg.get("merge", "mean_probs"),
                mc_samples=mc_samples,
                plan=plan,
            )
        )
        if plan is not None:
            plan.advance(1, f"fold {fold}")
    if plan is not None:
        plan.finish(str(run.directory))
    width = outputs[0]["probs"].shape[1] if len(good) else (18 if run.task == "classes" else 3)
    probs = np.full((len(photos), width), np.nan, dtype=np.float64)
    fold_probs = np.stack([o["probs"] for o in outputs]) if len(good) else np.zeros((len(outputs), 0, width))
    probs[good] = fold_probs.mean(axis=0)
    columns = {"disagreement": fill_rows(len(photos), good, disagreement(fold_probs) if len(good) else [])}
    if cache.faces is not None:  # data.face_crop: 1 = cropped to the face found, 0 = no face, the whole photo
        columns["face_found"] = fill_rows(len(photos), good, cache.face_found()[good].astype(float))
    for key in ("age_value", "mc_mutual_information"):
        if len(good) and key in outputs[0]:
            columns["age_pred" if key == "age_value" else key] = fill_rows(
                len(photos), good, np.mean([o[key] for o in outputs], axis=0)
            )
    return Prediction(probs, argmax_or(probs, run.fallback_class), columns, problems)


def check_photos(
    run_dir: str | Path, photos: pd.DataFrame, cache_dir: str | None = None, progress: bool = True
) -> list[Problem]:
    """Decode ``photos`` (``image_id``, ``path``) the way every k-fold run behind ``run_dir`` reads them, without
    loading a model; returns the unreadable ones. The decoded pixels stay in the cache for the prediction."""
    seen, problems = set(), []
    for run in kfold_runs(run_dir):
        data_cfg = _run_data_cfg(run)
        key = data_cfg.model_dump_json()
        if key in seen:
            continue
        seen.add(key)
        cache = cache_for(photos, data_cfg, cache_dir, progress)
        problems.append(cache.problems(photos["path"].tolist()))
    return union_problems(problems)


def _run_data_cfg(run: Path) -> DataConfig:
    """How a k-fold run's models read photos, from its first fold's ``model.json`` (no weights are read)."""
    folds = [entry["fold"] for entry in json.loads((run / SUMMARY_FILE).read_text()).get("folds", [])]
    if not folds:
        raise RunError(f"{run / SUMMARY_FILE} lists no trained folds")
    meta_path = fold_dir(run, folds[0]) / MODEL_META_FILE
    try:
        return DataConfig.model_validate(json.loads(meta_path.read_text())["data"])
    except (OSError, ValueError, KeyError) as err:
        raise RunError(f"{run} is incomplete: cannot read {meta_path} ({type(err).__name__}: {err})") from None


def predict_eval(
    run_dir: str | Path,
    eval_dir: str | Path,
    out_dir: str | Path | None = None,
    on_bad_image: str = "fail",
    tta: str | None = None,
    mc_samples: int = 0,
    batch_size: int = 64,
    accelerator: str = "auto",
    cache_dir: str | None = None,
    progress: bool = True,
    calibrate: bool = False,
    persons: str | Path | None = None,
    group_size: int | None = None,
) -> pd.DataFrame:
    """Write ``test_probs.csv`` and ``submission.csv`` for ``eval_dir``; returns the submission.

    With ``on_bad_image="skip"`` unreadable photos keep their row (the run's most frequent class) and
    are listed, one row per photo, in ``predict_skipped.csv``; ``predict.json`` records how many.
    ``calibrate`` applies the temperature stored by ``maskcls calibrate`` to the probabilities (never to the answers);
    ``predict.json`` records it.
    ``persons`` (a groups CSV from ``maskcls group``) adds person-consistent probabilities ``person_p0..17``
    and a ``group`` column beside the raw ``p0..p17`` (see ``maskcls.persons``); ``submission.csv`` then
    takes their argmax. With ``group_size``, complete groups get their mask states assigned (5/1/1 for 7).
    """
    run_dir = Path(run_dir)
    plan = prediction_plan(run_dir, f"predict {eval_dir}", enabled=progress)
    out_dir = Path(out_dir) if out_dir else run_dir
    info, problems = read_eval(eval_dir)
    hint = skip_hint(PREDICT_SKIPPED_FILE)
    # Every photo is decoded (once, into the cache the models then read) and checked before any model is loaded.
    problems = union_problems([problems, check_photos(run_dir, info, cache_dir, progress)])
    if problems and on_bad_image == "fail":
        raise DataError(f"{len(problems)} problem(s) found in {eval_dir}; nothing was predicted.", problems, hint)
    temperature = stored_temperature(run_dir) if calibrate else None  # a missing calibration fails before predicting
    groups = (
        read_groups(persons, info["image_id"]) if persons is not None else None
    )  # checked before the (long) prediction
    prediction = predict_table(run_dir, info, tta, mc_samples, batch_size, accelerator, cache_dir, progress, plan)
    if prediction.probs.shape[1] != len(PROB_COLUMNS):
        raise RunError(
            f"{run_dir} predicts a single head, not the 18 classes; predict with the combined directory instead"
        )
    if temperature is not None:
        prediction.probs = apply_temperature(prediction.probs, temperature)
    record = {
        "tta": tta,
        "mc_dropout": mc_samples,
        "temperature": temperature,
        "persons": str(Path(persons).resolve()) if persons else None,
        "group_size": group_size,
    }
    return write_eval_predictions(
        eval_dir, out_dir, info, prediction, problems, on_bad_image, record, groups, group_size
    )


def predict_files(
    run_dir: str | Path,
    files: list[str | Path],
    tta: str | None = None,
    accelerator: str = "auto",
    out_dir: str | Path | None = None,
    calibrate: bool = False,
) -> pd.DataFrame:
    """One row per photo: its shortest distinct name, class, mask, gender, age group and probability, or
    (``error``) why it could not be read; failed rows have no class. ``out_dir``: also write ``predictions.csv`` there.
    ``calibrate``: probabilities scaled by the temperature stored by ``maskcls calibrate``."""
    photos = pd.DataFrame({"image_id": [str(f) for f in files], "path": [str(f) for f in files]})
    temperature = stored_temperature(run_dir) if calibrate else None
    prediction = predict_table(run_dir, photos, tta=tta, accelerator=accelerator, progress=False)
    if prediction.probs.shape[1] != len(PROB_COLUMNS):
        raise RunError(
            f"{run_dir} predicts a single head, not the 18 classes; predict with the combined directory instead"
        )
    if temperature is not None:
        prediction.probs = apply_temperature(prediction.probs, temperature)
    return file_rows(photos["path"].tolist(), prediction, _age_names(run_dir), out_dir)


def _age_names(run_dir: str | Path) -> tuple[str, str, str]:
    """Age-group names under the thresholds of the first k-fold run found behind ``run_dir``."""
    from ..core.artifacts import run_labels

    return run_labels(run_dir).thresholds.names()
