"""Build an ensemble directory from run directories; it has a run's shape, so ensembles can be ensembled.

An ensemble directory holds::

    oof.csv          image_id, person_id, fold, label, p0..p17 (honest: see build_ensemble)
    test_probs.csv   image_id, p0..p17, entropy, disagreement   (when every member has test_probs.csv)
    submission.csv   ImageID, ans                                 (same rows, same order)
    summary.json     the run summary's scores, plus how the ensemble was made and what each member scored
    ensemble.json    everything needed to combine new member probabilities the same way (load_ensemble)

Nothing is pickled: a stacker is refitted from the members' oof.csv when the ensemble is loaded.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.artifacts import ENSEMBLE_FILE, OOF_FILE, SUBMISSION_FILE, SUMMARY_FILE, TEST_PROBS_FILE
from ..core.config import unknown_choice
from ..core.crossfit import cross_fit
from ..core.io import atomic_dir, write_csv, write_json
from ..core.labels import NUM_CLASSES
from ..core.metrics import classification_metrics, disagreement, predictive_entropy
from ..core.tables import TableError, probs_of, read_oof, read_test_probs, with_probs
from .stacking import META_LEARNERS, Stacker, cross_validated_stacking
from .thresholds import apply_class_scales, class_scale_report
from .voting import WEIGHT_OBJECTIVES, WeightedVote, hard_vote, soft_vote

METHODS = ("soft", "hard", "weighted", "stack")
FORMAT_VERSION = 1
_RECIPE_KEYS = ("members", "weights", "learner", "head_features", "class_scales", "fallback_class", "seed")


class EnsembleError(ValueError):
    """Members that cannot be combined, or an ensemble directory that cannot be used."""


@dataclass
class MemberTables:
    """The members' OOF tables aligned on the first member's row order, and their test tables if all have one."""

    directories: list[Path]
    oof: pd.DataFrame  # the first member's image_id, person_id, fold, label
    oof_probs: np.ndarray  # (M, N, 18)
    test_ids: pd.Series | None = None
    test_probs: np.ndarray | None = None  # (M, T, 18); NaN rows are photos a member could not read
    test_note: str = ""


@dataclass
class Ensemble:
    """A fitted combination of members; ``combine`` turns members' probabilities into the ensemble's."""

    method: str
    members: list[Path]
    weights: np.ndarray | None = None
    learner: str | None = None  # stack only
    head_features: bool = False
    seed: int = 0
    class_scales: np.ndarray | None = None
    fallback_class: int = 0
    stacker: Stacker | None = field(default=None, repr=False)

    def combine(self, member_probs_list: Sequence[np.ndarray]) -> np.ndarray:
        """Ensemble probabilities ``(N, 18)`` from each member's ``(N, 18)`` probabilities (same rows, same order).

        Rows where any member has NaN (a photo it could not read) stay NaN.
        """
        members = (
            np.stack([np.asarray(p, dtype=np.float64) for p in member_probs_list]) if len(member_probs_list) else None
        )
        if members is None or members.shape[0] != len(self.members):
            raise EnsembleError(
                f"this ensemble combines {len(self.members)} members, got {0 if members is None else members.shape[0]}"
            )
        if members.ndim != 3 or members.shape[2] != NUM_CLASSES:
            raise EnsembleError(
                f"member probabilities must each have shape (N, {NUM_CLASSES}), got {members.shape[1:]}"
            )
        readable = np.all(np.isfinite(members), axis=(0, 2))
        probs = np.full(members.shape[1:], np.nan)
        if readable.any():
            probs[readable] = self._combine_readable(members[:, readable])
        return probs

    def answers(self, member_probs_list: Sequence[np.ndarray]) -> np.ndarray:
        """Submitted class of each row: argmax of ``combine`` (after ``class_scales`` if the ensemble has them);
        ``fallback_class`` (the most common training class) where there are no probabilities."""
        probs = self.combine(member_probs_list)
        readable = np.all(np.isfinite(probs), axis=1)
        if self.class_scales is not None and readable.any():
            probs[readable] = apply_class_scales(probs[readable], self.class_scales)
        return np.where(readable, np.nan_to_num(probs, nan=-1.0).argmax(axis=1), self.fallback_class).astype(np.int64)

    def _combine_readable(self, members: np.ndarray) -> np.ndarray:
        if self.method == "hard":
            return hard_vote(members, self.weights)
        if self.method == "stack":
            return self.stacker.predict_proba(members)
        return soft_vote(members, self.weights)


def build_ensemble(
    run_dirs: Sequence[str | Path],
    method: str,
    out_dir: str | Path,
    learner: str = "logreg",
    weight_objective: str = "log_loss",
    head_features: bool = False,
    adjust_thresholds: bool = False,
    cv_splits: int = 5,
    seed: int = 0,
) -> dict:
    """Combine run (or ensemble) directories into ``out_dir``; returns the summary (also in ``summary.json``).

    Methods: ``soft`` (mean probabilities), ``hard`` (majority vote), ``weighted`` (soft vote with weights
    fitted for ``weight_objective``), ``stack`` (meta-learner ``learner`` on the members' probabilities).

    The ensemble's ``oof.csv`` is honest: ``soft`` and ``hard`` fit nothing, and for ``weighted`` and
    ``stack`` each row comes from weights / a stacker fitted on the other persons' rows (``cv_splits``
    person-grouped splits), so its scores compare fairly with a single run's. Test-time weights / stacker
    are fitted on all OOF rows; the score on those same rows is reported as ``in_sample_macro_f1``
    (optimistic). With ``adjust_thresholds``, per-class scales are fitted on the honest OOF probabilities
    and used for ``submission.csv`` only; ``oof.csv`` and ``test_probs.csv`` stay unadjusted, and the
    scales' own cross-validated score is in ``threshold_adjusted`` (for ``weighted`` / ``stack`` it is
    slightly optimistic still: the other splits' probabilities came from models that saw the scored rows).
    """
    started = time.perf_counter()
    _check_options(method, learner, weight_objective, cv_splits)
    tables = read_members(run_dirs)
    out_dir = Path(out_dir)
    _check_out_dir(out_dir, tables.directories)

    labels = tables.oof["label"].to_numpy(dtype=np.int64)
    person_ids = tables.oof["person_id"].to_numpy()
    ensemble = Ensemble(
        method,
        tables.directories,
        learner=learner,
        head_features=head_features,
        seed=seed,
        fallback_class=_most_common(labels),
    )
    extra: dict = {}
    if method in ("soft", "hard"):
        ensemble.weights = np.full(len(tables.directories), 1.0 / len(tables.directories))
        oof_probs = ensemble.combine(tables.oof_probs)
    elif method == "weighted":
        split_weights: list[list[float]] = []

        def fit_weights_then_vote(fit_rows: np.ndarray, score_rows: np.ndarray) -> np.ndarray:
            vote = WeightedVote(weight_objective).fit(tables.oof_probs[:, fit_rows], labels[fit_rows])
            split_weights.append(vote.weights_.tolist())
            return vote.predict_proba(tables.oof_probs[:, score_rows])

        oof_probs, _ = cross_fit(fit_weights_then_vote, labels, person_ids, cv_splits, seed)
        ensemble.weights = WeightedVote(weight_objective).fit(tables.oof_probs, labels).weights_
        extra["cv_weights"] = split_weights
    else:
        oof_probs, _ = cross_validated_stacking(
            tables.oof_probs, labels, person_ids, learner, head_features, cv_splits, seed
        )
        ensemble.stacker = Stacker(learner, head_features, seed).fit(tables.oof_probs, labels)

    summary = _summary(tables, ensemble, labels, oof_probs, weight_objective, cv_splits, extra)
    if adjust_thresholds:
        report = class_scale_report(oof_probs, labels, person_ids, cv_splits, seed)
        ensemble.class_scales = np.asarray(report["scales"])
        summary["threshold_adjusted"] = {
            **report,
            "used_for": f"{SUBMISSION_FILE} only; {OOF_FILE} and {TEST_PROBS_FILE} are unadjusted",
        }

    with atomic_dir(out_dir) as tmp:
        write_csv(tmp / OOF_FILE, with_probs(tables.oof, oof_probs))
        if tables.test_probs is not None:
            test_probs = ensemble.combine(tables.test_probs)
            test_table = with_probs(pd.DataFrame({"image_id": tables.test_ids}), test_probs).assign(
                entropy=predictive_entropy(test_probs), disagreement=disagreement(tables.test_probs)
            )
            write_csv(tmp / TEST_PROBS_FILE, test_table)
            write_csv(
                tmp / SUBMISSION_FILE,
                pd.DataFrame({"ImageID": tables.test_ids, "ans": ensemble.answers(tables.test_probs)}),
            )
        summary["wall_seconds"] = round(time.perf_counter() - started, 1)
        write_json(tmp / SUMMARY_FILE, summary)
        write_json(tmp / ENSEMBLE_FILE, _recipe(ensemble, tables, weight_objective, cv_splits))
    return summary


def load_ensemble(out_dir: str | Path) -> Ensemble:
    """The ensemble that ``build_ensemble`` wrote to ``out_dir``, ready to ``combine`` new member probabilities.

    A stacker is refitted (deterministically, same seed) from the members' oof.csv; if any of those files
    changed since the build, the refit would differ, so that is refused.
    """
    out_dir = Path(out_dir)
    recipe_path = out_dir / ENSEMBLE_FILE
    if not recipe_path.is_file():
        raise EnsembleError(f"{out_dir} has no {ENSEMBLE_FILE}: was it made by build_ensemble?")
    recipe = json.loads(recipe_path.read_text())
    if recipe.get("format") != FORMAT_VERSION or recipe.get("method") not in METHODS:
        raise EnsembleError(
            f"{recipe_path}: unsupported format {recipe.get('format')!r} or method {recipe.get('method')!r}"
        )
    missing = [key for key in _RECIPE_KEYS if key not in recipe]
    if missing:
        raise EnsembleError(f"{recipe_path}: missing key(s) {', '.join(missing)}")
    members = [Path(entry["path"]) for entry in recipe["members"]]
    ensemble = Ensemble(
        recipe["method"],
        members,
        weights=None if recipe["weights"] is None else np.asarray(recipe["weights"], dtype=np.float64),
        learner=recipe["learner"],
        head_features=bool(recipe["head_features"]),
        seed=recipe["seed"],
        class_scales=None if recipe["class_scales"] is None else np.asarray(recipe["class_scales"], dtype=np.float64),
        fallback_class=recipe["fallback_class"],
    )
    if ensemble.method == "stack":
        for entry in recipe["members"]:
            oof_path = Path(entry["path"]) / OOF_FILE
            if not oof_path.is_file():
                raise EnsembleError(f"{oof_path} is missing: a stack ensemble is refitted from its members' {OOF_FILE}")
            if _sha256(oof_path) != entry["oof_sha256"]:
                raise EnsembleError(
                    f"{entry['path']}/{OOF_FILE} changed since {out_dir} was built; rebuild the ensemble"
                )
        tables = read_members(members, with_test=False)
        labels = tables.oof["label"].to_numpy(dtype=np.int64)
        ensemble.stacker = Stacker(ensemble.learner, ensemble.head_features, ensemble.seed).fit(
            tables.oof_probs, labels
        )
    return ensemble


def read_members(run_dirs: Sequence[str | Path], with_test: bool = True) -> MemberTables:
    """Read and align the members' tables by image_id; refuse members that disagree on photos, labels or persons."""
    directories = [Path(d).resolve() for d in run_dirs]
    if not directories:
        raise EnsembleError("an ensemble needs at least one member run directory")
    repeated = [str(d) for d in directories if directories.count(d) > 1]
    if repeated:
        raise EnsembleError(f"member {repeated[0]} is listed more than once")
    oofs = [_read(read_oof, d / OOF_FILE) for d in directories]
    reference = oofs[0].reset_index(drop=True)
    oof_probs = [probs_of(reference)]
    for directory, oof in zip(directories[1:], oofs[1:], strict=False):
        aligned = _align(oof, reference["image_id"], directory / OOF_FILE, directories[0] / OOF_FILE)
        for column in ("label", "person_id"):
            differs = np.flatnonzero(aligned[column].to_numpy() != reference[column].to_numpy())
            if differs.size:
                row = differs[0]
                raise EnsembleError(
                    f"{directory}/{OOF_FILE} disagrees with {directories[0]}/{OOF_FILE} on {column} "
                    f"for {differs.size} image(s), "
                    f"e.g. '{reference['image_id'][row]}': {aligned[column][row]} vs {reference[column][row]}"
                )
        oof_probs.append(probs_of(aligned))
    for directory, probs in zip(directories, oof_probs, strict=False):
        if not np.all(np.isfinite(probs)):
            raise EnsembleError(f"{directory}/{OOF_FILE} has missing or infinite probabilities")
    tables = MemberTables(directories, reference[["image_id", "person_id", "fold", "label"]], np.stack(oof_probs))
    if with_test:
        _attach_tests(tables)
    return tables


