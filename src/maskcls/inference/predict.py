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

from ..config import DataConfig, LabelsConfig
from ..data.cache import build_cache, default_cache_root
from ..data.images import ImageLimits
from ..data.layout import SKIP_HINT, DataError, Problem, read_eval
from ..ensemble.uncertainty import disagreement, predictive_entropy
from ..io import write_csv, write_json
from ..labels import GENDER_NAMES, MASK_NAMES, decode
from ..models.artifact import ModelFileError, load_model
from ..models.factory import MaskNet
from ..tables import PROB_COLUMNS
from ..training.kfold import RunError
from .predictor import predict_outputs


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


@dataclass
class Prediction:
    """Probabilities of a table of photos (NaN rows: photos that could not be read) and per-row extras."""

    probs: np.ndarray
    answers: np.ndarray
    columns: dict[str, np.ndarray]
    problems: list[Problem]


def load_run(run_dir: str | Path) -> TrainedRun:
    """The fold models of a finished run, checked to be complete and consistent with each other."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"run directory not found: {run_dir}")
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        raise RunError(f"{run_dir} has no summary.json: training did not finish (continue it with `maskcls train --resume {run_dir}`)")
    summary = json.loads(summary_path.read_text())
    folds = [entry["fold"] for entry in summary.get("folds", [])]
    if not folds:
        raise RunError(f"{summary_path} lists no trained folds")
    models, metas = [], []
    for fold in folds:
        try:
            model, meta = load_model(run_dir / f"fold_{fold}")
        except ModelFileError as err:
            raise RunError(f"{run_dir} is incomplete: {err}") from None
        models.append(model)
        metas.append(meta)
    for fold, meta in zip(folds[1:], metas[1:]):
        for key in ("data", "labels", "task"):
            if meta.get(key) != metas[0].get(key):
                raise RunError(f"{run_dir} is inconsistent: fold_{fold}/model.json has {key}={meta.get(key)}, fold_{folds[0]} has {metas[0].get(key)}")
    oof_path = run_dir / "oof.csv"
    fallback = int(pd.read_csv(oof_path, usecols=["label"])["label"].mode()[0]) if oof_path.is_file() else 0
    return TrainedRun(run_dir, models, metas[0], fallback, folds)


def predict_table(
    run_dir: str | Path,
    photos: pd.DataFrame,
    tta: str | None = None,
    mc_samples: int = 0,
    batch_size: int = 64,
    accelerator: str = "auto",
    cache_dir: str | None = None,
    progress: bool = True,
) -> Prediction:
    """Predictions of ``photos`` (``image_id``, ``path``) by whatever kind of trained directory ``run_dir`` is.

    ``tta`` overrides the test-time augmentation a run was evaluated with (its recipe's ``tta.name``).
    """
    run_dir = Path(run_dir)
    options = dict(tta=tta, mc_samples=mc_samples, batch_size=batch_size, accelerator=accelerator, cache_dir=cache_dir, progress=progress)
    if (run_dir / "ensemble.json").is_file():
        from ..ensemble.build import load_ensemble

        ensemble = load_ensemble(run_dir)
        members = [predict_table(member, photos, **options) for member in ensemble.members]
        member_probs = [m.probs for m in members]
        probs = ensemble.combine(member_probs)
        readable = np.all(np.isfinite(probs), axis=1)
        spread = np.full(len(probs), np.nan)
        spread[readable] = disagreement(np.stack(member_probs)[:, readable])
        return Prediction(probs, ensemble.answers(member_probs), {"disagreement": spread}, _union(m.problems for m in members))
    if (run_dir / "combine.json").is_file():
        from ..training.combine import load_combination

        combination = load_combination(run_dir)
        parts = {run: predict_table(run, photos, **options) for run in combination.runs}
        probs = combination.combine({run: (part.probs, part.columns.get("age_pred")) for run, part in parts.items()})
        return Prediction(probs, _argmax_or(probs, combination.fallback_class), {}, _union(part.problems for part in parts.values()))
    return _predict_folds(load_run(run_dir), photos, **options)


def _predict_folds(run: TrainedRun, photos: pd.DataFrame, tta, mc_samples, batch_size, accelerator, cache_dir, progress) -> Prediction:
    data_cfg = run.data_cfg
    cache = build_cache(photos[["image_id", "path"]], data_cfg.cache_hw, default_cache_root(cache_dir), ImageLimits.from_config(data_cfg), progress=progress)
    problems = cache.problems(photos["path"].tolist())
    bad_paths = {p.file for p in problems}
    good = np.flatnonzero(~photos["path"].isin(bad_paths).to_numpy())
    tta_cfg = run.meta.get("tta", {})
    outputs = [
        predict_outputs(
            model, data_cfg, str(cache.path), good, batch_size=batch_size, accelerator=accelerator, progress=progress,
            tta=tta or tta_cfg.get("name", "none"), merge=tta_cfg.get("merge", "mean_probs"), mc_samples=mc_samples,
        )
        for model in run.models
    ]
    width = outputs[0]["probs"].shape[1] if len(good) else (18 if run.task == "classes" else 3)
    probs = np.full((len(photos), width), np.nan, dtype=np.float64)
    fold_probs = np.stack([o["probs"] for o in outputs]) if len(good) else np.zeros((len(outputs), 0, width))
    probs[good] = fold_probs.mean(axis=0)
    columns = {"disagreement": _fill(len(photos), good, disagreement(fold_probs) if len(good) else [])}
    for key in ("age_value", "mc_mutual_information"):
        if len(good) and key in outputs[0]:
            columns["age_pred" if key == "age_value" else key] = _fill(len(photos), good, np.mean([o[key] for o in outputs], axis=0))
    return Prediction(probs, _argmax_or(probs, run.fallback_class), columns, problems)


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
    persons: str | Path | None = None,
    group_size: int | None = None,
) -> pd.DataFrame:
    """Write ``test_probs.csv`` and ``submission.csv`` for ``eval_dir``; returns the submission.

    ``persons`` (a groups CSV from ``maskcls group``) adds person-consistent probabilities ``person_p0..17``
    and a ``group`` column beside the raw ``p0..p17`` (see ``maskcls.persons``); ``submission.csv`` then
    takes their argmax. With ``group_size``, complete groups get their mask states assigned (5/1/1 for 7).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"run directory not found: {run_dir}")
    out_dir = Path(out_dir) if out_dir else run_dir
    info, problems = read_eval(eval_dir)
    if problems and on_bad_image == "fail":
        raise DataError(f"{len(problems)} problem(s) found in {eval_dir}; nothing was predicted.", problems, SKIP_HINT)
    if persons is not None:
        from ..persons.consistent import read_groups

        groups = read_groups(persons, info["image_id"])  # checked before the (long) prediction
    else:
        groups = None
    prediction = predict_table(run_dir, info, tta, mc_samples, batch_size, accelerator, cache_dir, progress)
    problems = _union([problems, prediction.problems])
    if problems and on_bad_image == "fail":
        raise DataError(f"{len(problems)} problem(s) found in {eval_dir}; nothing was predicted.", problems, SKIP_HINT)
    if prediction.probs.shape[1] != len(PROB_COLUMNS):
        raise RunError(f"{run_dir} predicts a single head, not the 18 classes; predict with the combined directory instead")
    test_probs = pd.concat([info[["image_id"]], pd.DataFrame(prediction.probs, columns=PROB_COLUMNS)], axis=1)
    test_probs["entropy"] = predictive_entropy(prediction.probs)
    for name, values in prediction.columns.items():
        test_probs[name] = values
    submission = pd.read_csv(Path(eval_dir) / "info.csv", dtype=str, keep_default_na=False)
    submission["ans"] = prediction.answers.astype(int)
    if groups is not None:
        from ..persons.consistent import add_person_columns, person_answers

        test_probs = add_person_columns(test_probs, groups, group_size)
        submission["ans"] = person_answers(test_probs, submission["ans"].to_numpy())
    write_csv(out_dir / "test_probs.csv", test_probs)
    write_csv(out_dir / "submission.csv", submission)
    write_json(out_dir / "predict.json", {"data": str(Path(eval_dir).resolve()), "tta": tta, "mc_dropout": mc_samples,
                                          "persons": str(Path(persons).resolve()) if persons else None, "group_size": group_size})
    if problems:
        write_csv(out_dir / "predict_skipped.csv", pd.DataFrame([{"file": p.file, "reason": p.reason} for p in problems]))
    return submission


