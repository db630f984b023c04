"""``maskcls solve``: the best submission within a time budget, as ordinary runs and ensembles.

    calibrate -> plan -> members (k-fold runs, each predicting the eval set with TTA) -> ensemble
              -> pseudo-label round (best) -> person consistency -> submission

Every member is a normal run directory (``members/<recipe>``), every combination a normal ensemble
directory (``ensembles/with_<recipe>``, and the chosen one in ``final/``). ``plan.json`` holds the plan and,
after each stage, its actual minutes and results; it is written atomically, so a killed solve resumes from
it (``resume_solve``): finished stages are kept, an interrupted member continues its k-fold run from its
last checkpoint. After each stage the rest of the plan is fitted into the time left (``plan.replan``) and a
deadline stops a training stage's epochs before it overruns its share.

Preset ``best`` keeps a stage in the final combination only if its honest OOF macro F1 beats the
combination without it (members are added to a soft vote one by one; then a weighted vote, the
pseudo-label member and person consistency each have to beat what came before); the summary says
what was dropped and why. Preset ``fast`` trains one member, no pseudo-labels.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from ..core.artifacts import PLAN_FILE, PREDICT_FILE, RUN_FILE, SUBMISSION_FILE, SUMMARY_FILE, TEST_PROBS_FILE, RunError
from ..core.config import RECIPES_DIR, Config, ConfigError, load_config
from ..core.io import write_csv, write_json
from ..core.tables import read_test_probs
from ..data.layout import SKIP_HINT, DataError, read_eval, read_train
from ..ensemble.build import build_ensemble
from ..ensemble.person_consistency import GroupsError, person_consistent_table, read_groups
from ..ensemble.pseudo import select_pseudo_labels
from ..inference.predict import predict_eval
from ..persons.group import group_photos
from ..training.kfold import check_recipe, resume_kfold, train_kfold
from .calibrate import CANDIDATES, calibrate, typical_photo_size
from .display import PlanProgress, StageClock
from .plan import MEMBER_RECIPES, TTA_VIEWS, Plan, Stage, Workload, make_plan, replan, stage_allowance

TTA = "flip"
TOLERANCE = 0.05  # the budget is reported as kept when spent <= budget * (1 + TOLERANCE)
PSEUDO_THRESHOLD = 0.9
# Settings every member (and calibration) starts from; the user's --set comes after them and wins. The stem and
# first two stages of lite0 keep their ImageNet weights: a run's epochs 1.66x as fast on the CPU at 128 px, and the
# same OOF macro F1 in paired runs (0.6232 vs 0.6204, 0.6178 vs 0.6178; BENCHMARKS.md, "Fixed early stages").
MEMBER_DEFAULTS = ("model.freeze_stages=3",)
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
) -> dict:
    """Calibrate, plan, ``announce(plan)``, then (unless ``dry_run``) run the plan in ``out_dir``; returns the summary.

    The budget's clock starts here: reading the layout and calibrating count as the ``calibrate`` stage.
    """
    started = time.monotonic()
    out_dir = Path(out_dir)
    if not dry_run and out_dir.exists() and any(out_dir.iterdir()) and not force:
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
    )
    recipes_folder(settings.recipes_dir)
    load_config(None, settings.overrides)  # a bad --set fails before calibrating, not in the first member
    manifest, workload = _read_layout(settings)
    speeds, skipped = calibrate(
        manifest, workload, budget_minutes, tuple(settings.candidates), accelerator, tuple(settings.overrides), progress
    )
    minutes = (time.monotonic() - started) / 60
    plan = make_plan(speeds, workload, budget_minutes, preset, spent_minutes=minutes, tta=TTA, max_epochs=max_epochs)
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
        return {"dry_run": True, "plan": plan.to_dict()}
    for stage in plan.stages:  # every member's recipe and backbone, before out_dir is written
        if stage.kind in ("member", "pseudo") and stage.status != "dropped":
            check_recipe(member_config(settings, stage))
    if out_dir.exists() and any(out_dir.iterdir()):
        shutil.rmtree(out_dir)  # --force, only now that every check has passed
    out_dir.mkdir(parents=True, exist_ok=True)
    _save(out_dir, plan, settings)
    return _execute(out_dir, plan, settings, progress)


def resume_solve(
    out_dir: str | Path, budget_minutes: float | None = None, progress: bool = True, announce=None
) -> dict:
    """Continue a killed solve from its ``plan.json`` (``budget_minutes`` replaces the original budget)."""
    out_dir = Path(out_dir)
    if not (out_dir / PLAN_FILE).is_file():
        raise RunError(f"cannot resume {out_dir}: {PLAN_FILE} is missing (was it made by `maskcls solve`?)")
    saved = json.loads((out_dir / PLAN_FILE).read_text())
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

    def result_of(self, kind: str) -> dict | None:
        done = [s for s in self.plan.stages if s.kind == kind and s.status == "done"]
        return done[-1].result if done else None

    def combination(self) -> dict:
        """The current final combination (final, members, method, scores): the pseudo-label round's when it
        was kept, else the ensemble stage's."""
        pseudo = self.result_of("pseudo")
        return (pseudo if pseudo and pseudo.get("kept") else self.result_of("ensemble") or {}).get("combination", {})


