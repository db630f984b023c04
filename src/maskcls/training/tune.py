"""Hyper-parameter search with Optuna: sample recipe keys from a search space, train each trial as a
k-fold run, keep the best recipe as a file that ``maskcls train --config`` reproduces::

    <out_dir>/study.db  trials/trial_<n>/ (a run directory each)  trials.csv  best.yaml

The study lives in an Optuna storage (SQLite in ``out_dir`` by default, any RDB URL to share it
between machines): calling ``tune`` again, here or elsewhere, adds trials to the same study.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
import yaml
from lightning.pytorch.callbacks import Callback
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from ..core.config import Config, ConfigError, config_from_dict, load_config, read_yaml, reject_unknown_keys, valid_keys
from ..core.io import write_csv, write_yaml
from ..data.cache import CacheError
from ..data.layout import DataError
from .kfold import train_kfold

MONITOR = "val_macro_f1"
PRUNER_STARTUP_TRIALS = 2  # trials that always run to the end, so the median means something
PRUNER_WARMUP_STEPS = 2  # epochs of each trial's first fold never judged: early epochs are noisy
FATAL_ERRORS = (DataError, CacheError)  # the data or the disk, not the sampled values: every trial would fail alike

SearchSpace = dict[str, BaseDistribution]


class _TrialFailed(RuntimeError):
    """One trial's recipe could not be trained; the study records it as FAIL and goes on."""


def _number(value: Any, integer: bool = False) -> bool:
    kinds = int if integer else (int, float)
    return isinstance(value, kinds) and not isinstance(value, bool)


def _range_fields(key: str, spec: dict, integer: bool) -> dict[str, Any]:
    kind = "an integer" if integer else "a number"
    for field in ("low", "high"):
        if not _number(spec[field], integer):
            raise ConfigError(f"search key '{key}': '{field}' must be {kind}, got {spec[field]!r}")
    if spec["low"] >= spec["high"]:
        raise ConfigError(f"search key '{key}': low ({spec['low']}) must be below high ({spec['high']})")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"search key '{key}': 'log' must be true or false, got {log!r}")
    if log and spec["low"] <= 0:
        raise ConfigError(f"search key '{key}': a log scale needs low > 0, got {spec['low']}")
    step = spec.get("step")
    if step is not None and (not _number(step, integer) or step <= 0):
        raise ConfigError(f"search key '{key}': 'step' must be {kind} above 0, got {step!r}")
    return {"low": spec["low"], "high": spec["high"], "log": log, "step": step}


def _float_distribution(key: str, spec: dict) -> BaseDistribution:
    return FloatDistribution(**_range_fields(key, spec, integer=False))


def _int_distribution(key: str, spec: dict) -> BaseDistribution:
    fields = _range_fields(key, spec, integer=True)
    return IntDistribution(**{**fields, "step": fields["step"] or 1})


def _categorical_distribution(key: str, spec: dict) -> BaseDistribution:
    choices = spec["choices"]
    if not isinstance(choices, list) or not choices:
        raise ConfigError(f"search key '{key}': 'choices' must be a non-empty list, got {choices!r}")
    for choice in choices:
        if not (choice is None or isinstance(choice, (bool, int, float, str))):
            raise ConfigError(
                f"search key '{key}': choice {choice!r} is not a single value; "
                'write a list as a string, e.g. "[64, 48]"'
            )
    return CategoricalDistribution(choices)


# type name -> (builder, required fields, optional fields)
DISTRIBUTIONS: dict[str, tuple[Callable[[str, dict], BaseDistribution], set[str], set[str]]] = {
    "float": (_float_distribution, {"low", "high"}, {"log", "step"}),
    "int": (_int_distribution, {"low", "high"}, {"log", "step"}),
    "categorical": (_categorical_distribution, {"choices"}, set()),
}


def parse_search_space(raw: Any, source: str = "search space") -> SearchSpace:
    """Check a mapping of dotted recipe keys to distribution specs and build Optuna distributions."""
    if not isinstance(raw, dict) or not raw:
        example = "optim.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}"
        raise ConfigError(
            f"{source}: a search space must be a non-empty mapping of recipe keys to distributions, e.g. '{example}'"
        )
    space: SearchSpace = {}
    for key, spec in raw.items():
        try:
            space[str(key)] = _distribution(str(key), spec)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None
    return space


