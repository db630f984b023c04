"""One progress display for a whole solve: current stage, a bar, time spent of the budget and the ETA of the plan.

It follows ``maskcls.core.progress`` (a live bar only when stdout and stderr are terminals, otherwise plain
lines on stderr in ``RunProgress``'s look: ``title: stage [k/n] · ... · ETA``) but keeps its own ETA:
a solve's plan is re-fitted to the time left after every stage and its clock runs on across
``--resume``, so the ETA comes from the plan's current estimates and the minutes already spent, not from
the average cost of the units done so far. Members train with their own progress off; this display is
the only one a solve shows.
"""

from __future__ import annotations

import time

import lightning.pytorch as pl

from ..core.progress import console, format_seconds, is_interactive
from .plan import Plan, Speed, Stage, observed_speed, update_speed

PLAIN_EVERY_SECONDS = 60.0


class PlanProgress:
    """``with PlanProgress(plan, spent) as shown:`` then ``start(stage)``, ``update(fraction)``, ``finish(stage)``.

    ``spent`` returns the minutes spent on the plan so far (earlier sessions included, after a resume).
    """

    def __init__(self, plan: Plan, spent, enabled: bool = True, title: str = "solve"):
        self.plan, self.spent, self.enabled, self.title = plan, spent, enabled, title
        self.rich = enabled and is_interactive()
        self.stage: Stage | None = None
        self.stage_started = time.monotonic()
        self.fraction = 0.0
        self._last_line = 0.0
        self._progress = None

    def __enter__(self) -> PlanProgress:
        if self.rich:
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[times]}"),
                console=console,
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task("plan", total=1000, times="")
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._draw()
            self._progress.stop()

    def eta_minutes(self) -> float:
        """Minutes the open stages still need: the current one from its progress, the rest from their estimates."""
        later = sum(s.minutes for s in self.plan.stages if s.open and s is not self.stage)
        if self.stage is None:
            return later
        elapsed = (time.monotonic() - self.stage_started) / 60
        current = elapsed / self.fraction - elapsed if self.fraction > 0.05 else max(self.stage.minutes - elapsed, 0.0)
        return later + current

    def start(self, stage: Stage) -> None:
        self.stage, self.stage_started, self.fraction = stage, time.monotonic(), 0.0
        self._draw(force_line=True)

    def update(self, fraction: float) -> None:
        self.fraction = min(max(fraction, 0.0), 1.0)
        self._draw()

    def finish(self, stage: Stage) -> None:
        self.fraction = 1.0
        self._draw(force_line=True, done=stage)
        self.stage = None

    def _draw(self, force_line: bool = False, done: Stage | None = None) -> None:
        if not self.enabled:
            return
        spent, eta = self.spent(), self.eta_minutes()
        stages = [s for s in self.plan.stages if s.status != "dropped"]
        current = self.stage or done
        position = f"{current.name} [{stages.index(current) + 1}/{len(stages)}]" if current in stages else "plan"
        times = (
            f"{format_seconds(spent * 60)} of {format_seconds(self.plan.budget_minutes * 60)} spent · "
            f"ETA {format_seconds(eta * 60)}"
        )
        if self._progress is not None:
            self._progress.update(
                self._task,
                description=position + (" done" if done else ""),
                completed=1000 * spent / max(spent + eta, 1e-9),
                times=times,
            )
        elif force_line or time.monotonic() - self._last_line >= PLAIN_EVERY_SECONDS:
            self._last_line = time.monotonic()
            state = "done" if done else f"{100 * self.fraction:.0f}%"
            console.print(
                f"{self.title}: {position} · {state} · {times}", markup=False, highlight=False, soft_wrap=True
            )


MIN_OBSERVED_BATCHES = 3  # fewer batches in an epoch (training, or validation) say too little to replace a speed


def _photos(batch) -> int:
    """Photos in a batch (``(pixels, targets, index)``: the length of the first element)."""
    first = batch[0] if isinstance(batch, (list, tuple)) else batch
    return int(first.shape[0]) if hasattr(first, "shape") else len(first)