def _execute(out_dir: Path, plan: Plan, settings: SolveSettings, progress: bool) -> dict:
    spent_before, session = plan.spent_minutes, time.monotonic()

    def spent() -> float:
        return spent_before + (time.monotonic() - session) / 60

    with PlanProgress(plan, spent, progress, title=f"solve {out_dir}") as display:
        context = _Context(out_dir, settings, plan, spent, display)
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


def _train_member(context: _Context, stage: Stage, run_dir: Path, extra: Path | None = None) -> dict:
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
    clock = StageClock(context.display, stage.folds - done_folds, stage.epochs, allowance, predict_seconds)
    if not (run_dir / SUMMARY_FILE).is_file():
        if (run_dir / RUN_FILE).is_file():
            resume_kfold(run_dir, progress=False, callbacks=[clock])
        else:
            train_kfold(
                settings.train_dir,
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
            settings.eval_dir,
            on_bad_image=settings.on_bad_image,
            accelerator=settings.accelerator,
            cache_dir=settings.cache_dir,
            progress=False,
        )
    result = {"run": str(run_dir), **_scores(run_dir)}
    if clock.stopped_early:
        result["stopped_early_at_epochs"] = clock.stopped_early
        stage.note = f"deadline: epochs cut to {clock.stopped_early} in {len(clock.stopped_early)} fold(s)"
    return result


def _run_member(context: _Context, stage: Stage) -> dict:
    return _train_member(context, stage, context.out_dir / "members" / stage.recipe)


def _run_ensemble(context: _Context, stage: Stage) -> dict:
    """Add members to a soft vote one by one (``best``: only those that raise its honest OOF macro F1), try a
    weighted vote of the kept ones, and write the chosen combination to ``final/``."""
    members = [s for s in context.plan.stages if s.kind == "member" and s.status == "done"]
    if not members:
        raise RunError("no member finished, so there is nothing to combine")
    best = context.plan.preset == "best"
    kept, score = [members[0]], members[0].result["oof_macro_f1"]
    decisions = [{"stage": members[0].name, "kept": True, "oof_macro_f1": score, "reason": "the first member"}]
    for member in members[1:]:
        candidate = build_ensemble(
            [Path(m.result["run"]) for m in kept + [member]],
            "soft",
            context.out_dir / "ensembles" / f"with_{member.recipe}",
        )
        better = candidate["oof_macro_f1"] > score
        decisions.append(
            {
                "stage": member.name,
                "kept": better or not best,
                "oof_macro_f1": member.result["oof_macro_f1"],
                "combined_oof_macro_f1": candidate["oof_macro_f1"],
                "reason": f"soft vote with it {candidate['oof_macro_f1']:.4f} {'>' if better else '<='} "
                f"{score:.4f} without it",
            }
        )
        if better or not best:
            kept.append(member)
            score = candidate["oof_macro_f1"]
    runs = [Path(m.result["run"]) for m in kept]
    method = "soft"
    if len(kept) > 1:
        weighted = build_ensemble(runs, "weighted", context.out_dir / "ensembles" / "weighted")
        better = weighted["oof_macro_f1"] > score
        decisions.append(
            {
                "stage": "weighted vote",
                "kept": better,
                "combined_oof_macro_f1": weighted["oof_macro_f1"],
                "reason": f"weighted vote (honest, person-grouped CV) {weighted['oof_macro_f1']:.4f} "
                f"{'>' if better else '<='} soft vote {score:.4f}",
            }
        )
        method = "weighted" if better else "soft"
    return {"combination": _combine(context, runs, method), "decisions": decisions}


def _combine(context: _Context, runs: list[Path], method: str) -> dict:
    """Write the final combination to ``final/``; what the later stages and the summary read of it."""
    summary = build_ensemble(runs, method, context.out_dir / "final")
    return {
        "final": str(context.out_dir / "final"),
        "members": [str(r) for r in runs],
        "method": method,
        **{key: summary[key] for key in SCORE_KEYS if key in summary},
    }