def _distribution(key: str, spec: Any) -> BaseDistribution:
    nested: dict[str, Any] = {}
    node = nested
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = None
    reject_unknown_keys(nested, Config, prefix="")  # same message as a recipe: the key and the nearest valid one
    if key not in valid_keys():
        raise ConfigError(f"search key '{key}': '{'.'.join(parts[:2])}' is a value, not a section")
    if not isinstance(spec, dict) or "type" not in spec:
        raise ConfigError(
            f"search key '{key}': give a mapping with a 'type' ({', '.join(DISTRIBUTIONS)}), got {spec!r}"
        )
    if not isinstance(spec["type"], str) or spec["type"] not in DISTRIBUTIONS:
        raise ConfigError(
            f"search key '{key}': unknown type {spec['type']!r}; choose one of {', '.join(DISTRIBUTIONS)}"
        )
    build, required, optional = DISTRIBUTIONS[spec["type"]]
    fields = set(spec) - {"type"}
    if required - fields:
        raise ConfigError(f"search key '{key}': type {spec['type']} needs {', '.join(sorted(required - fields))}")
    if fields - required - optional:
        unknown, allowed = ", ".join(sorted(fields - required - optional)), ", ".join(sorted(required | optional))
        raise ConfigError(
            f"search key '{key}': unknown field(s) {unknown} for type {spec['type']} (allowed: {allowed})"
        )
    try:
        return build(key, spec)
    except ConfigError:
        raise
    except ValueError as err:  # Optuna's own checks
        raise ConfigError(f"search key '{key}': {err}") from None


def load_search_space(
    path: str | Path, config_path: str | Path | None = None, overrides: Sequence[str] = ()
) -> SearchSpace:
    """Read a search-space YAML and check that each range end and choice is a valid value of the recipe.

    The value check catches a typo before hours of training; values that are only wrong together
    (e.g. a loss name the factory does not know) still fail their trial, which is recorded and skipped.
    """
    raw = read_yaml(path, "search space file")
    space = parse_search_space(raw, source=str(path))
    for key, distribution in space.items():
        for value in _edge_values(distribution):
            try:
                load_config(config_path, [*overrides, f"{key}={_override_text(value)}"])
            except ConfigError as err:
                raise ConfigError(
                    f"{path}: search key '{key}': value {value!r} is not valid in the recipe: {err}"
                ) from None
    return space


def _edge_values(distribution: BaseDistribution) -> list[Any]:
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    return [distribution.low, distribution.high]


def _override_text(value: Any) -> str:
    """A sampled value as written after ``key=``: strings as they are (so "[64, 48]" sets a list), the rest as YAML."""
    if isinstance(value, str):
        return value
    return yaml.safe_dump([value], default_flow_style=True).strip()[1:-1]


def suggest_overrides(trial: optuna.Trial, space: SearchSpace) -> list[str]:
    """Ask the trial for one value per key; returns ``key=value`` overrides for ``load_config``."""
    overrides = []
    for key, distribution in space.items():
        if isinstance(distribution, CategoricalDistribution):
            value = trial.suggest_categorical(key, distribution.choices)
        elif isinstance(distribution, IntDistribution):
            value = trial.suggest_int(
                key, distribution.low, distribution.high, step=distribution.step, log=distribution.log
            )
        else:
            value = trial.suggest_float(
                key, distribution.low, distribution.high, step=distribution.step, log=distribution.log
            )
        overrides.append(f"{key}={_override_text(value)}")
    return overrides


class PruningCallback(Callback):
    """Reports ``val_macro_f1`` to an Optuna trial after every validation and stops a trial the pruner gives up on.

    One instance serves all folds of a trial. Steps go on across folds (fold run x max_epochs + epoch),
    so they only grow, and one step is the same point of training in every trial of a study.
    Lightning 2.x re-raises an exception from a callback unchanged after its own teardown
    (``_call_and_handle_interrupt``), so raising ``TrialPruned`` ends ``fit`` and ``train_kfold`` at
    once and Optuna records PRUNED. ``pruned_message`` is kept too, so the caller can still tell a
    prune from a failure should the exception come back wrapped.
    """

    def __init__(self, trial: optuna.Trial, monitor: str = MONITOR):
        self.trial = trial
        self.monitor = monitor
        self.pruned_message: str | None = None
        self._fits_started = 0
        self._step_offset = 0
        self._last_step = -1

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit" and trainer.world_size > 1:
            raise RuntimeError(
                f"pruning reports from one process, but this trainer has {trainer.world_size}; "
                "tune with train.devices=1 and train.num_nodes=1, and share the study between processes instead"
            )

    def on_fit_start(self, trainer, pl_module) -> None:
        self._step_offset = self._fits_started * max(trainer.max_epochs or 1, 1)
        self._fits_started += 1

    def on_validation_end(self, trainer, pl_module) -> None:
        # Not on_validation_epoch_end: callbacks run before the module's hook, which logs the metric.
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise RuntimeError(
                f"cannot prune: '{self.monitor}' was not logged (logged: {sorted(trainer.callback_metrics)})"
            )
        value = float(value)
        step = max(self._step_offset + trainer.current_epoch, self._last_step + 1)
        self.trial.report(value, step)
        self._last_step = step
        if self.trial.should_prune():
            where = f"fold run {self._fits_started}, epoch {trainer.current_epoch}"
            self.pruned_message = f"pruned at step {step} ({where}): {self.monitor}={value:.4f}"
            raise optuna.TrialPruned(self.pruned_message)


