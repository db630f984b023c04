"""Predict with a trained run: the fold models' probabilities are averaged.

``predict_eval`` fills the competition's ``info.csv`` (same rows, same order) and writes
``test_probs.csv`` (one row per photo, 18 probabilities) beside ``submission.csv``;
``predict_files`` answers for a few loose photos.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import DataConfig, LabelsConfig
from ..data.cache import build_cache, default_cache_root
from ..data.images import ImageError, ImageLimits, read_resized
from ..data.layout import SKIP_HINT, DataError, Problem, read_eval
from ..io import write_csv
from ..labels import GENDER_NAMES, MASK_NAMES, NUM_CLASSES, decode
from ..models.artifact import ModelFileError, data_config_of, labels_config_of, load_model
from ..models.factory import MaskNet
from ..runtime import quiet_lightning
from ..tables import PROB_COLUMNS
from ..training.kfold import RunError
from .predictor import predict_probs


@dataclass
class TrainedRun:
    directory: Path
    models: list[MaskNet]
    data_cfg: DataConfig
    labels_cfg: LabelsConfig
    fallback_class: int
    folds: list[int] = field(default_factory=list)


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
        for key in ("data", "labels"):
            if meta[key] != metas[0][key]:
                raise RunError(f"{run_dir} is inconsistent: fold_{fold}/model.json has {key}={meta[key]}, fold_{folds[0]} has {metas[0][key]}")
    oof_path = run_dir / "oof.csv"
    fallback = int(pd.read_csv(oof_path, usecols=["label"])["label"].mode()[0]) if oof_path.is_file() else 0
    return TrainedRun(run_dir, models, data_config_of(metas[0]), labels_config_of(metas[0]), fallback, folds)


def ensemble_probs(run: TrainedRun, pixels: str | np.ndarray, rows: np.ndarray, batch_size: int = 64, accelerator: str = "auto", progress: bool = True) -> np.ndarray:
    """Mean of the fold models' probabilities for ``rows`` of a cached array."""
    quiet_lightning()
    total = np.zeros((len(rows), NUM_CLASSES), dtype=np.float64)
    for model in run.models:
        total += predict_probs(model, run.data_cfg, pixels, rows, batch_size, accelerator, progress=progress)
    return (total / len(run.models)).astype(np.float32)


def predict_eval(
    run_dir: str | Path,
    eval_dir: str | Path,
    out_dir: str | Path | None = None,
    on_bad_image: str = "fail",
    batch_size: int = 64,
    accelerator: str = "auto",
    cache_dir: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Write ``test_probs.csv`` and ``submission.csv`` for ``eval_dir``; returns the submission."""
    run = load_run(run_dir)
    out_dir = Path(out_dir) if out_dir else run.directory
    info, problems = read_eval(eval_dir)
    data_cfg = run.data_cfg
    cache = build_cache(info, data_cfg.cache_hw, default_cache_root(cache_dir), ImageLimits.from_config(data_cfg), progress=progress)
    problems += cache.problems(info["path"].tolist())
    if problems and on_bad_image == "fail":
        raise DataError(f"{len(problems)} problem(s) found in {eval_dir}; nothing was predicted.", problems, SKIP_HINT)
    bad = info["path"].isin({p.file for p in problems}).to_numpy() | info["image_id"].duplicated(keep=False).to_numpy()
    probs = np.full((len(info), NUM_CLASSES), np.nan, dtype=np.float32)
    good_rows = np.flatnonzero(~bad)
    probs[good_rows] = ensemble_probs(run, str(cache.path), good_rows, batch_size, accelerator, progress)

    test_probs = pd.concat([info[["image_id"]], pd.DataFrame(probs, columns=PROB_COLUMNS)], axis=1)
    answers = np.where(bad, run.fallback_class, np.nan_to_num(probs, nan=-1.0).argmax(axis=1))
    submission = pd.read_csv(Path(eval_dir) / "info.csv", dtype=str, keep_default_na=False)
    submission["ans"] = answers.astype(int)
    write_csv(out_dir / "test_probs.csv", test_probs)
    write_csv(out_dir / "submission.csv", submission)
    if problems:
        skipped = pd.DataFrame([{"file": p.file, "reason": p.reason, "answer": f"fallback class {run.fallback_class}"} for p in problems])
        write_csv(out_dir / "predict_skipped.csv", skipped)
    return submission


def predict_files(run_dir: str | Path, files: list[str | Path], accelerator: str = "auto") -> pd.DataFrame:
    """One row per photo: class, mask, gender, age group and probability (or the reason it failed)."""
    run = load_run(run_dir)
    data_cfg = run.data_cfg
    limits = ImageLimits.from_config(data_cfg)
    pixels, errors = [], {}
    for index, path in enumerate(files):
        try:
            pixels.append(read_resized(path, data_cfg.cache_hw, limits))
        except ImageError as err:
            errors[index] = str(err)
    good = [i for i in range(len(files)) if i not in errors]
    probs = ensemble_probs(run, np.stack(pixels), np.arange(len(pixels)), accelerator=accelerator, progress=False) if pixels else np.zeros((0, NUM_CLASSES))
    ages = run.labels_cfg.thresholds.names()
    rows = []
    for index, path in enumerate(files):
        if index in errors:
            rows.append({"file": str(path), "class": None, "mask": None, "gender": None, "age": None, "probability": None, "error": errors[index]})
            continue
        p = probs[good.index(index)]
        label = int(p.argmax())
        mask, gender, age = decode(label)
        rows.append({"file": str(path), "class": label, "mask": MASK_NAMES[mask], "gender": GENDER_NAMES[gender], "age": ages[age], "probability": float(p[label]), "error": ""})
    return pd.DataFrame(rows)