def _run_pseudo(context: _Context, stage: Stage) -> dict:
    """One pseudo-label round: confident eval photos of the current combination train one more member."""
    settings, current = context.settings, context.combination()
    pseudo_csv = context.out_dir / "pseudo" / "pseudo.csv"
    if not pseudo_csv.is_file():
        max_per_class = max(10, context.plan.workload.eval_photos // 12)
        selected = select_pseudo_labels(
            read_test_probs(Path(current["final"]) / TEST_PROBS_FILE), PSEUDO_THRESHOLD, max_per_class
        )
        selected.insert(
            1, "path", [str(Path(settings.eval_dir) / "images" / image_id) for image_id in selected["image_id"]]
        )
        write_csv(pseudo_csv, selected)
    count = len(pd.read_csv(pseudo_csv))
    if count == 0:
        return {"kept": False, "pseudo_labels": 0, "reason": f"no eval photo reached p >= {PSEUDO_THRESHOLD}"}
    run_dir = context.out_dir / "members" / f"{stage.recipe}_pseudo"
    result = {**_train_member(context, stage, run_dir, extra=pseudo_csv), "pseudo_labels": count}
    runs = [Path(r) for r in current["members"]] + [run_dir]
    candidate = build_ensemble(runs, current["method"], context.out_dir / "ensembles" / "with_pseudo")
    before = current["oof_macro_f1"]
    kept = candidate["oof_macro_f1"] > before
    result.update(
        {
            "combined_oof_macro_f1": candidate["oof_macro_f1"],
            "kept": kept,
            "reason": f"{current['method']} vote with it {candidate['oof_macro_f1']:.4f} "
            f"{'>' if kept else '<='} {before:.4f} without it "
            "(its OOF carries a little knowledge of all training persons, through the pseudo-labels)",
        }
    )
    if kept:
        result["combination"] = _combine(context, runs, current["method"])
    return result


def _run_persons(context: _Context, stage: Stage) -> dict:
    """Group the eval photos into persons and measure person-consistent prediction on the final OOF table."""
    settings, current = context.settings, context.combination()
    groups_csv = context.out_dir / "persons" / "groups.csv"
    options = dict(
        run_dir=current["final"],
        train_dir=settings.train_dir,
        cache_dir=settings.cache_dir,
        accelerator=settings.accelerator,
        progress=False,
    )
    group_size, note = settings.group_size, ""
    try:
        report = group_photos(settings.eval_dir, groups_csv, group_size=group_size, **options)
    except GroupsError as err:
        if group_size is None:
            raise
        group_size, note = None, f"structured grouping impossible ({err}); clustered by threshold instead"
        report = group_photos(settings.eval_dir, groups_csv, group_size=None, **options)
    scores = report["oof_consistency"]
    without, clustered = scores["without"]["macro_f1"], scores["clustered_groups"]["macro_f1"]
    kept = clustered > without
    grouping = {key: report["train"][key] for key in ("purity", "completeness", "pairwise_f1", "exact_persons")}
    return {
        "kept": kept,
        "groups": str(groups_csv),
        "group_size": group_size,
        "grouping_on_train": grouping,
        "oof": scores,
        "eval_groups": report["eval"]["groups"],
        "note": note,
        "reason": f"person-consistent OOF macro F1 with clustered groups {clustered:.4f} "
        f"{'>' if kept else '<='} {without:.4f} without",
    }


def _run_finish(context: _Context, stage: Stage) -> dict:
    """Top-level test_probs.csv and submission.csv from the final combination (person-consistent when kept)."""
    final = Path(context.combination()["final"])
    test_probs = pd.read_csv(final / TEST_PROBS_FILE, dtype={"image_id": str})
    submission = pd.read_csv(final / SUBMISSION_FILE, dtype=str, keep_default_na=False)
    persons = context.result_of("persons")
    answers_from = f"{final}/{SUBMISSION_FILE}"
    if persons and persons.get("kept"):
        groups = read_groups(persons["groups"], test_probs["image_id"])
        test_probs, submission["ans"] = person_consistent_table(
            test_probs, submission["ans"].to_numpy(), groups, persons["group_size"]
        )
        answers_from = "person_p0..person_p17 (person-consistent)"
    write_csv(context.out_dir / TEST_PROBS_FILE, test_probs)
    write_csv(context.out_dir / SUBMISSION_FILE, submission)
    report = write_evaluation_report(final, context.out_dir / "report")
    return {"submission": str(context.out_dir / SUBMISSION_FILE), "answers_from": answers_from, "report": report}


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
        if s.kind in ("member", "pseudo") and s.status == "done" and "run" in s.result
    ]
    ensemble = context.result_of("ensemble") or {}
    decisions = list(ensemble.get("decisions", []))
    pseudo = context.result_of("pseudo")
    if pseudo is not None:
        decisions.append(
            {"stage": "pseudo-label round", "kept": pseudo.get("kept", False), "reason": pseudo.get("reason", "")}
        )
    persons = context.result_of("persons")
    if persons is not None:
        decisions.append({"stage": "person consistency", "kept": persons["kept"], "reason": persons["reason"]})
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
        "persons": persons,
        "submission": (context.result_of("finish") or {}).get("submission"),
        "report": (context.result_of("finish") or {}).get("report"),
    }
