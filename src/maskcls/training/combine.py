"""Runs that each predict part of the label, trained on the same person folds and combined.

The 18 classes are mask x gender x age group, so the class probabilities can be built from three
heads that come from different models: ``p(class) = p(mask) * p(gender) * p(age group)``. Two uses:

- **separate models** (``model.head: separate``): one network per head (``mask_classes``,
  ``gender_classes``, ``age_classes``), as some competition teams did;
- **an age-specific model** (``--age-config``): a main 18-class run keeps mask and gender, a second
  network trained for age alone (``age_classes``, or ``age_regression`` for an age in years) replaces
  the age. For regression the two cuts on predicted ages are chosen on out-of-fold predictions to
  maximise the 18-class macro F1 (teams found a cut below 60, e.g. 58, pays off because predicted
  ages shrink towards the mean); the reported score uses cuts fitted on other persons only.

A combined directory has a run's shape (``oof.csv``, ``summary.json``) plus ``combine.json``, so
``maskcls predict`` and ``maskcls ensemble`` take it like any run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.artifacts import COMBINE_FILE, OOF_FILE, SUMMARY_FILE, RunError
from ..core.config import Config
from ..core.io import write_csv, write_json
from ..core.labels import encode, head_probabilities, joint_from_heads
from ..core.metrics import classification_metrics, macro_f1
from ..core.tables import HEAD_COLUMNS, PROB_COLUMNS, with_probs
from .kfold import check_recipe, oof_task, task_metrics, train_kfold

HEADS = ("mask", "gender", "age")
SINGLE_HEADS = {"mask": "mask_classes", "gender": "gender_classes", "age": "age_classes"}
MIDDLE_CUTS = np.arange(25.0, 35.01, 0.5)
OLD_CUTS = np.arange(50.0, 66.01, 0.5)


@dataclass
class Combination:
    """Which run provides each head, and the age cuts when the age comes from a regression model."""

    sources: dict[str, Path]
    age_cuts: tuple[float, float] | None = None
    fallback_class: int = 0

    @property
    def runs(self) -> list[Path]:
        return list(dict.fromkeys(self.sources.values()))

    def combine(self, outputs: dict[Path, tuple[np.ndarray, np.ndarray | None]]) -> np.ndarray:
        """18-class probabilities from each run's ``(probs, age_pred)``; NaN rows (unreadable photos) stay NaN."""
        heads = {}
        for head, run in self.sources.items():
            probs, age_pred = outputs[run]
            if head == "age" and self.age_cuts is not None:
                if age_pred is None:
                    raise RunError(f"{run} should be an age regression model but gave no predicted ages")
                heads[head] = age_groups_one_hot(age_pred, self.age_cuts)
            elif probs.shape[1] == len(PROB_COLUMNS):
                heads[head] = head_probabilities(probs)[head]
            else:
                heads[head] = probs
        return joint_from_heads(heads["mask"], heads["gender"], heads["age"])


def age_groups_one_hot(ages: np.ndarray, cuts: tuple[float, float]) -> np.ndarray:
    ages = np.asarray(ages, dtype=np.float64)
    groups = (ages >= cuts[0]).astype(int) + (ages >= cuts[1]).astype(int)
    one_hot = np.eye(3)[groups]
    one_hot[~np.isfinite(ages)] = np.nan
    return one_hot


def fit_age_cuts(
    mask_probs: np.ndarray, gender_probs: np.ndarray, age_pred: np.ndarray, labels: np.ndarray
) -> tuple[tuple[float, float], float]:
    """The (middle, old) cuts on predicted ages that maximise 18-class macro F1, and that F1 (grid search)."""
    # With a one-hot age, the joint argmax is the mask argmax, the gender argmax and the age group.
    mask_and_gender = encode(
        mask_probs.argmax(axis=1), gender_probs.argmax(axis=1), np.zeros(len(labels), dtype=np.int64)
    )
    age_pred = np.asarray(age_pred, dtype=np.float64)
    best, best_score = (30.0, 60.0), -1.0
    for middle in MIDDLE_CUTS:
        for old in OLD_CUTS[middle < OLD_CUTS]:
            groups = (age_pred >= middle).astype(np.int64) + (age_pred >= old).astype(np.int64)
            score = macro_f1(labels, mask_and_gender + groups)
            if score > best_score + 1e-12:
                best, best_score = (float(middle), float(old)), score
    return best, best_score


