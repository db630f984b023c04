"""The engine under stress: a run killed with SIGKILL resumes to the same result, two CPU processes (DDP,
gloo) split the data without duplicates or drops, EMA, and the W&B logger offline."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import train_tiny
from lightning.pytorch.callbacks import Callback

from maskcls.core.config import load_config
from maskcls.training.kfold import train_kfold

pytestmark = pytest.mark.slow
RESUME = [
    "model.name=test_efficientnet",
    "model.pretrained=none",
    "data.image_size=[64, 48]",
    "train.epochs=4",
    "train.batch_size=16",
    "cv.folds=2",
    "train.early_stopping_patience=0",
    "augment.mixup=0.2",
    "train.ema_decay=0.9",
]


def _train_command(demo_dir, out_dir):
    command = [
        sys.executable,
        "-m",
        "maskcls",
        "train",
        "--data",
        str(demo_dir / "train"),
        "--out",
        str(out_dir),
        "--quiet",
    ]
    for override in RESUME:
        command += ["--set", override]
    return command


def test_killed_run_resumes_to_the_same_result(demo_dir, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    whole = tmp_path / "whole"
    subprocess.run(_train_command(demo_dir, whole), check=True, env=env, capture_output=True)

    killed = tmp_path / "killed"
    process = subprocess.Popen(
        _train_command(demo_dir, killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    last = killed / "fold_1" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 600
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # into the next epoch of fold 1
    assert process.poll() is None, "the run finished before it could be killed; make it longer"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "summary.json").exists() and (killed / "fold_0" / "fold.json").exists()

    subprocess.run(
        [sys.executable, "-m", "maskcls", "train", "--resume", str(killed), "--quiet"],
        check=True,
        env=env,
        capture_output=True,
    )
    a, b = pd.read_csv(whole / "oof.csv"), pd.read_csv(killed / "oof.csv")
    assert a["image_id"].tolist() == b["image_id"].tolist()
    probs = [f"p{i}" for i in range(18)]
    assert np.allclose(a[probs].to_numpy(), b[probs].to_numpy(), atol=1e-5)
    summary_a, summary_b = (json.loads((d / "summary.json").read_text()) for d in (whole, killed))
    assert summary_a["oof_macro_f1"] == pytest.approx(summary_b["oof_macro_f1"])
    assert [f["best_epoch"] for f in summary_a["folds"]] == [f["best_epoch"] for f in summary_b["folds"]]


def test_resume_refuses_a_directory_that_is_not_a_run(tmp_path):
    from maskcls.core.artifacts import RunError
    from maskcls.training.kfold import resume_kfold

    with pytest.raises(RunError, match="config.yaml is missing"):
        resume_kfold(tmp_path)


class RecordIndices(Callback):
    """Writes, per rank and epoch, the dataset positions a rank trained on (module level: ddp_spawn pickles it)."""

    def __init__(self, folder):
        self.folder, self.seen = str(folder), []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.seen.extend(batch[-1].tolist())

    def on_train_epoch_end(self, trainer, module):
        Path(self.folder, f"rank{trainer.global_rank}_epoch{trainer.current_epoch}.json").write_text(
            json.dumps(self.seen)
        )
        self.seen = []


def test_ddp_on_two_cpu_processes_splits_one_global_draw_and_gathers_metrics(demo_dir, tmp_path):
    from maskcls.data.loader import EpochSampler, balanced_weights

    records = tmp_path / "records"
    records.mkdir()
    cfg = load_config(
        None,
        [
            "model.name=test_efficientnet",
            "model.pretrained=none",
            "data.image_size=[48, 36]",
            "train.epochs=2",
            "train.batch_size=16",
            "cv.folds=3",
            "cv.train_folds=[0]",
            "sampler.name=balanced",
            "train.accelerator=cpu",
            "train.devices=2",
            "train.strategy=ddp_spawn",
            "train.early_stopping_patience=0",
        ],
    )
    summary = train_kfold(demo_dir / "train", cfg, tmp_path / "run", progress=False, callbacks=[RecordIndices(records)])
    folds = pd.read_csv(tmp_path / "run" / "folds.csv")
    train_part = folds[folds["fold"] != 0]
    labels = train_part["label"].to_numpy()
    for epoch in range(2):
        shares = [json.loads((records / f"rank{rank}_epoch{epoch}.json").read_text()) for rank in (0, 1)]
        assert len(shares[0]) == len(shares[1]) > 0
        sampler = EpochSampler(
            len(labels), balanced_weights(labels, 1.0), cfg.train.seed + 0, len(labels) - len(labels) % 2
        )
        sampler.set_epoch(epoch)
        expected, drawn = Counter(sampler), Counter(shares[0] + shares[1])
        assert not drawn - expected, "a photo was trained on more often than the one global draw holds it"
        assert sum(expected.values()) - sum(drawn.values()) < 2 * 16, "ranks dropped more than their last partial batch"
    metrics = pd.read_csv(tmp_path / "run" / "fold_0" / "csv" / "metrics.csv")
    assert (
        metrics["val_count"].dropna().eq((folds["fold"] == 0).sum()).all()
    )  # every validation photo once, across ranks
    assert summary["oof_images"] == (folds["fold"] == 0).sum()


def test_wandb_logger_works_offline(demo_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    run = train_tiny(demo_dir, tmp_path / "run", "train.epochs=1", "cv.train_folds=[0]", "train.loggers=[csv, wandb]")
    offline_runs = list((run / "fold_0").rglob("offline-run-*"))
    assert offline_runs, "no offline W&B run was written"
    assert list(offline_runs[0].glob("*.wandb"))


def test_accumulation_clipping_and_bf16_autocast_train(demo_dir, tmp_path):
    run = train_tiny(
        demo_dir,
        tmp_path / "run",
        "train.epochs=1",
        "cv.train_folds=[0]",
        "train.accumulate_grad_batches=2",
        "train.grad_clip=0.5",
        "train.precision=bf16-mixed",
        "optim.name=adamp",
        "scheduler.name=onecycle",
    )
    summary = json.loads((run / "summary.json").read_text())
    assert summary["folds"][0]["epochs_run"] == 1 and 0 <= summary["oof_macro_f1"] <= 1


def test_epoch_metrics_skip_a_log_part_killed_before_its_first_row(tmp_path):
    """A run killed as Lightning opened a fold's CSV log leaves an empty file, kept as a part on resume."""
    from maskcls.core.artifacts import fold_dir
    from maskcls.training.kfold import _epoch_metrics

    csv_dir = fold_dir(tmp_path, 0) / "csv"
    csv_dir.mkdir(parents=True)
    (csv_dir / "metrics.part0.csv").write_text("")
    (csv_dir / "metrics.csv").write_text("epoch,step,train_loss_epoch,val_macro_f1\n0,9,1.5,0.4\n1,19,1.2,0.5\n")
    table = _epoch_metrics(tmp_path, [0])
    assert table["epoch"].tolist() == [0, 1] and table["val_macro_f1"].tolist() == [0.4, 0.5]
