"""Progress for long work: where it is, how long it has taken, and when the whole of it will end.

Two tools, one look:

- ``track(items, description)`` for one loop (decoding photos, statistics);
- ``RunProgress`` for a plan of named stages (the folds of a run, the models an ensemble predicts
  with, the steps of a pipeline): stage k of n, the step within the stage, elapsed time, an ETA for
  the *whole* plan, and a few facts such as the best validation macro F1 so far.

On a terminal (stdout and stderr both) bars are live (rich), and ``engine.lightning_progress.lightning_bar(plan)`` shows
the plan's line above Lightning's per-epoch bar. Anywhere else (a file, a pipe, CI) everything prints
plain lines instead (one per step of a stage, e.g. one per epoch per fold), never a carriage return or
an escape code, so a log stays readable. Progress goes to stderr; results go to stdout.

A plan, as ``maskcls train`` uses it::

    plan = RunProgress("train runs/demo", [(f"fold {k}", epochs) for k in range(5)], unit="epoch")
    plan.start("fold 0")
    plan.advance(detail="val macro F1 0.41")    # one epoch done; prints a line in a log
    plan.note("best val macro F1", 0.41)         # shown on every line until the stage ends
    plan.finish("fold 0", "macro F1 0.43")       # early stopping: the rest of the stage counts as done
    plan.skip("fold 1")                          # already done (resume): no time, no ETA weight

Stages may be added as they become known (``start`` of an unknown name adds it). The ETA assumes
every unit costs what the units done so far cost on average, so give each stage a weight in
comparable units (epochs of the same model, models of the same size, or estimated seconds).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TextIO, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

T = TypeVar("T")
console = Console(stderr=True)


def is_interactive() -> bool:
    """Live bars only when stdout and stderr are both terminals; ``cmd 2>&1 | tee log`` gets plain lines."""
    return all(getattr(stream, "isatty", lambda: False)() for stream in (sys.stdout, sys.stderr))


def format_seconds(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``1h02m``; ``--`` when unknown."""
    if seconds is None:
        return "--"
    seconds = int(round(max(0.0, seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def track(
    items: Iterable[T],
    description: str,
    total: int | None = None,
    enabled: bool = True,
    interactive: bool | None = None,
    stream: TextIO | None = None,
) -> Iterator[T]:
    """Yield ``items`` while showing count, elapsed time and ETA on stderr: a live bar on a terminal,
    otherwise a plain line at every tenth of the way (and at the end)."""
    if not enabled:
        yield from items
        return
    total = total if total is not None else _len_or_none(items)
    if not (is_interactive() if interactive is None else interactive):
        yield from _track_plain(items, description, total, stream)
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)


def _track_plain(items: Iterable[T], description: str, total: int | None, stream: TextIO | None) -> Iterator[T]:
    started, done, next_report = time.monotonic(), 0, 1
    for item in items:
        yield item
        done += 1
        if total and done * 10 >= next_report * total:
            elapsed = time.monotonic() - started
            eta = elapsed / done * (total - done)
            _print_plain(
                f"{description}: {done}/{total} ({100 * done // total}%) · {format_seconds(elapsed)} elapsed · "
                f"ETA {format_seconds(eta)}",
                stream,
            )
            next_report = done * 10 // total + 1
    if not total:
        _print_plain(f"{description}: {done} done in {format_seconds(time.monotonic() - started)}", stream)


def _print_plain(line: str, stream: TextIO | None = None) -> None:
    stream = stream or sys.stderr
    stream.write(line + "\n")
    stream.flush()


def _len_or_none(items) -> int | None:
    try:
        return len(items)
    except TypeError:
        return None


@dataclass
class Stage:
    """One named part of a plan: its weight in units, and how many of them are done."""

    name: str
    units: float
    done: float = 0.0
    started: bool = False
    started_at: float | None = None

    @property
    def finished(self) -> bool:
        return self.done >= self.units


@dataclass
class RunProgress:
    """A whole-plan progress report: stage k of n, step within the stage, elapsed, ETA, facts.

    ``enabled=False`` keeps the bookkeeping and prints nothing (``--quiet``); ``interactive`` defaults to
    whether stdout and stderr are terminals. ``clock`` and ``stream`` are for tests.
    """

    title: str
    stages: list[tuple[str, float]] | list[Stage] = field(default_factory=list)
    unit: str = "step"
    enabled: bool = True
    interactive: bool | None = None
    stream: TextIO | None = None
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self.stages = [
            stage if isinstance(stage, Stage) else Stage(str(stage[0]), float(stage[1])) for stage in self.stages
        ]
        if self.interactive is None:
            self.interactive = is_interactive()
        self.facts: dict[str, str] = {}
        self.current: Stage | None = None
        self._created = self.clock()
        self._work_started: float | None = None
        self._last_step: float | None = None
        self._worked = 0.0

    # -- building and moving through the plan ---------------------------------------------------------

    def add(self, name: str, units: float) -> Stage:
        """Append a stage that became known later (e.g. an ensemble member found while predicting)."""
        stage = Stage(name, float(units))
        self.stages.append(stage)
        return stage

    def start(self, name: str, units: float | None = None, done: float = 0.0) -> Stage:
        """Make ``name`` the current stage (the first not yet started of that name, else a new one).

        ``done`` units were finished before (a resumed fold): they count as done but not as work.
        """
        stage = next((s for s in self.stages if s.name == name and not s.started and not s.finished), None)
        if stage is None:
            stage = self.add(name, units if units is not None else 1.0)
        elif units is not None:
            stage.units = float(units)
        stage.started, stage.done, stage.started_at = True, min(float(done), stage.units), self.clock()
        self.current = stage
        self.facts.clear()
        if self._work_started is None:
            self._work_started = self.clock()
        return stage

    def advance(self, units: float = 1.0, detail: str = "") -> None:
        """``units`` of the current stage are done (one epoch, one model); prints a line in a log."""
        stage = self.current
        if stage is None:
            return
        stage.done = min(stage.units, stage.done + units)
        self._worked += units
        self._last_step = self.clock()
        if not self.interactive:
            self.say(self._line(f"{self.unit} {_count(stage.done)}/{_count(stage.units)}", detail))

    def note(self, label: str, value: float | str) -> None:
        """A fact shown on every line until the stage ends, e.g. ``note("best val macro F1", 0.412)``."""
        self.facts[label] = f"{value:.4f}" if isinstance(value, float) else str(value)

    def finish(self, name: str | None = None, detail: str = "") -> None:
        """The stage is over (early stopping included: its remaining units need no more time)."""
        stage = self._find(name)
        if stage is None:
            return
        stage.started, stage.done = True, stage.units
        took = format_seconds(self.clock() - stage.started_at) if stage.started_at is not None else "no time"
        self.say(self._line(f"done in {took}", detail, stage=stage))
        if stage is self.current:
            self.current = None

    def skip(self, name: str, reason: str = "") -> None:
        """A stage that needs no work this time (a fold finished before a resume)."""
        stage = next((s for s in self.stages if s.name == name and not s.finished), None) or self.add(name, 1.0)
        stage.started, stage.done = True, stage.units
        if reason:
            self.say(self._line(reason, stage=stage))

    def say(self, line: str) -> None:
        """Print one line of its own (a stage's result, a warning) the way this plan prints."""
        if not self.enabled or not _primary_process():
            return
        if self.interactive:
            console.print(Text(line), highlight=False, soft_wrap=True)
        else:
            _print_plain(line, self.stream)

    # -- what is shown ----------------------------------------------------------------------------------

    @property
    def total_units(self) -> float:
        return sum(s.units for s in self.stages)

    @property
    def done_units(self) -> float:
        return sum(s.done for s in self.stages)

    def elapsed(self) -> float:
        return self.clock() - self._created

    def eta(self) -> float | None:
        """Seconds until the whole plan is done, from the average cost of the units worked so far."""
        if not self._worked or self._work_started is None or self._last_step is None:
            return None
        per_unit = (self._last_step - self._work_started) / self._worked
        remaining = max(0.0, self.total_units - self.done_units)
        return max(0.0, per_unit * remaining - (self.clock() - self._last_step))

    def line(self) -> str:
        """``train runs/demo: fold 1 [2/5] · epoch 7/25 · 3m12s elapsed · ETA 9m40s · best val macro F1 0.4120``."""
        stage = self.current
        position = (
            f"{self.unit} {_count(min(stage.done + 1, stage.units))}/{_count(stage.units)}" if stage is not None else ""
        )
        return self._line(position)

    def _line(self, position: str, detail: str = "", stage: Stage | None = None) -> str:
        stage = stage or self.current
        parts = [f"{self.title}:"]
        if stage is not None:
            index = next(i for i, s in enumerate(self.stages) if s is stage) + 1
            parts.append(f"{stage.name} [{index}/{len(self.stages)}]")
        head = " ".join(parts)
        tail = [p for p in (position, detail) if p]
        tail += [f"{format_seconds(self.elapsed())} elapsed", f"ETA {format_seconds(self.eta())}"]
        tail += [f"{label} {value}" for label, value in self.facts.items()]
        return " · ".join([head, *tail])

    def _find(self, name: str | None) -> Stage | None:
        if name is None:
            return self.current
        if self.current is not None and self.current.name == name:
            return self.current
        return next((s for s in self.stages if s.name == name and not s.finished), None)


def _count(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _primary_process() -> bool:
    """Only one process of a multi-process (DDP) run prints: local rank 0 of node 0, as Lightning numbers them."""
    return all(os.environ.get(name, "0") == "0" for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))