def trial_objective(
    train_dir: str | Path,
    space: SearchSpace,
    out_dir: str | Path,
    config_path: str | Path | None = None,
    overrides: Sequence[str] = (),
    progress: bool = False,
) -> Callable[[optuna.Trial], float]:
    """The function Optuna calls per trial: sample, train ``<out_dir>/trials/trial_<n>``, return OOF macro F1.

    The resolved recipe is stored with the trial (user attribute ``config``), so the best one can be
    written out wherever the study is read, even when another machine ran it. A trial number is
    never reused within a study, so a folder of that name is left from a deleted study and is replaced.
    """

    def objective(trial: optuna.Trial) -> float:
        run_dir = Path(out_dir) / "trials" / f"trial_{trial.number}"
        trial.set_user_attr("run_dir", str(run_dir))
        pruning = PruningCallback(trial)
        try:
            cfg = load_config(config_path, [*overrides, *suggest_overrides(trial, space)])
            trial.set_user_attr("config", cfg.to_dict())
            summary = train_kfold(train_dir, cfg, run_dir, force=True, progress=progress, callbacks=[pruning])
        except (optuna.TrialPruned, *FATAL_ERRORS):
            raise
        except Exception as err:
            if pruning.pruned_message is not None:
                raise optuna.TrialPruned(pruning.pruned_message) from err
            message = f"{type(err).__name__}: {err}"
            trial.set_user_attr("error", message)
            raise _TrialFailed(message) from err
        return float(summary["oof_macro_f1"])

    return objective


def default_storage(out_dir: str | Path) -> str:
    return f"sqlite:///{(Path(out_dir) / 'study.db').resolve()}"


def tune(
    train_dir: str | Path,
    space_path: str | Path,
    trials: int,
    out_dir: str | Path,
    config_path: str | Path | None = None,
    overrides: Sequence[str] = (),
    storage: str | None = None,
    study_name: str = "maskcls",
    seed: int = 0,
    timeout: float | None = None,
    progress: bool = False,
) -> dict:
    """Run ``trials`` more trials of a study that maximises OOF macro F1; write ``best.yaml`` and ``trials.csv``.

    ``storage`` defaults to ``<out_dir>/study.db``; any RDB URL (e.g. PostgreSQL) lets several machines
    add trials to one study: give each its own ``seed``, or their first (random) trials coincide.
    A trial that fails is recorded FAIL with its message (``trials.csv``, column ``user_attrs_error``)
    and the study goes on; bad data stops it. Returns the best trial (``None`` values while no trial
    completed) and trial counts by state over the whole study.
    """
    if not _number(trials, integer=True) or trials < 1:
        raise ValueError(f"trials must be a positive integer, got {trials!r}")
    if timeout is not None and (not _number(timeout) or timeout <= 0):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if not Path(train_dir).is_dir():
        raise DataError(f"{train_dir}: training folder not found")
    overrides = list(overrides)
    load_config(config_path, overrides)  # a broken base recipe stops here, not in every trial
    space = load_search_space(space_path, config_path, overrides)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    study = optuna.create_study(
        storage=storage or default_storage(out_dir),
        study_name=study_name,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=PRUNER_WARMUP_STEPS),
        load_if_exists=True,
    )
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise ValueError(
            f"study '{study_name}' in {storage or default_storage(out_dir)} minimises; use another study_name"
        )
    study.optimize(
        trial_objective(train_dir, space, out_dir, config_path, overrides, progress),
        n_trials=trials,
        timeout=timeout,
        catch=(_TrialFailed,),
        gc_after_trial=True,
        show_progress_bar=progress,
    )
    return write_study_results(study, out_dir)


def write_study_results(study: optuna.Study, out_dir: str | Path) -> dict:
    """Write ``trials.csv`` and the best trial's full recipe as ``best.yaml``; return the result summary."""
    out_dir = Path(out_dir)
    table = study.trials_dataframe()
    write_csv(out_dir / "trials.csv", table.drop(columns=["user_attrs_config"], errors="ignore"))
    counts = dict(Counter(trial.state.name for trial in study.trials))
    if not counts.get(TrialState.COMPLETE.name):
        return {"best_value": None, "best_params": None, "best_trial": None, "best_config": None, "trials": counts}
    best = study.best_trial
    if "config" not in best.user_attrs:
        raise ValueError(
            f"trial {best.number} of study '{study.study_name}' has no stored recipe; was it run by maskcls tune?"
        )
    cfg = config_from_dict(best.user_attrs["config"], source=f"trial {best.number} of study '{study.study_name}'")
    best_config = write_yaml(out_dir / "best.yaml", cfg.to_dict())
    return {
        "best_value": best.value,
        "best_params": best.params,
        "best_trial": best.number,
        "best_config": str(best_config),
        "trials": counts,
    }