def _attach_tests(tables: MemberTables) -> None:
    lacking = [str(d) for d in tables.directories if not (d / TEST_PROBS_FILE).is_file()]
    if lacking:
        tables.test_note = (
            f"no {TEST_PROBS_FILE} in {', '.join(lacking)}: no {TEST_PROBS_FILE} or {SUBMISSION_FILE} written"
        )
        return
    first = _read(read_test_probs, tables.directories[0] / TEST_PROBS_FILE)
    test_probs = [probs_of(first)]
    for directory in tables.directories[1:]:
        table = _read(read_test_probs, directory / TEST_PROBS_FILE)
        test_probs.append(
            probs_of(
                _align(table, first["image_id"], directory / TEST_PROBS_FILE, tables.directories[0] / TEST_PROBS_FILE)
            )
        )
    tables.test_ids = first["image_id"].reset_index(drop=True)
    tables.test_probs = np.stack(test_probs)


def _align(table: pd.DataFrame, reference_ids: pd.Series, path: Path, reference_path: Path) -> pd.DataFrame:
    """``table`` in the row order of ``reference_ids``; refused unless it holds exactly those image ids."""
    ids, wanted = set(table["image_id"]), set(reference_ids)
    if ids != wanted:
        missing, extra = sorted(wanted - ids), sorted(ids - wanted)
        detail = "; ".join(
            part
            for part in (
                f"{len(missing)} of its image ids are missing (e.g. '{missing[0]}')" if missing else "",
                f"{len(extra)} are not in it (e.g. '{extra[0]}')" if extra else "",
            )
            if part
        )
        raise EnsembleError(
            f"{path} holds {len(table)} image ids, {reference_path} holds {len(reference_ids)}: {detail}"
        )
    return table.set_index("image_id").loc[reference_ids].reset_index()


