"""Re-make a run's out-of-fold predictions with another test-time augmentation, without retraining.

Each fold model predicts its own validation fold again with the new TTA set; the result is a new run
directory (models hard-linked, ``tta`` recorded in ``config.yaml`` and every ``model.json``), so its OOF
table and its test predictions are made the same way, and it can be ensembled like any run.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pandas as pd

from ..core.artifacts import (
    CONFIG_FILE,
    FOLD_FILE,
    FOLDS_FILE,
    LABEL_FIXES_FILE,
    OOF_FILE,
    RUN_FILE,
    SUMMARY_FILE,
    RunError,
    fold_dir,
    run_label_fixes,
)
from ..core.config import load_config
from ..core.io import copy_file, write_csv, write_json, write_yaml
from ..data.extra import ExtraSpec
from ..engine.predictor import predict_outputs
from ..models.artifact import META_FILE, WEIGHTS_FILE, load_model
from .kfold import finish_run, oof_table, prepare_training_data, task_metrics


def reevaluate(
    run_dir: str | Path,
    out_dir: str | Path,
    tta: str,
    merge: str = "mean_probs",
    batch_size: int = 64,
    progress: bool = True,
) -> dict:
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    for name in (CONFIG_FILE, RUN_FILE, FOLDS_FILE, SUMMARY_FILE):
        if not (run_dir / name).is_file():
            raise RunError(f"{run_dir} is not a finished k-fold run: {name} is missing")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise RunError(f"{out_dir} already exists; choose another --out")
    started = time.perf_counter()
    cfg = load_config(run_dir / CONFIG_FILE, [f"tta.name={tta}", f"tta.merge={merge}"])
    run = json.loads((run_dir / RUN_FILE).read_text())
    label_fixes = run_label_fixes(run_dir)  # the same labels the run trained with
    data = prepare_training_data(run["data"], cfg, progress, ExtraSpec.from_run(run), label_fixes)
    folds = pd.read_csv(run_dir / FOLDS_FILE, dtype={"image_id": str, "person_id": str})
    manifest = data.manifest.merge(folds[["image_id", "fold"]], on="image_id", how="inner")
    if len(manifest) != len(folds):
        raise RunError(f"the photos of {run['data']} changed since {run_dir} was trained; retrain instead")

    write_yaml(out_dir / CONFIG_FILE, cfg.to_dict())
    write_json(out_dir / RUN_FILE, {**run, "reevaluated_from": str(run_dir.resolve())})
    write_csv(out_dir / FOLDS_FILE, folds)
    if label_fixes is not None:
        copy_file(label_fixes, out_dir / LABEL_FIXES_FILE)
    results = []
    for entry in json.loads((run_dir / SUMMARY_FILE).read_text())["folds"]:
        fold = entry["fold"]
        source, target = fold_dir(run_dir, fold), fold_dir(out_dir, fold)
        model, meta = load_model(source)
        val_part = manifest[manifest["fold"] == fold]
        outputs = predict_outputs(
            model,
            cfg.data,
            str(data.cache.path),
            val_part["cache_row"].to_numpy(),
            batch_size=batch_size,
            accelerator=cfg.train.accelerator,
            progress=progress,
            tta=tta,
            merge=merge,
        )
        oof = oof_table(val_part, outputs, model.task)
        target.mkdir(parents=True, exist_ok=True)
        _link_or_copy(source / WEIGHTS_FILE, target / WEIGHTS_FILE)
        write_json(target / META_FILE, {**meta, "tta": cfg.tta.model_dump(mode="json")})
        write_csv(target / OOF_FILE, oof)
        result = {**entry, **task_metrics(oof, model.task), "tta": tta}
        write_json(target / FOLD_FILE, result)
        results.append(result)
    return finish_run(out_dir, cfg, manifest, results, time.perf_counter() - started)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
