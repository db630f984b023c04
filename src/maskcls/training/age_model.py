"""A main model plus an age-specific model, trained on the same person folds and combined.

Age is the hard head of this task (30-59 vs 60+ especially). A second network trained for age
alone (``model.head=age_classes``, or ``age_regression`` for an age in years) replaces the main
model's age output: the combined 18-class probabilities are the main model's mask x gender
marginals times the age model's age-group probabilities. For regression, the two age cuts are
chosen on the out-of-fold predictions to maximise the 18-class macro F1 (teams found that a cut
below 60, e.g. 58, pays off because predicted ages shrink towards the mean); their honest score,
with cuts fitted on other persons only, is reported beside it.

A combined directory has a run's shape (``oof.csv``, ``summary.json``) plus ``combine.json``, so
``maskcls predict`` and ``maskcls ensemble`` take it like any run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import Config
from ..io import write_csv, write_json
from ..labels import encode, head_probabilities, joint_from_heads
from ..metrics import classification_metrics, macro_f1
from ..tables import probs_of, read_oof, with_probs
from .kfold import AGE_COLUMNS, RunError, train_kfold

COMBINE_FILE = "combine.json"
MIDDLE_CUTS = np.arange(25.0, 35.01, 0.5)
OLD_CUTS = np.arange(50.0, 66.01, 0.5)


@dataclass
class AgeCombination:
    main: Path
    age: Path
    cuts: tuple[float, float] | None  # age-regression cuts (middle, old); None for an age classifier
    fallback_class: int = 0

    def combine(self, main_probs: np.ndarray, age_probs: np.ndarray, age_pred: np.ndarray | None = None) -> np.ndarray:
        """18-class probabilities from the main model's ``(N, 18)`` and the age model's ``(N, 3)`` (NaN rows stay NaN)."""
        if self.cuts is not None:
            if age_pred is None:
                raise RunError(f"{self.age} is an age regression model but gave no predicted ages")
            age_probs = age_groups_one_hot(age_pred, self.cuts)
        heads = head_probabilities(main_probs)
        return joint_from_heads(heads["mask"], heads["gender"], np.asarray(age_probs, dtype=np.float64))


def age_groups_one_hot(ages: np.ndarray, cuts: tuple[float, float]) -> np.ndarray:
    ages = np.asarray(ages, dtype=np.float64)
    groups = (ages >= cuts[0]).astype(int) + (ages >= cuts[1]).astype(int)
    one_hot = np.eye(3)[groups]
    one_hot[~np.isfinite(ages)] = np.nan
    return one_hot


def fit_age_cuts(main_probs: np.ndarray, age_pred: np.ndarray, labels: np.ndarray) -> tuple[tuple[float, float], float]:
    """The (middle, old) cuts on predicted ages that maximise 18-class macro F1, and that F1 (grid search)."""
    heads = head_probabilities(main_probs)
    # With a one-hot age, the joint argmax is the mask argmax, the gender argmax and the age group.
    mask_and_gender = encode(heads["mask"].argmax(axis=1), heads["gender"].argmax(axis=1), np.zeros(len(labels), dtype=np.int64))
    age_pred = np.asarray(age_pred, dtype=np.float64)
    best, best_score = (30.0, 60.0), -1.0
    for middle in MIDDLE_CUTS:
        for old in OLD_CUTS[OLD_CUTS > middle]:
            groups = (age_pred >= middle).astype(np.int64) + (age_pred >= old).astype(np.int64)
            score = macro_f1(labels, mask_and_gender + groups)
            if score > best_score + 1e-12:
                best, best_score = (float(middle), float(old)), score
    return best, best_score


def train_with_age_model(train_dir: str | Path, main_cfg: Config, age_cfg: Config, out_dir: str | Path, force: bool = False, progress: bool = True) -> dict:
    """Train ``main/`` and ``age/`` on the same person folds in ``out_dir``, then combine them there."""
    if main_cfg.model.head in ("age_classes", "age_regression"):
        raise RunError("the main recipe must predict the 18 classes; put the age head in the age recipe")
    if age_cfg.model.head not in ("age_classes", "age_regression"):
        raise RunError(f"the age recipe needs model.head=age_classes or age_regression, not '{age_cfg.model.head}'")
    # Same folds and labels for both, or the combined out-of-fold predictions would not be out of fold.
    age_cfg = age_cfg.model_copy(update={"cv": main_cfg.cv, "labels": main_cfg.labels})
    out_dir = Path(out_dir)
    train_kfold(train_dir, main_cfg, out_dir / "main", force=force, progress=progress)
    train_kfold(train_dir, age_cfg, out_dir / "age", force=force, progress=progress)
    return combine_runs(out_dir / "main", out_dir / "age", out_dir)


def combine_runs(main_dir: str | Path, age_dir: str | Path, out_dir: str | Path, seed: int = 0) -> dict:
    """Write the combined run of a main and an age-specific run (same photos, same folds) to ``out_dir``."""
    from ..ensemble.stacking import cross_fit

    main_dir, age_dir, out_dir = Path(main_dir).resolve(), Path(age_dir).resolve(), Path(out_dir)
    main = read_oof(main_dir / "oof.csv")
    age = pd.read_csv(age_dir / "oof.csv", dtype={"image_id": str, "person_id": str})
    missing = [c for c in AGE_COLUMNS if c not in age]
    if missing:
        raise RunError(f"{age_dir}/oof.csv has no age-group columns {missing}: is it an age-specific run?")
    if set(age["image_id"]) != set(main["image_id"]):
        raise RunError(f"{main_dir} and {age_dir} were trained on different photos")
    age = age.set_index("image_id").loc[main["image_id"]].reset_index()
    if not np.array_equal(age["fold"].to_numpy(), main["fold"].to_numpy()):
        raise RunError(f"{main_dir} and {age_dir} used different folds: their combination would not be out of fold")
    labels, main_probs = main["label"].to_numpy(), probs_of(main)
    summary = {"task": "classes", "main": str(main_dir), "age": str(age_dir)}
    cuts = None
    if "age_pred" in age:
        age_pred = age["age_pred"].to_numpy()
        cuts, in_sample = fit_age_cuts(main_probs, age_pred, labels)

        def fit_then_apply(fit_rows, score_rows):
            split_cuts, _ = fit_age_cuts(main_probs[fit_rows], age_pred[fit_rows], labels[fit_rows])
            return AgeCombination(main_dir, age_dir, split_cuts).combine(main_probs[score_rows], None, age_pred[score_rows])

        honest, _ = cross_fit(fit_then_apply, labels, main["person_id"].to_numpy(), 5, seed)
        summary.update({"age_cuts": list(cuts), "in_sample_macro_f1": in_sample, "oof_note": "age cuts fitted on other persons (5 person-grouped splits)"})
        combined = honest
    else:
        combined = AgeCombination(main_dir, age_dir, None).combine(main_probs, age[AGE_COLUMNS].to_numpy())
    scores = classification_metrics(labels, combined)
    main_scores = classification_metrics(labels, main_probs)
    summary = {
        **{f"oof_{k}" if k in ("macro_f1", "accuracy") else k: v for k, v in scores.items()},
        **summary,
        "main_oof_macro_f1": main_scores["macro_f1"],
        "main_age_accuracy": main_scores["age_accuracy"],
        "images": int(len(main)),
        "persons": int(main["person_id"].nunique()),
    }
    fallback = int(np.bincount(labels, minlength=18).argmax())
    write_csv(out_dir / "oof.csv", with_probs(main[["image_id", "person_id", "fold", "label"]], combined))
    write_json(out_dir / "summary.json", summary)
    write_json(out_dir / COMBINE_FILE, {"main": str(main_dir), "age": str(age_dir), "age_cuts": None if cuts is None else list(cuts), "fallback_class": fallback})
    return summary


def load_combination(out_dir: str | Path) -> AgeCombination:
    recipe = json.loads((Path(out_dir) / COMBINE_FILE).read_text())
    for key in ("main", "age"):
        if not Path(recipe[key]).is_dir():
            raise RunError(f"{out_dir}/{COMBINE_FILE} names {key} run {recipe[key]}, which is missing")
    cuts = tuple(recipe["age_cuts"]) if recipe.get("age_cuts") else None
    return AgeCombination(Path(recipe["main"]), Path(recipe["age"]), cuts, recipe.get("fallback_class", 0))
