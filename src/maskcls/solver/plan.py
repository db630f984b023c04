"""The planner: pure arithmetic from measured speeds to a plan of stages that fits a time budget.

A member's minutes are counted from the measured photos/s of its backbone at its input size (training,
validation every epoch, OOF and test prediction with TTA, per-fold set-up; decoding the cache once per
input size). The first member (the lead) has its own backbone, size and epochs; the others share one
setting no larger than the lead's; all share the folds. Among the choices that fit the budget (less a
safety margin), the planner takes the one with the highest *prior value*, an expected macro-F1 gain
(``PlannerPriors``; docs/solve-planner.md gives each parameter's value and the measurement behind it).
The prior only ranks plans; what is finally kept is decided on measured scores by ``run.py``.

The first real epoch of a training stage replaces the calibrated speed of its backbone at its size with the one
observed (``observed_speed``, ``update_speed``; ``display.StageClock`` calls them).

After each stage ``replan`` fits the stages left into the time left, at the speed actually observed:
it drops the pseudo-label round first, then shortens members (epochs down to ``MIN_EPOCHS``), drops the
faces stage, drops members (never the last), shortens further, and finally cuts a lone unstarted member to 3 folds. When
training ran faster than estimated, the time no longer needed goes to more members (``_grow``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace

from ..core.budget import BudgetError

PRESETS = ("fast", "best")
# name -> (recipe file in maskcls/recipes/, overrides): members, all with offline weights, strongest first
# (the order and its reasons: docs/solve-planner.md).
MEMBER_RECIPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "ce": ("lite0_baseline.yaml", ()),
    "three_head": ("three_head_lite.yaml", ()),
    "ce_seed7": ("lite0_baseline.yaml", ("train.seed=7",)),
    "ce_seed11": ("lite0_baseline.yaml", ("train.seed=11",)),
    "msd": ("effnet_msd.yaml", ()),
    "three_head_focal_balanced": (
        "three_head_lite.yaml",
        ("loss.name=focal", "sampler.name=balanced", "sampler.alpha=0.5"),
    ),
    "wild": ("wild.yaml", ()),
}
PRESET_MEMBERS = {"fast": ("ce",), "best": tuple(MEMBER_RECIPES)}


@dataclass(frozen=True)
class PlannerPriors:
    """The prior's parameters: a member's expected macro-F1 gain over lite0 at 96 px, 1 epoch, 3 folds is

    ``epoch_gain (1 - exp(-(epochs - 1) / epoch_scale)) + size_gain log2(size / base_size)
    + fold_gain ln(training share / base_training_share) + backbone_bonus + recipe_offset``,

    and a vote is worth its members' mean plus ``vote_gain log2(members)`` (and ``pseudo_gain`` for a
    pseudo-label round, ``faces_gain`` for the lead trained again with external faces, and ``faces_share_gain`` per
    doubling of the faces every member trains with, ``faces_value``). Fitted to measured
    utkmask18 runs; docs/solve-planner.md has the table."""

    epoch_gain: float = 0.06
    epoch_scale: float = 1.0
    size_gain: float = 0.04
    base_size: int = 96
    fold_gain: float = 0.18
    base_training_share: float = 2 / 3
    backbone_bonus: dict[str, float] = field(
        default_factory=lambda: {"tf_efficientnet_lite1": 0.0065, "tf_efficientnet_lite2": 0.013}
    )
    recipe_offset: dict[str, float] = field(
        default_factory=lambda: {
            "ce": 0.0,
            "ce_seed7": 0.0,
            "ce_seed11": 0.0,
            "three_head": 0.0,
            "msd": -0.014,
            "three_head_focal_balanced": -0.015,
            "wild": -0.011,
        }
    )
    vote_gain: float = 0.014
    pseudo_gain: float = 0.005
    faces_gain: float = 0.03
    faces_share_gain: float = 0.01


PRIORS = PlannerPriors()
MIN_EPOCHS = 3  # re-planning shortens members to this before it drops any
EPOCH_CHOICES = tuple(range(1, 13))
FOLD_CHOICES = (2, 3, 5)
TTA_VIEWS = {"none": 1, "flip": 2, "flip_zoom": 4, "full": 6}
FACES_SHARE = 0.25  # the extra persons --faces may add at most, as a share of the training persons (the default)
FACES_SHARES = (FACES_SHARE, 0.5, 1.0)  # the shares the planner chooses among without --faces-share, default first
SAFETY = 0.08  # share of the budget kept free: estimates come from a few batches
STAGE_SLACK = 0.15  # a training stage may run this much over its estimate before its epochs are cut
RUN_OVERHEAD_SECONDS = 5.0  # per run: folds table, merged metrics, plots, summary
PSEUDO_SHARE = 0.5  # pseudo-labels expected per eval photo, for the estimate
TRAINERS = ("member", "faces", "pseudo")  # the stages that train a k-fold run
# Training cost per pixel relative to lite0 (FLOPs at equal size): the one ordering of backbones, used by
# calibration (which candidates to skip or measure again) and by the follower rule (``not_larger``).
RELATIVE_COST = {"tf_efficientnet_lite0": 1.0, "tf_efficientnet_lite1": 1.5, "tf_efficientnet_lite2": 2.2}


@dataclass(frozen=True)
class Speed:
    """What calibration measured for one backbone at one input size, through the real training path."""

    backbone: str
    size: int
    pretrained: str
    train_photos_per_s: float
    infer_photos_per_s: float  # photos per second for one view
    setup_seconds: float  # per fold: model, trainer, first batch, checkpoint
    decode_photos_per_s: float
    # how it was measured: timings taken and dropped, their spread, a redo or cap; "observed" once a real epoch ran
    timing: dict = field(default_factory=dict, compare=False)

    @property
    def observed(self) -> bool:
        """Whether the training speed comes from a real epoch of a member rather than from calibration."""
        return "observed" in self.timing


def redo_note(timing: dict) -> str:
    """What calibration's redo rule did to one speed (``Speed.timing``; docs/solve-planner.md, "The redo rule"), as
    the end of the line that shows it: nothing when it was measured once."""
    if "capped" in timing:
        return f" (capped; measured {timing['measured_train_photos_per_s']:.1f})"
    if "redone" in timing:
        tries = timing.get("train_tries") or [timing["first_train_photos_per_s"], timing["again_train_photos_per_s"]]
        if len(tries) == 2:
            return f" (measured twice: {tries[0]:.1f} and {tries[1]:.1f}, the faster kept)"
        listed = ", ".join(f"{t:.1f}" for t in tries[:-1])
        return f" (measured {len(tries)} times: {listed} and {tries[-1]:.1f}, the fastest kept)"
    return ""


@dataclass(frozen=True)
class Workload:
    train_photos: int
    eval_photos: int
    photo_size: int | None = None  # the training photos' typical longest side, in pixels (None: unknown)
    face_persons: int = 0  # extra persons from --faces (7 training photos each)
    faces_seconds: float = 0.0  # labelling and synthesizing them (solver/faces.py)
    real_mask_photos: int = 0  # --real-masks photos every trained member predicts in the finish stage
    # True: every member trains with the faces (made before the lead); False: a faces stage trains the lead's
    # recipe again with them, for the holdout to compare (--faces-check)
    faces_in_members: bool = False
    faces_share: float = FACES_SHARE  # the most extra persons, as a share of the training persons

    @property
    def face_photos(self) -> int:
        return 7 * self.face_persons

    @property
    def member_extra_photos(self) -> int:
        """Training photos every member has on top of the training folds: the faces, when all members use them."""
        return self.face_photos if self.faces_in_members else 0

    @property
    def member_faces_seconds(self) -> float:
        """Making the faces before the lead, when all members use them (counted once, in the lead)."""
        return self.faces_seconds if self.faces_in_members and self.face_persons else 0.0


@dataclass
class Stage:
    """One step of a plan; ``minutes`` is the current estimate, ``planned_minutes`` the first one."""

    name: str
    kind: str  # calibrate | member | faces | ensemble | pseudo | persons | finish
    minutes: float
    recipe: str | None = None
    backbone: str | None = None
    pretrained: str | None = None
    size: int | None = None
    epochs: int | None = None
    folds: int | None = None
    tta: str | None = None
    status: str = "planned"  # planned | running | done | dropped
    planned_minutes: float | None = None
    actual_minutes: float | None = None
    estimate_at_start: float | None = None
    estimate_observed: float | None = None  # the estimate again, at the speed its first epoch ran at
    note: str = ""
    result: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.planned_minutes is None:
            self.planned_minutes = self.minutes

    @property
    def open(self) -> bool:
        return self.status in ("planned", "running")


@dataclass
class Plan:
    budget_minutes: float
    preset: str
    workload: Workload
    speeds: list[Speed]  # the measured speeds the training stages run at, lead first
    stages: list[Stage]
    safety: float = SAFETY

    def speed_of(self, stage: Stage) -> Speed | None:
        """The measured speed of a training stage's backbone at its input size."""
        return next((s for s in self.speeds if (s.backbone, s.size) == (stage.backbone, stage.size)), None)

    @property
    def spent_minutes(self) -> float:
        return sum(s.actual_minutes or 0.0 for s in self.stages if s.status == "done")

    @property
    def open_minutes(self) -> float:
        return sum(s.minutes for s in self.stages if s.open)

    @property
    def estimated_total_minutes(self) -> float:
        return self.spent_minutes + self.open_minutes

    def to_dict(self) -> dict:
        return {
            "budget_minutes": self.budget_minutes,
            "preset": self.preset,
            "safety": self.safety,
            "workload": asdict(self.workload),
            "speeds": [asdict(s) for s in self.speeds],
            "stages": [asdict(s) for s in self.stages],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Plan:
        speeds = (
            data["speeds"] if "speeds" in data else [data["speed"]] if data.get("speed") else []
        )  # plans before mixed sizes had one speed
        return cls(
            data["budget_minutes"],
            data["preset"],
            Workload(**data["workload"]),
            [Speed(**s) for s in speeds],
            [Stage(**s) for s in data["stages"]],
            data.get("safety", SAFETY),
        )


def member_seconds(
    speed: Speed,
    workload: Workload,
    epochs: int,
    folds: int,
    tta: str = "flip",
    extra_photos: int = 0,
    decode: bool = True,
) -> float:
    """Wall seconds of one k-fold member: training, per-epoch validation, OOF and test prediction (TTA), set-up,
    decoding."""
    views = TTA_VIEWS.get(tta, 1)
    val = workload.train_photos / folds
    train = workload.train_photos - val + extra_photos + workload.member_extra_photos
    per_fold = (
        train * epochs / speed.train_photos_per_s
        + val * (epochs + views) / speed.infer_photos_per_s
        + workload.eval_photos * views / speed.infer_photos_per_s
        + speed.setup_seconds
    )
    return folds * per_fold + (decode_seconds(speed, workload, extra_photos) if decode else 0.0) + RUN_OVERHEAD_SECONDS


def decode_seconds(speed: Speed, workload: Workload, extra_photos: int = 0) -> float:
    """Decoding every photo once at one input size (the cache is kept per size and shared by the members)."""
    photos = workload.train_photos + workload.eval_photos + extra_photos + workload.member_extra_photos
    return photos / speed.decode_photos_per_s


def ensemble_seconds(workload: Workload, members: int) -> float:
    """Soft votes while adding members, one weighted vote (person-grouped CV), the final directory, and the face
    attributes of the training persons' unmasked photos (members are judged with the face's evidence)."""
    faces = workload.train_photos / 7 * FACE_SECONDS_PER_PERSON
    return 5.0 + members * (2.0 + workload.train_photos / 4000) + faces


def faces_stage_seconds(speed: Speed, workload: Workload, epochs: int, folds: int, tta: str = "flip") -> float:
    """The faces stage: preparing the persons, decoding their photos, and the lead's recipe trained with them."""
    extra = workload.face_photos
    return (
        workload.faces_seconds
        + extra / speed.decode_photos_per_s
        + member_seconds(speed, workload, epochs, folds, tta, extra_photos=extra, decode=False)
    )


def real_masks_seconds(speed: Speed, workload: Workload, folds: int, tta: str) -> float:
    """Predicting the ``--real-masks`` photos with one member's fold models and TTA views (finish stage)."""
    return workload.real_mask_photos * folds * TTA_VIEWS.get(tta, 1) / speed.infer_photos_per_s


def persons_seconds(speed: Speed, workload: Workload) -> float:
    """Decoding the small colour cache of every photo, clustering, the OOF evaluation, and reading the face
    attributes of one unmasked photo per eval person (the ensemble stage read the training persons')."""
    photos = workload.train_photos + workload.eval_photos
    faces = workload.eval_photos / 7 * FACE_SECONDS_PER_PERSON
    return 10.0 + photos / speed.decode_photos_per_s + photos / 1000 + faces


# Reading one unmasked photo's face attributes (solver/face_evidence.py) on the 2-core CPU: detector, age and
# gender networks, descriptor; 1,400 of utkmask18's 128 px photos took 112 s.
FACE_SECONDS_PER_PERSON = 0.1
FINISH_SECONDS = (
    30.0  # the top-level files and the final combination's evaluation report (an ensemble's: about 7-13 s on 2 cores)
)


def member_value(speed: Speed, epochs: int, folds: int, photo_size: int | None = None) -> float:
    """The prior's expected macro-F1 gain of one member over lite0 at 96 px, 1 epoch, 3 folds (``PlannerPriors``);
    ``photo_size``: the photos' own size, above which a larger input earns nothing."""
    size = min(speed.size, photo_size) if photo_size else speed.size
    return (
        PRIORS.epoch_gain * (1 - math.exp(-(epochs - 1) / PRIORS.epoch_scale))
        + PRIORS.size_gain * math.log2(size / PRIORS.base_size)
        + PRIORS.fold_gain * math.log((1 - 1 / folds) / PRIORS.base_training_share)
        + PRIORS.backbone_bonus.get(speed.backbone, 0.0)
    )


def vote_value(summed_member_values: float, recipes: tuple[str, ...] | list[str]) -> float:
    """The prior value of a vote of ``recipes`` (one member each): the members' mean with their recipe offsets,
    plus ``vote_gain`` per doubling of members (nothing for one member)."""
    count = len(recipes)
    return (
        summed_member_values + sum(PRIORS.recipe_offset.get(r, 0.0) for r in recipes)
    ) / count + PRIORS.vote_gain * math.log2(count)


def _search(
    speeds: list[Speed],
    workload: Workload,
    recipes: tuple[str, ...],
    preset: str,
    available: float,
    epoch_choices: list[int],
    tta: str,
) -> tuple[tuple | None, tuple]:
    """The highest-valued choice for ``workload`` that fits ``available`` seconds (None when none does), and the
    cheapest choice (total seconds, lead speed, epochs, folds), for the message when nothing fits."""
    pseudo_extra = int(workload.eval_photos * PSEUDO_SHARE)
    counts = range(1, len(recipes) + 1) if preset == "best" else range(1, 2)
    pseudo_choices = (False, True) if preset == "best" else (False,)
    faces_choices = (False, True) if workload.face_persons and not workload.faces_in_members else (False,)
    best, cheapest = None, None
    for folds in FOLD_CHOICES:
        # every (speed, epochs) a member can have: its seconds (decoding counted apart) and its prior value
        settings = [
            (
                speed,
                epochs,
                member_seconds(speed, workload, epochs, folds, tta, decode=False),
                member_value(speed, epochs, folds, workload.photo_size),
            )
            for speed in speeds
            for epochs in epoch_choices
        ]
        for lead, lead_epochs, lead_seconds, lead_value in settings:
            fixed = (
                decode_seconds(lead, workload)
                + persons_seconds(lead, workload)
                + FINISH_SECONDS
                + workload.member_faces_seconds
            )
            pseudo = member_seconds(lead, workload, lead_epochs, folds, tta, extra_photos=pseudo_extra, decode=False)
            faces = faces_stage_seconds(lead, workload, lead_epochs, folds, tta) if workload.face_persons else 0.0
            lead_real = real_masks_seconds(lead, workload, folds, tta)  # per member at the lead's setting
            for count in counts:
                # followers are never larger than the lead (the strongest recipe gets the best setting)
                followers = (
                    [s for s in settings if not_larger(s[0], s[1], lead, lead_epochs)]
                    if count > 1
                    else [(lead, lead_epochs, 0.0, lead_value)]
                )
                for follower, follower_epochs, follower_seconds, follower_value in followers:
                    decode = decode_seconds(follower, workload) if count > 1 and follower.size != lead.size else 0.0
                    real = lead_real + (count - 1) * real_masks_seconds(follower, workload, folds, tta)
                    for with_pseudo in pseudo_choices:
                        for with_faces in faces_choices:
                            total = (
                                lead_seconds
                                + (count - 1) * follower_seconds
                                + decode
                                + ensemble_seconds(workload, count)
                                + fixed
                                + (pseudo + ensemble_seconds(workload, count + 1) if with_pseudo else 0.0)
                                + (faces if with_faces else 0.0)
                                + real
                                + lead_real * (with_pseudo + with_faces)
                            )
                            if cheapest is None or total < cheapest[0]:
                                cheapest = (total, lead, lead_epochs, folds)
                            if total > available:
                                continue
                            value = (
                                vote_value(lead_value + (count - 1) * follower_value, recipes[:count])
                                + PRIORS.pseudo_gain * with_pseudo
                                + PRIORS.faces_gain * with_faces
                                + faces_value(workload)
                            )
                            if best is None or (value, -total) > (best[0], -best[1]):
                                best = (
                                    value,
                                    total,
                                    folds,
                                    (lead, lead_epochs),
                                    (follower, follower_epochs),
                                    count,
                                    with_pseudo,
                                    with_faces,
                                )
    return best, cheapest


def relative_cost(backbone: str) -> float:
    """FLOPs per pixel of ``backbone`` relative to Lite0 (``RELATIVE_COST``); a backbone outside it counts as Lite0."""
    return RELATIVE_COST.get(backbone, 1.0)


def no_lighter(backbone: str, other: str) -> bool:
    """Whether ``backbone`` surely does no less work per pixel than ``other``: the same one, or one no cheaper by
    ``RELATIVE_COST`` (a backbone outside it is comparable only with itself)."""
    if backbone == other:
        return True
    return backbone in RELATIVE_COST and other in RELATIVE_COST and RELATIVE_COST[backbone] >= RELATIVE_COST[other]


def not_larger(speed: Speed, epochs: int, lead: Speed, lead_epochs: int) -> bool:
    """Whether a follower at ``speed`` and ``epochs`` is no larger than the lead: a backbone no heavier (by
    ``RELATIVE_COST``; one outside it counts as lite0), and a smaller input, or the same input with no more
    epochs."""
    if relative_cost(speed.backbone) > relative_cost(lead.backbone):
        return False
    return speed.size < lead.size or (speed.size == lead.size and epochs <= lead_epochs)


def faces_value(workload: Workload) -> float:
    """The prior's gain of the external faces every member trains with, over faces making up ``FACES_SHARE`` of
    the training photos: ``faces_share_gain`` per doubling of their share (0 when the members train without)."""
    if not (workload.faces_in_members and workload.face_persons and workload.train_photos):
        return 0.0
    return PRIORS.faces_share_gain * math.log2(workload.face_photos / workload.train_photos / FACES_SHARE)


def make_plan(
    speeds: list[Speed],
    workload: Workload,
    budget_minutes: float,
    preset: str = "best",
    spent_minutes: float = 0.0,
    tta: str = "flip",
    members: tuple[str, ...] | None = None,
    safety: float = SAFETY,
    max_epochs: int | None = None,
    face_options: Sequence[Workload] = (),
) -> Plan:
    """The plan with the highest prior value whose estimate fits ``budget_minutes - spent_minutes`` less ``safety``.

    Members come from ``members`` (default: the preset's recipes), in order. The first (the lead) has its
    own backbone, size and epochs; the others share one setting no larger than the lead's, so that a
    strong lead at the photos' size can be joined by cheaper, diverse members. All members share the
    folds, so they ensemble on one split. ``best`` may add a pseudo-label round (one more member, at the
    lead's setting, trained with confident eval photos). With ``workload.face_persons``, every member trains with
    the external faces (``faces_in_members``: their photos and their making counted), or any preset may add a
    faces stage (the lead's recipe and setting trained again with them, for the holdout to compare).
    ``face_options``: the same workload with other numbers of external faces (``faces_share``); the plan takes the
    one whose best plan has the highest value (``faces_value`` counted), and keeps it as ``Plan.workload``.
    ``max_epochs`` caps every member's epochs (the plan may then end early). Raises ``BudgetError`` when nothing
    fits.
    """
    if preset not in PRESETS:
        raise BudgetError(f"unknown preset '{preset}'; choose one of {', '.join(PRESETS)}")
    if not speeds:
        raise BudgetError("no candidate backbone was measured, so nothing can be planned")
    recipes = tuple(members or PRESET_MEMBERS[preset])
    available = (budget_minutes - spent_minutes) * (1 - safety) * 60
    epoch_choices = [e for e in EPOCH_CHOICES if max_epochs is None or e <= max_epochs] or [1]
    searched = [(_search(speeds, option, recipes, preset, available, epoch_choices, tta), option)
                for option in (workload, *face_options)]  # fmt: skip
    fitting = [(found, option) for (found, _), option in searched if found is not None]
    if not fitting:
        total, speed, epochs, folds = min((cheapest for (_, cheapest), _ in searched), key=lambda c: c[0])
        raise BudgetError(
            f"a budget of {budget_minutes - spent_minutes:.1f} min is too small: the smallest plan "
            f"({speed.backbone} at {speed.size} px, {epochs} epochs, {folds} folds, one member) needs about "
            f"{total / 60 / (1 - safety):.1f} min on this machine"
        )
    best, workload = max(fitting, key=lambda pair: (pair[0][0], -pair[0][1]))
    pseudo_extra = int(workload.eval_photos * PSEUDO_SHARE)
    _, total, folds, (lead, lead_epochs), (follower, follower_epochs), count, with_pseudo, with_faces = best
    stages, decoded = [], set()
    for index, recipe in enumerate(recipes[:count]):
        speed, epochs = (lead, lead_epochs) if index == 0 else (follower, follower_epochs)
        seconds = member_seconds(speed, workload, epochs, folds, tta, decode=speed.size not in decoded)
        seconds += workload.member_faces_seconds if index == 0 else 0.0
        decoded.add(speed.size)
        stages.append(
            Stage(
                f"member_{recipe}",
                "member",
                seconds / 60,
                recipe,
                speed.backbone,
                speed.pretrained,
                speed.size,
                epochs,
                folds,
                tta,
            )
        )

    def lead_again(kind: str, seconds: float) -> Stage:  # the lead's recipe and setting, trained with more data
        return Stage(f"{kind}_{recipes[0]}", kind, seconds / 60, recipes[0], lead.backbone, lead.pretrained,
                     lead.size, lead_epochs, folds, tta)  # fmt: skip

    if with_faces:
        stages.append(lead_again("faces", faces_stage_seconds(lead, workload, lead_epochs, folds, tta)))
    stages.append(Stage("ensemble", "ensemble", ensemble_seconds(workload, count) / 60))
    stages.append(Stage("persons", "persons", persons_seconds(lead, workload) / 60))
    if with_pseudo:  # after persons: its labels are the submission's answers (face evidence, rule, pooling)
        seconds = member_seconds(lead, workload, lead_epochs, folds, tta, extra_photos=pseudo_extra, decode=False)
        stages.append(lead_again("pseudo", seconds + ensemble_seconds(workload, count + 1)))
    real = sum(real_masks_seconds(plan_speed, workload, folds, tta) for plan_speed in
               [lead] + [follower] * (count - 1) + [lead] * (with_pseudo + with_faces))  # fmt: skip
    stages.append(Stage("finish", "finish", (FINISH_SECONDS + real) / 60))
    used = [lead] if count == 1 or follower == lead else [lead, follower]
    return Plan(budget_minutes, preset, workload, used, stages, safety)


def estimate_minutes(plan: Plan, stage: Stage, speed_factor: float = 1.0) -> float:
    """A stage's estimate from its current settings (members at the observed ``speed_factor``); decoding is
    counted for the first member at each input size."""
    speed = plan.speed_of(stage)
    if stage.kind not in ("member", "pseudo") or speed is None:
        return stage.minutes
    earlier = plan.stages[: plan.stages.index(stage)]
    first = stage.kind == "member" and not any(
        s.kind == "member" and s.status != "dropped" and s.size == stage.size for s in earlier
    )
    if stage.kind == "faces":
        seconds = faces_stage_seconds(speed, plan.workload, stage.epochs, stage.folds, stage.tta or "none")
        return seconds / 60 * speed_factor
    extra = int(plan.workload.eval_photos * PSEUDO_SHARE) if stage.kind == "pseudo" else 0
    seconds = member_seconds(speed, plan.workload, stage.epochs, stage.folds, stage.tta or "none", extra, decode=first)
    if stage.kind == "member" and not any(s.kind == "member" and s.status != "dropped" for s in earlier):
        seconds += plan.workload.member_faces_seconds  # the lead makes the faces every member trains with
    if stage.kind == "pseudo":
        seconds += ensemble_seconds(
            plan.workload, sum(1 for s in plan.stages if s.kind == "member" and s.status != "dropped") + 1
        )
    return seconds / 60 * speed_factor


def observed_speed(
    plan: Plan,
    stage: Stage,
    train_seconds: float,
    train_photos: int,
    infer_seconds: float = 0.0,
    infer_photos: int = 0,
) -> Speed | None:
    """The plan's speed of ``stage``'s backbone at its size, with the photos/s one real epoch of it ran at:
    ``train_photos`` trained in ``train_seconds`` (and, when given, ``infer_photos`` validated in ``infer_seconds``).

    None when the stage has no measured speed or nothing was timed. ``timing["observed"]`` keeps what was seen
    and the calibrated speeds it replaces."""
    speed = plan.speed_of(stage)
    if speed is None or train_seconds <= 0 or train_photos <= 0:
        return None
    infer = infer_photos / infer_seconds if infer_seconds > 0 and infer_photos > 0 else speed.infer_photos_per_s
    calibrated = speed.timing.get("observed", {}).get(
        "calibrated", [speed.train_photos_per_s, speed.infer_photos_per_s]
    )
    seen = {
        "stage": stage.name,
        "train_photos": int(train_photos),
        "train_seconds": round(train_seconds, 3),
        "infer_photos": int(infer_photos),
        "infer_seconds": round(infer_seconds, 3),
        "calibrated": calibrated,  # train, predict photos/s before any epoch was observed
    }
    return replace(
        speed,
        train_photos_per_s=round(train_photos / train_seconds, 2),
        infer_photos_per_s=round(infer, 2),
        timing={**speed.timing, "observed": seen},
    )


def update_speed(plan: Plan, stage: Stage, speed: Speed) -> None:
    """Put ``speed`` in place of the plan's speed of its backbone at its size, so the next ``replan`` estimates every
    stage at that setting from it, and re-estimate ``stage`` at it (``estimate_observed``): ``observed_speed_factor``
    then compares the stage's actual minutes with that, not with the estimate it started from."""
    key = (speed.backbone, speed.size)
    index = next((i for i, s in enumerate(plan.speeds) if (s.backbone, s.size) == key), None)
    if index is None:
        plan.speeds.append(speed)
    else:
        plan.speeds[index] = speed
    stage.estimate_observed = estimate_minutes(plan, stage)


def observed_speed_factor(plan: Plan, stage: Stage | None = None) -> float:
    """How much slower (> 1) or faster than estimated the finished training stages ran, clipped to [0.5, 3].

    For a ``stage`` whose speed was observed in a real epoch, only what that speed does not explain: finished
    stages' actual minutes against their estimates at the observed speed. Otherwise against the estimates they
    started from, so a stage at a setting not yet observed still learns that this machine runs slower."""
    observed = stage is not None and (speed := plan.speed_of(stage)) is not None and speed.observed
    pairs = [
        (s.actual_minutes, s.estimate_observed if observed else s.estimate_at_start)
        for s in plan.stages
        if s.kind in TRAINERS and s.status == "done" and s.actual_minutes and not s.result.get("resumed")
    ]
    pairs = [(actual, estimate) for actual, estimate in pairs if estimate]
    if not pairs:
        return 1.0
    return min(3.0, max(0.5, sum(a for a, _ in pairs) / sum(e for _, e in pairs)))


def replan(plan: Plan, remaining_minutes: float, speed_factor: float | None = None) -> list[str]:
    """Fit the open stages into ``remaining_minutes`` (less the safety margin); returns what was changed.

    Estimates are redone at the observed speed (``observed_speed_factor`` per stage, unless ``speed_factor`` is
    given for all); then, while they do not fit: drop the pseudo-label round, shorten members to
    ``MIN_EPOCHS``, drop the faces stage, drop members from the end (never the last one left), shorten to one
    epoch, cut a lone member that has not started to 3 folds. A stage already running (resumed after a kill)
    keeps its settings; a deadline stops its epochs instead. Ensemble, persons and finish always stay.
    """

    def factor(stage: Stage) -> float:
        return observed_speed_factor(plan, stage) if speed_factor is None else speed_factor

    changes: list[str] = []
    for stage in plan.stages:
        if stage.open:
            stage.minutes = estimate_minutes(plan, stage, factor(stage))
    available = remaining_minutes * (1 - plan.safety)

    def fits() -> bool:
        return plan.open_minutes <= available

    def trainers() -> list[Stage]:  # the faces stage repeats the lead's epochs, so it is never shortened alone
        return [s for s in plan.stages if s.kind in ("member", "pseudo") and s.status == "planned"]

    def shorten(floor: int) -> bool:
        candidates = [s for s in trainers() if s.epochs and s.epochs > floor]
        if not candidates:
            return False
        stage = max(reversed(candidates), key=lambda s: s.epochs)  # the latest of the longest
        stage.epochs -= 1
        stage.minutes = estimate_minutes(plan, stage, factor(stage))
        stage.note = f"shortened to {stage.epochs} epochs to fit the time left"
        changes.append(f"{stage.name}: {stage.epochs} epochs")
        return True

    def drop(stage: Stage, why: str) -> None:
        stage.status, stage.note = "dropped", why
        changes.append(f"{stage.name}: dropped")

    for stage in [s for s in plan.stages if s.kind == "pseudo" and s.status == "planned"]:
        if not fits():
            drop(stage, "dropped: the time left does not allow a pseudo-label round")
    while not fits() and shorten(MIN_EPOCHS):
        pass
    for stage in [s for s in plan.stages if s.kind == "faces" and s.status == "planned"]:
        if not fits():
            drop(stage, "dropped: the time left does not allow training the lead again with the faces")
    while not fits():
        members_left = [s for s in plan.stages if s.kind == "member" and s.status != "dropped"]
        droppable = [s for s in members_left if s.status == "planned"]
        if len(members_left) <= 1 or not droppable:
            break
        drop(droppable[-1], "dropped: the time left does not allow this member")
    while not fits() and shorten(1):
        pass
    lone = [s for s in plan.stages if s.kind == "member" and s.status != "dropped"]
    if not fits() and len(lone) == 1 and lone[0].status == "planned" and lone[0].folds and lone[0].folds > 3:
        lone[0].folds = 3
        lone[0].minutes = estimate_minutes(plan, lone[0], factor(lone[0]))
        changes.append(f"{lone[0].name}: 3 folds")
    _follow_lead(plan, factor)
    if fits():
        changes += _grow(plan, available, factor)
    return changes


def _follow_lead(plan: Plan, factor_of: Callable[[Stage], float]) -> None:
    """A planned faces stage trains the lead's recipe at the lead's epochs (as the lead ran, when it has): the
    comparison with and without the faces is then of the faces alone."""
    lead = next((s for s in plan.stages if s.kind == "member" and s.status != "dropped"), None)
    for stage in plan.stages:
        if stage.kind == "faces" and stage.status == "planned" and lead is not None and stage.epochs != lead.epochs:
            stage.epochs = lead.epochs
            stage.minutes = estimate_minutes(plan, stage, factor_of(stage))


def _grow(plan: Plan, available: float, factor_of: Callable[[Stage], float]) -> list[str]:
    """Spend minutes the plan no longer needs (training ran faster than estimated) on more members.

    Only for ``best``, once a training stage has finished (so the speed is observed) and before the ensemble.
    The members that have not started after the lead are re-chosen: how many (the next recipes in the
    preset's order join at their setting) and their epochs (never more than they had), for the highest
    prior value that fits ``available``; nothing changes unless that value is higher.
    """
    ensemble = next((s for s in plan.stages if s.kind == "ensemble"), None)
    observed = any(s.kind in TRAINERS and s.status == "done" for s in plan.stages)
    members = [s for s in plan.stages if s.kind == "member" and s.status != "dropped"]
    if plan.preset != "best" or not observed or ensemble is None or ensemble.status != "planned" or not members:
        return []
    fixed = [s for s in members if s.status != "planned" or s is members[0]]
    open_followers = [s for s in members if s not in fixed]
    template = open_followers[0] if open_followers else members[-1]
    speed, factor = plan.speed_of(template), factor_of(template)
    taken = {s.recipe for s in plan.stages if s.kind == "member"}
    new_recipes = [r for r in PRESET_MEMBERS["best"] if r not in taken]
    others = sum(s.minutes for s in plan.stages if s.open and s not in open_followers and s is not ensemble)
    decoded = any(s.size == template.size for s in fixed)
    photo_size = plan.workload.photo_size

    def minutes(count: int, epochs: int) -> float:
        if count == 0:
            return 0.0
        seconds = count * member_seconds(
            speed, plan.workload, epochs, template.folds, template.tta or "none", decode=False
        )
        return (seconds + (0.0 if decoded else decode_seconds(speed, plan.workload))) / 60 * factor

    recipes = [s.recipe for s in fixed] + [s.recipe for s in open_followers] + new_recipes
    fixed_value = sum(member_value(plan.speed_of(s), s.epochs, s.folds, photo_size) for s in fixed)

    def value(count: int, epochs: int) -> float:
        return vote_value(
            fixed_value + count * member_value(speed, epochs, template.folds, photo_size), recipes[: len(fixed) + count]
        )

    current = (value(len(open_followers), template.epochs), len(open_followers), template.epochs)
    best = current
    for count in range(len(open_followers), len(open_followers) + len(new_recipes) + 1):
        for epochs in range(1, template.epochs + 1):
            total = others + minutes(count, epochs) + ensemble_seconds(plan.workload, len(fixed) + count) / 60
            if total <= available and value(count, epochs) > best[0] + 1e-9:
                best = (value(count, epochs), count, epochs)
    if best is current:
        return []
    _, count, epochs = best
    changes = []
    for stage in open_followers:
        if stage.epochs != epochs:
            stage.epochs, stage.note = epochs, f"set to {epochs} epochs when a member was added to the time left"
            changes.append(f"{stage.name}: {epochs} epochs")
        stage.minutes = estimate_minutes(plan, stage, factor)
    for recipe in new_recipes[: count - len(open_followers)]:
        stage = Stage(
            f"member_{recipe}",
            "member",
            0.0,
            recipe,
            template.backbone,
            template.pretrained,
            template.size,
            epochs,
            template.folds,
            template.tta,
            note="added: training ran faster than estimated",
        )
        plan.stages.insert(plan.stages.index(ensemble), stage)
        stage.minutes = stage.planned_minutes = estimate_minutes(plan, stage, factor)
        changes.append(f"{stage.name}: added ({epochs} epochs)")
    ensemble.minutes = ensemble_seconds(plan.workload, len(fixed) + count) / 60
    return changes


def stage_allowance(plan: Plan, stage: Stage, spent_minutes: float) -> float:
    """Minutes a starting stage may take before its epochs are cut: its estimate plus ``STAGE_SLACK``, and
    never more than the budget left after the stages that always run (ensemble, persons, finish)."""
    later = sum(
        s.minutes for s in plan.stages if s.open and s is not stage and s.kind in ("ensemble", "persons", "finish")
    )
    return max(min(stage.minutes * (1 + STAGE_SLACK), plan.budget_minutes - spent_minutes - later), 0.0)
