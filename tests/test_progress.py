"""Whole-run progress: the plan's arithmetic, plain lines in logs, and the line above Lightning's bar on a terminal."""

import io

import pytest

from maskcls.core.progress import RunProgress, format_seconds, track
from maskcls.engine.lightning_progress import EpochProgress, lightning_bar


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_eta_covers_the_whole_plan_and_ignores_skipped_and_early_stopped_work():
    clock, log = Clock(), io.StringIO()
    plan = RunProgress(
        "train runs/x",
        [("fold 0", 10), ("fold 1", 10), ("fold 2", 10)],
        unit="epoch",
        interactive=False,
        stream=log,
        clock=clock,
    )
    assert plan.eta() is None  # nothing measured yet
    plan.skip("fold 0", "finished before the resume")  # no time spent, no weight in the rate
    clock.now = 5.0  # setup (decoding) before the first fold is not per-epoch cost
    plan.start("fold 1")
    for _ in range(4):
        clock.now += 10.0
        plan.advance(detail="val macro F1 0.5")
    assert plan.eta() == pytest.approx(10.0 * (6 + 10))  # 6 epochs of fold 1 and all of fold 2, at 10 s each
    clock.now += 4.0
    assert plan.eta() == pytest.approx(10.0 * 16 - 4.0)  # counts down between epochs
    plan.finish("fold 1", "macro F1 0.6")  # early stopping: the rest of fold 1 costs nothing
    assert plan.eta() == pytest.approx(10.0 * 10 - 4.0)
    assert plan.done_units == 20 and plan.total_units == 30


def test_plain_lines_name_fold_epoch_elapsed_eta_and_the_best_score():
    clock, log = Clock(), io.StringIO()
    plan = RunProgress(
        "train runs/x", [("fold 0", 3), ("fold 1", 3)], unit="epoch", interactive=False, stream=log, clock=clock
    )
    plan.start("fold 0")
    clock.now = 65.0
    plan.note("best val macro F1", 0.41234)
    plan.advance(detail="val loss 1.2000")
    plan.finish("fold 0", "macro F1 0.4300")
    lines = log.getvalue().splitlines()
    assert lines[0] == (
        "train runs/x: fold 0 [1/2] · epoch 1/3 · val loss 1.2000 · 1m05s elapsed · ETA 5m25s · "
        "best val macro F1 0.4123"
    )
    assert lines[1].startswith("train runs/x: fold 0 [1/2] · done in 1m05s · macro F1 0.4300")


def test_quiet_plan_keeps_count_but_prints_nothing():
    log = io.StringIO()
    plan = RunProgress("x", [("a", 2)], enabled=False, interactive=False, stream=log)
    plan.start("a")
    plan.advance()
    plan.finish("a")
    plan.say("hello")
    assert log.getvalue() == "" and plan.done_units == 2


def test_stages_found_late_are_added():
    plan = RunProgress("predict", [("runs/a", 2)], unit="model", enabled=False)
    plan.start("runs/a")
    plan.finish("runs/a")
    plan.start("runs/b", units=3)
    assert [s.name for s in plan.stages] == ["runs/a", "runs/b"] and plan.total_units == 5
    assert "runs/b [2/2] · model 1/3" in plan.line()


def test_track_in_a_log_prints_plain_lines_only():
    log = io.StringIO()
    assert list(track(range(50), "decoding 50 photos", interactive=False, stream=log)) == list(range(50))
    text = log.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert len(lines) == 10 and lines[-1].startswith("decoding 50 photos: 50/50 (100%)")


def test_format_seconds():
    assert [format_seconds(s) for s in (None, 5, 65, 3725)] == ["--", "5s", "1m05s", "1h02m"]


def test_lightning_bar_is_silent_in_logs_and_carries_the_plan_on_a_terminal():
    from lightning.pytorch.callbacks import RichProgressBar

    plain = RunProgress("x", [("a", 1)], interactive=False)
    assert not lightning_bar(plain).is_enabled
    live = RunProgress("x", [("a", 1)], interactive=True)
    assert isinstance(lightning_bar(live), RichProgressBar) and lightning_bar(live).plan is live


def test_the_plan_line_is_drawn_above_lightnings_bar_on_a_terminal(capsys):
    import lightning.pytorch as pl
    from lightning.pytorch.demos.boring_classes import BoringModel

    plan = RunProgress("train runs/t", [("fold 0", 2), ("fold 1", 2)], unit="epoch", interactive=True)
    trainer = pl.Trainer(
        max_epochs=2,
        limit_train_batches=2,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        callbacks=[EpochProgress(plan, "fold 0"), lightning_bar(plan)],
    )
    trainer.fit(BoringModel())
    drawn = capsys.readouterr().err  # rich draws the final frame of its live display here
    assert "train runs/t: fold 0 [1/2] · epoch 2/2" in drawn and "ETA" in drawn
    assert drawn.index("train runs/t: fold 0") < drawn.index("Epoch 1/1")
    assert plan.stages[0].done == 2 and plan.eta() is not None