def train_separate(
    train_dir: str | Path,
    cfg: Config,
    out_dir: str | Path,
    force: bool = False,
    progress: bool = True,
    label_fixes: str | Path | None = None,
) -> dict:
    """One network per head (``mask/``, ``gender/``, ``age/`` in ``out_dir``) on the same folds, combined there."""
    out_dir = Path(out_dir)
    head_cfgs = {
        head: cfg.model_copy(update={"model": cfg.model.model_copy(update={"head": SINGLE_HEADS[head]})})
        for head in HEADS
    }
    _check_before_training({out_dir / head: head_cfg for head, head_cfg in head_cfgs.items()}, force)
    for head, head_cfg in head_cfgs.items():
        train_kfold(train_dir, head_cfg, out_dir / head, force=force, progress=progress, label_fixes=label_fixes)
    return combine_runs({head: out_dir / head for head in HEADS}, out_dir)


def train_with_age_model(
    train_dir: str | Path,
    main_cfg: Config,
    age_cfg: Config,
    out_dir: str | Path,
    force: bool = False,
    progress: bool = True,
    label_fixes: str | Path | None = None,
) -> dict:
    """Train ``main/`` and ``age/`` on the same person folds in ``out_dir``, then combine them there."""
    if main_cfg.model.head not in ("linear", "msd", "three_head"):
        raise RunError(f"the main recipe must predict the 18 classes, not model.head={main_cfg.model.head}")
    if age_cfg.model.head not in ("age_classes", "age_regression"):
        raise RunError(f"the age recipe needs model.head=age_classes or age_regression, not '{age_cfg.model.head}'")
    # Same folds and labels for both, or the combined out-of-fold predictions would not be out of fold.
    age_cfg = age_cfg.model_copy(update={"cv": main_cfg.cv, "labels": main_cfg.labels})
    out_dir = Path(out_dir)
    _check_before_training({out_dir / "main": main_cfg, out_dir / "age": age_cfg}, force)
    train_kfold(train_dir, main_cfg, out_dir / "main", force=force, progress=progress, label_fixes=label_fixes)
    train_kfold(train_dir, age_cfg, out_dir / "age", force=force, progress=progress, label_fixes=label_fixes)
    return combine_runs({"mask": out_dir / "main", "gender": out_dir / "main", "age": out_dir / "age"}, out_dir)


def _check_before_training(runs: dict[Path, Config], force: bool) -> None:
    """Every member's recipe and --out checked before the first one trains (each then checks its data itself)."""
    for run_dir, run_cfg in runs.items():
        check_recipe(run_cfg)
        if run_dir.exists() and any(run_dir.iterdir()) and not force:
            raise RunError(f"{run_dir} already holds a run; use --force to replace it, or another --out")


