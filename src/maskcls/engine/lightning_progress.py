"""The Lightning side of ``maskcls.core.progress``: a plan's epoch callback and the bar that shows its line.

Kept apart so that ``maskcls.core.progress`` (used by decoding and reports) does not import Lightning, and at
module level so that ``ddp_spawn`` can pickle them.
"""

from __future__ import annotations

from lightning.pytorch.callbacks import Callback, RichProgressBar, TQDMProgressBar
from rich.text import Text

from ..core.progress import RunProgress, is_interactive


def silent_bar() -> TQDMProgressBar:
    """A bar that draws nothing (``refresh_rate=0``), for logs where the plan prints plain lines."""
    return TQDMProgressBar(refresh_rate=0)


class EpochProgress(Callback):
    """Starts ``stage`` with the fit (epochs done before a resume count as done), advances it by one unit
    per epoch with the epoch's losses and ``metric``, and keeps the best ``metric`` as a fact."""

    def __init__(self, plan: RunProgress, stage: str, metric: str = "val_macro_f1", label: str = "best val macro F1"):
        self.plan, self.stage, self.metric, self.label = plan, stage, metric, label
        self.best: float | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        self.plan.start(self.stage, units=trainer.max_epochs, done=trainer.current_epoch)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        logged = {
            key: float(value)
            for key, value in trainer.callback_metrics.items()
            if getattr(value, "numel", lambda: 1)() == 1
        }
        if self.metric in logged and (self.best is None or logged[self.metric] > self.best):
            self.best = logged[self.metric]
            self.plan.note(self.label, self.best)
        names = (
            ("train_loss_epoch", "train loss"),
            ("val_loss", "val loss"),
            (self.metric, self.metric.replace("_", " ")),
        )
        self.plan.advance(1, ", ".join(f"{name} {logged[key]:.4f}" for key, name in names if key in logged))


class PlanRichBar(RichProgressBar):
    """Lightning's rich bar (on stderr) with the plan's line drawn above its tasks (rich's ``get_renderables`` hook)."""

    def __init__(self, plan: RunProgress | None):
        super().__init__(leave=False, console_kwargs={"stderr": True})
        self.plan = plan

    def _show_plan(self) -> None:
        progress = self.progress
        if self.plan is None or progress is None or getattr(progress, "_plan_line", False):
            return
        tasks_table, plan = progress.get_renderables, self.plan

        def renderables():
            yield Text(plan.line(), style="bold", no_wrap=True, overflow="ellipsis")
            yield from tasks_table()

        progress.get_renderables = renderables
        progress._plan_line = True

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        self._show_plan()

    def on_validation_start(self, trainer, pl_module) -> None:
        super().on_validation_start(trainer, pl_module)
        self._show_plan()

    def on_predict_start(self, trainer, pl_module) -> None:
        super().on_predict_start(trainer, pl_module)
        self._show_plan()


def lightning_bar(plan: RunProgress | None = None):
    """The progress-bar callback for a Lightning ``Trainer``.

    On a terminal, Lightning's rich bar with ``plan``'s line above it. Elsewhere a silent bar: the plan
    (through ``EpochProgress``) prints plain lines instead of Lightning's ``\\r``-redrawn bars.
    """
    if plan is not None and not plan.enabled:
        return silent_bar()
    if not (plan.interactive if plan is not None else is_interactive()):
        return silent_bar()
    return PlanRichBar(plan)