def predict_files(run_dir: str | Path, files: list[str | Path], tta: str | None = None, accelerator: str = "auto") -> pd.DataFrame:
    """One row per photo: class, mask, gender, age group and probability (or the reason it failed)."""
    photos = pd.DataFrame({"image_id": [str(f) for f in files], "path": [str(f) for f in files]})
    prediction = predict_table(run_dir, photos, tta=tta, accelerator=accelerator, progress=False)
    if prediction.probs.shape[1] != len(PROB_COLUMNS):
        raise RunError(f"{run_dir} predicts a single head, not the 18 classes; predict with the combined directory instead")
    errors = {problem.file: problem.reason for problem in prediction.problems}
    ages = _age_names(run_dir)
    rows = []
    for path, p, label in zip(photos["path"], prediction.probs, prediction.answers):
        if path in errors:
            rows.append({"file": path, "class": None, "mask": None, "gender": None, "age": None, "probability": None, "error": errors[path]})
            continue
        mask, gender, age = decode(int(label))
        rows.append({"file": path, "class": int(label), "mask": MASK_NAMES[mask], "gender": GENDER_NAMES[gender], "age": ages[age], "probability": float(p[label]), "error": ""})
    return pd.DataFrame(rows)


def _age_names(run_dir: str | Path) -> tuple[str, str, str]:
    """Age-group names under the thresholds of the first k-fold run found behind ``run_dir``."""
    run_dir = Path(run_dir)
    if (run_dir / "ensemble.json").is_file():
        return _age_names(json.loads((run_dir / "ensemble.json").read_text())["members"][0]["path"])
    if (run_dir / "combine.json").is_file():
        return _age_names(json.loads((run_dir / "combine.json").read_text())["sources"]["age"])
    meta = json.loads((run_dir / f"fold_{json.loads((run_dir / 'summary.json').read_text())['folds'][0]['fold']}" / "model.json").read_text())
    return LabelsConfig.model_validate(meta["labels"]).thresholds.names()


def _argmax_or(probs: np.ndarray, fallback: int) -> np.ndarray:
    readable = np.all(np.isfinite(probs), axis=1)
    return np.where(readable, np.nan_to_num(probs, nan=-1.0).argmax(axis=1), fallback).astype(np.int64)


def _fill(length: int, rows: np.ndarray, values) -> np.ndarray:
    column = np.full(length, np.nan)
    column[rows] = values
    return column


def _union(problem_lists) -> list[Problem]:
    seen, merged = set(), []
    for problems in problem_lists:
        for problem in problems:
            if problem not in seen:
                seen.add(problem)
                merged.append(problem)
    return merged