def combine_runs(sources: dict[str, str | Path], out_dir: str | Path, seed: int = 0) -> dict:
    """Write the combination of runs trained on the same photos and folds (``sources``: head -> run) to ``out_dir``."""
    from ..core.crossfit import cross_fit

    missing = [head for head in HEADS if head not in sources]
    if missing:
        raise RunError(f"a combination needs a run for every head; missing {missing}")
    sources = {head: Path(run).resolve() for head, run in sources.items()}
    tables = _read_aligned(list(dict.fromkeys(sources.values())))
    reference = next(iter(tables.values()))
    labels, persons = reference["label"].to_numpy(), reference["person_id"].to_numpy()
    heads = {head: _head_oof(tables[run], head) for head, run in sources.items()}
    summary = {"task": "classes", "sources": {head: str(run) for head, run in sources.items()}, "age_cuts": None}
    cuts = None
    if "age_pred" in tables[sources["age"]]:
        age_pred = tables[sources["age"]]["age_pred"].to_numpy()
        cuts, in_sample = fit_age_cuts(heads["mask"], heads["gender"], age_pred, labels)

        def fit_then_apply(fit_rows, score_rows):
            split_cuts, _ = fit_age_cuts(
                heads["mask"][fit_rows], heads["gender"][fit_rows], age_pred[fit_rows], labels[fit_rows]
            )
            return joint_from_heads(
                heads["mask"][score_rows],
                heads["gender"][score_rows],
                age_groups_one_hot(age_pred[score_rows], split_cuts),
            )

        combined, _ = cross_fit(fit_then_apply, labels, persons, 5, seed)
        summary.update(
            {
                "age_cuts": list(cuts),
                "in_sample_macro_f1": in_sample,
                "oof_note": "age cuts fitted on other persons (5 person-grouped splits)",
            }
        )
    else:
        combined = joint_from_heads(heads["mask"], heads["gender"], heads["age"])
    scores = classification_metrics(labels, combined)
    summary = {
        **{f"oof_{k}" if k in ("macro_f1", "accuracy") else k: v for k, v in scores.items()},
        **summary,
        "source_scores": {str(run): _source_score(table) for run, table in tables.items()},
        "images": int(len(reference)),
        "persons": int(reference["person_id"].nunique()),
    }
    out_dir = Path(out_dir)
    fallback = int(np.bincount(labels, minlength=18).argmax())
    write_csv(out_dir / OOF_FILE, with_probs(reference[["image_id", "person_id", "fold", "label"]], combined))
    write_json(out_dir / SUMMARY_FILE, summary)
    write_json(
        out_dir / COMBINE_FILE,
        {"sources": summary["sources"], "age_cuts": summary["age_cuts"], "fallback_class": fallback},
    )
    return summary


def load_combination(out_dir: str | Path) -> Combination:
    recipe = json.loads((Path(out_dir) / COMBINE_FILE).read_text())
    sources = {head: Path(run) for head, run in recipe["sources"].items()}
    for head, run in sources.items():
        if not run.is_dir():
            raise RunError(f"{out_dir}/{COMBINE_FILE} takes the {head} head from {run}, which is missing")
    cuts = tuple(recipe["age_cuts"]) if recipe.get("age_cuts") else None
    return Combination(sources, cuts, recipe.get("fallback_class", 0))


def _read_aligned(runs: list[Path]) -> dict[Path, pd.DataFrame]:
    """Each run's OOF table in the first run's row order; refused unless photos and folds agree."""
    tables, reference = {}, None
    for run in runs:
        path = run / OOF_FILE
        if not path.is_file():
            raise RunError(f"{path} not found: train the run first")
        table = pd.read_csv(path, dtype={"image_id": str, "person_id": str})
        if reference is None:
            reference = table
        else:
            if set(table["image_id"]) != set(reference["image_id"]):
                raise RunError(f"{run} and {next(iter(tables))} were trained on different photos")
            table = table.set_index("image_id").loc[reference["image_id"]].reset_index()
            if not np.array_equal(table["fold"].to_numpy(), reference["fold"].to_numpy()):
                raise RunError(
                    f"{run} and {next(iter(tables))} used different folds: their combination would not be out of fold"
                )
        tables[run] = table
    return tables


def _head_oof(table: pd.DataFrame, head: str) -> np.ndarray:
    task = oof_task(table)
    if task == "classes":
        return head_probabilities(table[PROB_COLUMNS].to_numpy())[head]
    if task != head:
        raise RunError(f"a run trained for '{task}' cannot provide the {head} head")
    return table[HEAD_COLUMNS[head]].to_numpy()


def _source_score(table: pd.DataFrame) -> dict:
    task = oof_task(table)
    return {"task": task, "macro_f1": task_metrics(table, task)["macro_f1"]}