def _rate(marks: list[tuple[float, int]]) -> tuple[float, int]:
    """Seconds and photos from the end of the first batch to the end of the last (the first batch pays for warming
    up, as calibration counts it in the set-up, not in the speed)."""
    if len(marks) < 2:
        return 0.0, 0
    return marks[-1][0] - marks[0][0], sum(photos for _, photos in marks[1:])


class StageClock(pl.Callback):
    """Reports a training stage's progress to the display, stops a fold's epochs at the stage's deadline, and
    replaces the calibrated speed with the one its first epoch ran at.

    The stage's folds share its time: fold ``k`` of ``folds`` must finish training by ``started + allowance *
    (k + 1) / folds - predict_seconds``. After each epoch, if another epoch (as long as the last one) would pass
    that point, the fold stops there and keeps its best epoch so far: an overrunning stage is cut, not the budget.

    Given the ``plan`` and the ``stage``, the first epoch with at least ``MIN_OBSERVED_BATCHES`` training batches
    gives the plan the observed photos/s of the stage's backbone at its size (training, and validation for
    prediction; ``plan.observed_speed``, ``plan.update_speed``): the next ``replan`` estimates from it.
    ``observed`` is that speed (None until then).
    """

    def __init__(
        self,
        display: PlanProgress | None,
        folds: int,
        epochs: int,
        allowance_seconds: float | None,
        predict_seconds: float = 0.0,
        plan: Plan | None = None,
        stage: Stage | None = None,
    ):
        self.display, self.folds, self.epochs = display, max(folds, 1), max(epochs, 1)
        self.allowance, self.predict_seconds = allowance_seconds, predict_seconds
        self.plan, self.stage = plan, stage
        self.started = time.monotonic()
        self.fold = -1
        self.stopped_early: list[int] = []
        self.observed: Speed | None = None
        self._train_marks: list[tuple[float, int]] = []
        self._val_marks: list[tuple[float, int]] = []

    def on_fit_start(self, trainer, module) -> None:
        self.fold += 1
        self._epoch_started = time.monotonic()

    def on_train_epoch_start(self, trainer, module) -> None:
        self._epoch_started = time.monotonic()
        self._train_marks, self._val_marks = [], []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        batches = max(trainer.num_training_batches, 1) if trainer.num_training_batches != float("inf") else 1
        if self._observing:
            if batch_idx + 1 >= batches:
                _sync(module)  # the last batch's work is done before its end is timed
            self._train_marks.append((time.monotonic(), _photos(batch) * getattr(trainer, "world_size", 1)))
        if self.display is not None:
            done = self.fold + (trainer.current_epoch + (batch_idx + 1) / batches) / self.epochs
            self.display.update(done / self.folds)

    def on_validation_epoch_start(self, trainer, module) -> None:
        self._val_marks = []

    def on_validation_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._observing and not getattr(trainer, "sanity_checking", False):
            self._val_marks.append((time.monotonic(), _photos(batch) * getattr(trainer, "world_size", 1)))

    @property
    def _observing(self) -> bool:
        return self.plan is not None and self.stage is not None and self.observed is None

    def _observe(self) -> None:
        train_seconds, train_photos = _rate(self._train_marks)
        if not self._observing or len(self._train_marks) < MIN_OBSERVED_BATCHES or train_seconds <= 0:
            return
        infer_seconds, infer_photos = _rate(self._val_marks) if len(self._val_marks) >= MIN_OBSERVED_BATCHES else (0, 0)
        speed = observed_speed(self.plan, self.stage, train_seconds, train_photos, infer_seconds, infer_photos)
        if speed is not None:
            update_speed(self.plan, self.stage, speed)
            self.observed = speed

    def on_train_epoch_end(self, trainer, module) -> None:
        self._observe()
        if self.allowance is None or trainer.current_epoch + 1 >= trainer.max_epochs:
            return
        deadline = self.started + self.allowance * (self.fold + 1) / self.folds - self.predict_seconds
        if time.monotonic() + (time.monotonic() - self._epoch_started) > deadline:
            trainer.should_stop = True
            self.stopped_early.append(int(trainer.current_epoch) + 1)


def _sync(module) -> None:
    device = getattr(module, "device", None)
    if device is not None and device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)