def _summary(
    tables: MemberTables,
    ensemble: Ensemble,
    labels: np.ndarray,
    oof_probs: np.ndarray,
    weight_objective: str,
    cv_splits: int,
    extra: dict,
) -> dict:
    scores = classification_metrics(labels, oof_probs)
    summary = {
        "task": "classes",
        **{f"oof_{k}" if k in ("macro_f1", "accuracy") else k: v for k, v in scores.items()},
        "method": ensemble.method,
        "members": [
            {"path": str(d), "oof_macro_f1": classification_metrics(labels, probs)["macro_f1"]}
            for d, probs in zip(tables.directories, tables.oof_probs, strict=False)
        ],
        "images": int(len(tables.oof)),
        "persons": int(tables.oof["person_id"].nunique()),
        "oof_images": int(len(tables.oof)),
        "test_images": None if tables.test_ids is None else int(len(tables.test_ids)),
        "seed": ensemble.seed,
    }
    if tables.test_note:
        summary["test_note"] = tables.test_note
    if ensemble.method in ("soft", "hard", "weighted"):
        summary["weights"] = ensemble.weights.tolist()
    if ensemble.method in ("weighted", "stack"):
        fitted = ensemble.combine(tables.oof_probs)
        summary.update(
            {
                "oof_note": f"each OOF row is scored by {'weights' if ensemble.method == 'weighted' else 'a stacker'} "
                f"fitted on other persons ({cv_splits} person-grouped splits)",
                "cv_splits": cv_splits,
                "in_sample_macro_f1": classification_metrics(labels, fitted)["macro_f1"],
                "in_sample_note": "optimistic: the test-time model fitted and scored on the same OOF rows",
            }
        )
    if ensemble.method == "weighted":
        summary["weight_objective"] = weight_objective
    if ensemble.method == "stack":
        summary.update({"learner": ensemble.learner, "head_features": ensemble.head_features})
    return {**summary, **extra}


