"""The solve's person holdout: the measurement every keep / drop decision is taken on.

A share of the training persons (stratified by class, all 7 photos of each) is set aside before any member
trains. Members train their k folds on the other persons and predict the eval photos *and* the holdout's
photos with all their fold models averaged, TTA included: the holdout rows of every ``test_probs.csv`` are
predicted exactly as the submission is. So a vote, a weighted vote, a pseudo-label member or person pooling
is scored on the holdout the way it will act on the submission; the out-of-fold table of single fold models
(softer ensembles are not what OOF rows are) is kept beside it as the proxy, for comparison.

On disk (``<solve>/holdout/``), as two views the ordinary runs read without knowing of it:

- ``train/``: ``train.csv`` without the holdout persons; ``images`` links to the real training photos;
- ``eval/``: ``info.csv`` listing the eval photos, then the holdout's as ``holdout/<person folder>/<file>``;
  ``images/`` links to both;
- ``answers.csv``: the holdout photos' ``image_id`` (as in the eval view), ``person_id`` and ``label``.

The cost: the members train on ``1 - share`` of the persons, and predict the holdout's photos as well.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.folds import assign_folds
from ..core.io import write_csv
from ..core.metrics import classification_metrics
from ..core.tables import PROB_COLUMNS
from ..data.layout import read_eval, read_train

HOLDOUT_DIR = "holdout"
ANSWERS_FILE = "answers.csv"
PREFIX = "holdout/"  # image ids of holdout photos in the eval view
DEFAULT_SHARE = 0.15


@dataclass(frozen=True)
class Holdout:
    train_dir: Path
    eval_dir: Path
    answers: pd.DataFrame  # image_id, person_id, label

    @property
    def persons(self) -> int:
        return int(self.answers["person_id"].nunique())

    @property
    def description(self) -> str:
        return f"holdout of {self.persons} persons ({len(self.answers)} photos), averaged fold models"


def is_holdout(image_ids) -> np.ndarray:
    """Which rows of an eval-view table are holdout photos."""
    return pd.Series(image_ids, dtype=str).str.startswith(PREFIX).to_numpy()


def eval_rows(table: pd.DataFrame, column: str = "image_id") -> pd.DataFrame:
    """The rows of the real eval set (the holdout's removed), in their order."""
    return table[~is_holdout(table[column])].reset_index(drop=True)


def held_out(manifest: pd.DataFrame, share: float, seed: int = 42) -> np.ndarray:
    """Which photos of a training manifest the holdout takes (whole persons, stratified): what ``make_holdout``
    sets aside, known before anything is written (the planner counts the persons left to train on)."""
    return assign_folds(manifest, max(2, round(1 / share)), seed) == 0


def make_holdout(
    train_dir: str | Path,
    eval_dir: str | Path | None,
    out_dir: str | Path,
    share: float,
    seed: int = 42,
    prefix: str = PREFIX,
    folder: str = HOLDOUT_DIR,
) -> Holdout:
    """Write the two views (see the module docstring) into ``out_dir/folder`` and return the ``Holdout``.

    Without ``eval_dir`` the eval view holds the holdout's photos only: an eval split with known answers, as
    ``benchmarks/solve_on_persons.py`` makes to score whole solves on persons they never saw."""
    train_dir, root = Path(train_dir).resolve(), Path(out_dir) / folder
    manifest, _ = read_train(train_dir)
    held = manifest[held_out(manifest, share, seed)]
    held_ids = set(held["person_id"])
    table = pd.read_csv(train_dir / "train.csv", dtype=str, keep_default_na=False)
    if root.exists():
        shutil.rmtree(root)
    (root / "train").mkdir(parents=True)
    write_csv(root / "train" / "train.csv", table[~table["id"].isin(held_ids)])
    _link(train_dir / "images", root / "train" / "images")

    images = root / "eval" / "images"
    images.mkdir(parents=True)
    info = read_eval(eval_dir)[0] if eval_dir is not None else pd.DataFrame({"image_id": []}, dtype=str)
    for image_id in info["image_id"]:
        _link(Path(eval_dir).resolve() / "images" / image_id, images / image_id)
    (images / prefix.rstrip("/")).mkdir()
    for person in sorted({Path(path).parent for path in held["path"]}):
        _link(person, images / prefix / person.name)
    held_ids_in_view = [f"{prefix}{Path(path).parent.name}/{Path(path).name}" for path in held["path"]]
    write_csv(root / "eval" / "info.csv", pd.DataFrame({"ImageID": [*info["image_id"], *held_ids_in_view]}))
    answers = pd.DataFrame(
        {"image_id": held_ids_in_view, "person_id": held["person_id"].to_numpy(), "label": held["label"].to_numpy()}
    )
    write_csv(root / ANSWERS_FILE, answers)
    return Holdout(root / "train", root / "eval", answers)


def load_holdout(out_dir: str | Path) -> Holdout | None:
    """The holdout a solve made (None when it has none)."""
    root = Path(out_dir) / HOLDOUT_DIR
    if not (root / ANSWERS_FILE).is_file():
        return None
    answers = pd.read_csv(root / ANSWERS_FILE, dtype={"image_id": str, "person_id": str})
    return Holdout(root / "train", root / "eval", answers)


def holdout_scores(test_probs: pd.DataFrame, holdout: Holdout, probs: np.ndarray | None = None) -> dict:
    """Macro F1, accuracy and per-head accuracies of ``test_probs``'s holdout rows (or of ``probs``, an array
    aligned with ``test_probs``, e.g. person-pooled probabilities)."""
    values = test_probs[PROB_COLUMNS].to_numpy(dtype=np.float64) if probs is None else np.asarray(probs)
    found = holdout_row_of(test_probs)
    answers = holdout.answers[holdout.answers["image_id"].isin(found.index)]
    metrics = classification_metrics(answers["label"].to_numpy(np.int64), values[found.loc[answers["image_id"]]])
    return {"photos": int(len(answers)), **{key: round(float(value), 4) for key, value in metrics.items()}}


def holdout_row_of(test_probs: pd.DataFrame) -> pd.Series:
    """The row position of each holdout photo in an eval-view table, indexed by its ``image_id``."""
    rows = is_holdout(test_probs["image_id"])
    return pd.Series(np.flatnonzero(rows), index=test_probs["image_id"][rows].to_numpy())


def _link(source: Path, target: Path) -> None:
    """A symbolic link (a copy where links cannot be made, e.g. some Windows setups)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(source, target, target_is_directory=source.is_dir())
    except OSError:
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, target)