def _recipe(ensemble: Ensemble, tables: MemberTables, weight_objective: str, cv_splits: int) -> dict:
    return {
        "format": FORMAT_VERSION,
        "method": ensemble.method,
        "members": [{"path": str(d), "oof_sha256": _sha256(d / OOF_FILE)} for d in tables.directories],
        "weights": None if ensemble.weights is None else ensemble.weights.tolist(),
        "learner": ensemble.learner if ensemble.method == "stack" else None,
        "head_features": ensemble.head_features if ensemble.method == "stack" else None,
        "weight_objective": weight_objective if ensemble.method == "weighted" else None,
        "class_scales": None if ensemble.class_scales is None else ensemble.class_scales.tolist(),
        "fallback_class": ensemble.fallback_class,
        "cv_splits": cv_splits,
        "seed": ensemble.seed,
    }


def _check_options(method: str, learner: str, weight_objective: str, cv_splits: int) -> None:
    if method not in METHODS:
        raise EnsembleError(unknown_choice("ensemble method", method, METHODS))
    if method == "stack" and learner not in META_LEARNERS:
        raise EnsembleError(unknown_choice("meta-learner", learner, META_LEARNERS))
    if method == "weighted" and weight_objective not in WEIGHT_OBJECTIVES:
        raise EnsembleError(unknown_choice("weight objective", weight_objective, WEIGHT_OBJECTIVES))
    if cv_splits < 2:
        raise EnsembleError(f"cv_splits must be >= 2, got {cv_splits}")


def _check_out_dir(out_dir: Path, members: list[Path]) -> None:
    """The whole folder is replaced, so it must be empty, missing or an earlier ensemble, and hold no member."""
    resolved = out_dir.resolve()
    for member in members:
        if member == resolved or resolved in member.parents:
            raise EnsembleError(f"output {out_dir} would replace member {member}; choose another output folder")
    if out_dir.is_file() or (out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / ENSEMBLE_FILE).is_file()):
        raise EnsembleError(f"refusing to replace {out_dir}: it exists and is not an ensemble directory")


def _read(reader, path: Path) -> pd.DataFrame:
    try:
        return reader(path)
    except TableError as err:
        raise EnsembleError(str(err)) from None


def _most_common(labels: np.ndarray) -> int:
    return int(np.bincount(labels, minlength=NUM_CLASSES).argmax())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
