"""The solve planner's arithmetic: plans fit their budget on given speeds, re-planning shortens or drops
stages, and a simulated run with slower-than-estimated stages stays within the budget's tolerance."""

import numpy as np
import pandas as pd
import pytest

from maskcls.core.budget import parse_budget
from maskcls.solver.plan import (
    MIN_EPOCHS,
    SAFETY,
    BudgetError,
    Plan,
    Speed,
    Workload,
    make_plan,
    member_seconds,
    relative_cost,
    replan,
    stage_allowance,
)
from maskcls.solver.run import TOLERANCE

WORK = Workload(train_photos=9800, eval_photos=2310)
CPU = [
    Speed("tf_efficientnet_lite0", 96, "offline", 120.0, 400.0, 3.0, 800.0),
    Speed("tf_efficientnet_lite0", 128, "offline", 70.0, 230.0, 3.0, 800.0),
]
GPU = [
    Speed("tf_efficientnet_lite0", 96, "offline", 3000.0, 9000.0, 4.0, 3000.0),
    Speed("tf_efficientnet_lite2", 260, "offline", 600.0, 2000.0, 6.0, 3000.0),
]


@pytest.mark.parametrize("preset", ["fast", "best"])
@pytest.mark.parametrize("budget", [10, 15, 20, 45, 60, 120])
def test_a_plan_fits_its_budget_on_the_measured_speeds(preset, budget):
    plan = make_plan(CPU, WORK, budget, preset, spent_minutes=1.0)
    assert plan.open_minutes <= (budget - 1.0) * (1 - SAFETY) + 1e-9
    members = [s for s in plan.stages if s.kind == "member"]
    assert members and len({s.folds for s in members}) == 1  # one fold split: members ensemble on the same folds
    assert all(
        (s.size, s.epochs) <= (members[0].size, members[0].epochs) for s in members
    )  # no member larger than the lead
    kinds = [s.kind for s in plan.stages]
    assert kinds[-3:] == ["ensemble", "persons", "finish"] or kinds[-4:] == ["ensemble", "persons", "pseudo", "finish"]
    for stage in members:  # estimates are the member arithmetic, not made up
        first_at_size = next(s for s in members if s.size == stage.size) is stage  # the cache is decoded once per size
        assert stage.minutes * 60 == pytest.approx(
            member_seconds(
                CPU[[s.size for s in CPU].index(stage.size)],
                WORK,
                stage.epochs,
                stage.folds,
                "flip",
                decode=first_at_size,
            )
        )
    if preset == "fast":
        assert len(members) == 1 and not any(s.kind == "pseudo" for s in plan.stages)


def test_more_budget_or_a_faster_device_buys_more():
    def trained(plan: Plan) -> float:
        return sum(s.epochs * (s.size**2) * (1 - 1 / s.folds) for s in plan.stages if s.kind == "member")

    small, large = make_plan(CPU, WORK, 15, "best"), make_plan(CPU, WORK, 90, "best")
    assert trained(large) > trained(small)
    on_gpu = make_plan(GPU, WORK, 15, "best")
    assert (
        max(s.size for s in on_gpu.stages if s.kind == "member") == 260
    )  # the bigger backbone when the measured speed allows it
    assert trained(on_gpu) > trained(small)


def test_sizes_above_the_photos_own_earn_nothing():
    # on a GPU a small model is bound by overheads: 256 px costs hardly more than 128 px
    speeds = [
        Speed("tf_efficientnet_lite0", 256, "offline", 2900.0, 8800.0, 4.0, 3000.0),
        Speed("tf_efficientnet_lite0", 128, "offline", 3000.0, 9000.0, 4.0, 3000.0),
    ]
    unknown = make_plan(speeds, WORK, 12, "best")
    small_photos = make_plan(speeds, Workload(WORK.train_photos, WORK.eval_photos, photo_size=128), 12, "best")
    assert {s.size for s in unknown.stages if s.kind == "member"} == {256}  # nothing says 256 px only upsamples
    assert {s.size for s in small_photos.stages if s.kind == "member"} == {
        128
    }  # same value, less time: the photos' own size


def test_the_typical_photo_size_is_read_from_the_photos(tmp_path):
    from PIL import Image

    from maskcls.solver.calibrate import typical_photo_size

    paths = []
    for index, size in enumerate([(96, 128)] * 5 + [(300, 200)] * 2):
        paths.append(tmp_path / f"{index}.jpg")
        Image.new("RGB", size).save(paths[-1])
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    manifest = pd.DataFrame({"path": [str(p) for p in paths] + [str(tmp_path / "broken.jpg")]})
    assert typical_photo_size(manifest) == 128
    assert typical_photo_size(manifest.iloc[-1:]) is None


def test_calibration_measures_each_backbone_up_to_the_photos_size(monkeypatch):
    from maskcls.solver import calibrate as calibration

    measured = []

    def fake_measure(manifest, backbone, size, accelerator, overrides):
        measured.append((backbone, size))
        slower = relative_cost(backbone) * (size / 96) ** 2  # plausible: speed falls with the work
        return Speed(backbone, size, "offline", 5000.0 / slower, 9000.0 / slower, 1.0, 5000.0)

    monkeypatch.setattr(calibration, "measure", fake_measure)
    ladder = (
        ("tf_efficientnet_lite0", 96),
        ("tf_efficientnet_lite0", 128),
        ("tf_efficientnet_lite0", 160),
        ("tf_efficientnet_lite1", 192),
        ("tf_efficientnet_lite1", 240),
    )
    speeds, skipped = calibration.calibrate(
        pd.DataFrame(), Workload(9800, 2310, photo_size=128), 60, ladder, progress=False
    )
    assert measured == [("tf_efficientnet_lite0", 96), ("tf_efficientnet_lite0", 128), ("tf_efficientnet_lite1", 192)]
    assert [(s["size"], "only upsamples" in s["reason"]) for s in skipped] == [(160, True), (240, True)]
    calibration.calibrate(
        pd.DataFrame(), Workload(9800, 2310), 60, ladder, progress=False
    )  # size unknown: all measured
    assert len(measured) == 3 + len(ladder)


def test_calibration_skips_a_lighter_backbone_above_the_photos_size_once_a_heavier_one_was_measured_there(
    monkeypatch,
):
    from maskcls.solver import calibrate as calibration

    measured = []

    def fake_measure(manifest, backbone, size, accelerator, overrides):
        measured.append((backbone, size))
        slower = relative_cost(backbone) * (size / 96) ** 2
        return Speed(backbone, size, "offline", 5000.0 / slower, 9000.0 / slower, 1.0, 5000.0)

    monkeypatch.setattr(calibration, "measure", fake_measure)
    speeds, skipped = calibration.calibrate(
        pd.DataFrame(), Workload(9800, 2310, photo_size=128), 600, calibration.CANDIDATES, progress=False
    )
    lite0, lite2 = "tf_efficientnet_lite0", "tf_efficientnet_lite2"
    assert measured == [(lite0, 96), (lite0, 128), (lite2, 96), (lite2, 128)]
    assert [(s["backbone"], s["size"]) for s in skipped] == [
        (lite0, 160),
        ("tf_efficientnet_lite1", 192),
        (lite2, 224),
        (lite2, 260),
    ]
    assert "tf_efficientnet_lite2 was measured at 128 px" in skipped[1]["reason"]


def test_a_budget_too_small_for_anything_is_refused_with_the_need():
    with pytest.raises(BudgetError, match="too small.*needs about"):
        make_plan(CPU, WORK, 1.0, "best")
    with pytest.raises(BudgetError, match="preset"):
        make_plan(CPU, WORK, 60, "medium")


def test_replan_drops_the_pseudo_round_first_then_shortens_then_drops_members():
    plan = make_plan(GPU, WORK, 60, "best")
    kinds = [s.kind for s in plan.stages]
    assert "pseudo" in kinds and kinds.count("member") >= 2, kinds
    members = [s for s in plan.stages if s.kind == "member"]
    pseudo = next(s for s in plan.stages if s.kind == "pseudo")
    epochs_before = [s.epochs for s in members]

    changes = replan(
        plan, plan.open_minutes - pseudo.minutes + 0.5, speed_factor=1.0
    )  # just enough for all but pseudo, with the margin eaten
    assert pseudo.status == "dropped" and "pseudo" in pseudo.note
    assert plan.open_minutes <= (plan.open_minutes + 0.5) and changes

    replan(plan, plan.open_minutes * 0.7, speed_factor=1.0)
    assert any(s.epochs < e for s, e in zip(members, epochs_before, strict=False)) or any(
        s.status == "dropped" for s in members
    )
    assert all(s.epochs >= 1 for s in members)

    replan(plan, 3.0, speed_factor=1.0)  # far too little: one member survives at its shortest
    alive = [s for s in members if s.status != "dropped"]
    assert len(alive) == 1 and alive[0] is members[0]
    assert [s.kind for s in plan.stages if s.open][-3:] == ["ensemble", "persons", "finish"]


def test_replan_fits_whenever_some_shortening_can():
    for remaining in np.linspace(4, 60, 15):
        plan = make_plan(CPU, WORK, 60, "best")
        replan(plan, float(remaining), speed_factor=1.0)
        floor = make_plan(CPU, WORK, 60, "best")
        for stage in floor.stages:  # the least any plan can shrink to: one member, 1 epoch, 3 folds
            if stage.kind == "pseudo" or (stage.kind == "member" and stage is not floor.stages[0]):
                stage.status = "dropped"
            elif stage.kind == "member":
                stage.epochs, stage.folds = 1, 3
        replan(floor, 1e9, speed_factor=1.0)
        if floor.open_minutes <= remaining * (1 - SAFETY):
            assert plan.open_minutes <= remaining * (1 - SAFETY) + 1e-9, remaining


def test_replan_uses_the_observed_speed():
    plan = make_plan(GPU, WORK, 30, "best")
    members = [s for s in plan.stages if s.kind == "member"]
    assert len(members) >= 2
    first = members[0]
    first.status, first.estimate_at_start, first.actual_minutes = (
        "done",
        first.minutes,
        first.minutes * 2.0,
    )  # it ran twice as slow
    before = members[1].minutes
    replan(plan, 1e9)  # time enough: only the estimates change
    assert members[1].minutes == pytest.approx(before * 2.0)
    replan(plan, 30 - first.actual_minutes)
    assert plan.open_minutes <= (30 - first.actual_minutes) * (1 - SAFETY) + 1e-9


@pytest.mark.parametrize("seed", range(6))
def test_simulated_runs_stay_within_the_budget_tolerance(seed):
    """Stages run from 20 % faster to 40 % slower than estimated; training stages are cut at their allowance (plus the
    last epoch begun), as run.py's deadline does; re-planning after every stage keeps the total within the
    tolerance."""
    rng = np.random.default_rng(seed)
    budget = float(rng.uniform(10, 90))
    plan = make_plan(CPU, WORK, budget, "best", spent_minutes=1.0)
    spent = 1.0
    while True:  # as run.py: the next open stage after each re-plan
        replan(plan, budget - spent)
        stage = next((s for s in plan.stages if s.open), None)
        if stage is None:
            break
        stage.estimate_at_start = stage.minutes
        took = stage.minutes * rng.uniform(0.8, 1.4)
        if stage.kind in ("member", "pseudo"):
            epoch = stage.minutes / stage.epochs / stage.folds
            took = min(took, stage_allowance(plan, stage, spent) + epoch * 0.2)
        stage.status, stage.actual_minutes = "done", took
        spent += took
    assert spent <= budget * (1 + TOLERANCE), (budget, spent)
    assert any(s.kind == "member" and s.status == "done" for s in plan.stages)


def test_plans_survive_a_json_round_trip():
    plan = make_plan(CPU, WORK, 45, "best")
    again = Plan.from_dict(plan.to_dict())
    assert again.to_dict() == plan.to_dict() and again.speeds == plan.speeds
    legacy = {key: value for key, value in plan.to_dict().items() if key != "speeds"} | {
        "speed": plan.to_dict()["speeds"][0]
    }
    assert Plan.from_dict(legacy).speeds == plan.speeds[:1]  # a plan.json written before members could differ in size


def test_min_epochs_is_where_shortening_pauses_before_members_go():
    plan = make_plan(GPU, WORK, 30, "best")
    members = [s for s in plan.stages if s.kind == "member"]
    assert len(members) >= 2 and all(s.epochs > MIN_EPOCHS for s in members)
    shortest = Plan.from_dict(plan.to_dict())  # every member at MIN_EPOCHS, no pseudo-label round
    for stage in shortest.stages:
        stage.epochs = MIN_EPOCHS if stage.kind == "member" else stage.epochs
        stage.status = "dropped" if stage.kind == "pseudo" else stage.status
    replan(shortest, 1e9, speed_factor=1.0)
    replan(plan, shortest.open_minutes / (1 - SAFETY) + 0.01, speed_factor=1.0)
    assert all(s.status != "dropped" for s in members) and all(s.epochs >= MIN_EPOCHS for s in members)


@pytest.mark.parametrize(
    "text, minutes", [("45m", 45), ("1h", 60), ("1h30m", 90), ("90s", 1.5), ("20", 20), (" 2.5m ", 2.5), ("10min", 10)]
)
def test_parse_budget(text, minutes):
    assert parse_budget(text) == pytest.approx(minutes)


@pytest.mark.parametrize("text", ["soon", "-5m", "0", "m"])
def test_parse_budget_refuses_nonsense(text):
    with pytest.raises(BudgetError):
        parse_budget(text)


class _Trainer:
    """What StageClock reads of a Lightning trainer."""

    def __init__(self, max_epochs):
        self.current_epoch, self.max_epochs, self.should_stop, self.num_training_batches = 0, max_epochs, False, 10


@pytest.mark.parametrize("allowance, stops", [(0.0, True), (1e9, False)])
def test_the_stage_deadline_stops_a_fold_after_an_epoch_never_during_the_last(allowance, stops):
    from maskcls.solver.display import StageClock

    clock, trainer = StageClock(None, folds=2, epochs=3, allowance_seconds=allowance), _Trainer(3)
    clock.on_fit_start(trainer, None)
    clock.on_train_epoch_start(trainer, None)
    clock.on_train_epoch_end(trainer, None)
    assert trainer.should_stop is stops and clock.stopped_early == ([1] if stops else [])
    last = _Trainer(3)
    last.current_epoch = 2
    clock.on_train_epoch_end(last, None)
    assert not last.should_stop  # the last epoch ends anyway


def test_the_plan_display_counts_down_the_open_stages():
    from maskcls.solver.display import PlanProgress

    plan = make_plan(CPU, WORK, 60, "best")
    shown = PlanProgress(plan, spent=lambda: 0.0, enabled=False)
    assert shown.eta_minutes() == pytest.approx(plan.open_minutes)
    shown.start(plan.stages[0])
    assert shown.eta_minutes() == pytest.approx(plan.open_minutes, abs=0.01)
    plan.stages[0].status = "done"
    shown.finish(plan.stages[0])
    assert shown.eta_minutes() == pytest.approx(plan.open_minutes)


def test_a_lead_at_the_larger_size_is_joined_by_cheaper_members():
    from maskcls.solver.plan import estimate_minutes

    plan = make_plan(CPU, WORK, 70, "best")
    members = [s for s in plan.stages if s.kind == "member"]
    assert [(s.recipe, s.size) for s in members] == [
        ("ce", 128),
        ("three_head", 96),
    ]  # the lead at the larger size, joined by the member that differs
    assert plan.speeds == [CPU[1], CPU[0]] and plan.speed_of(members[1]) == CPU[0]
    # each size's cache is decoded by the first member at that size: here both
    assert members[1].minutes * 60 == pytest.approx(
        member_seconds(CPU[0], WORK, members[1].epochs, members[1].folds, "flip", decode=True)
    )
    assert [estimate_minutes(plan, s) for s in members] == pytest.approx([s.minutes for s in members])
    again = Plan.from_dict(plan.to_dict())
    assert [estimate_minutes(again, s) for s in again.stages if s.kind == "member"] == pytest.approx(
        [s.minutes for s in members]
    )


@pytest.mark.parametrize("budget", [60, 180, 240])
def test_no_follower_has_a_heavier_backbone_than_the_lead(budget):
    lite0, lite2 = "tf_efficientnet_lite0", "tf_efficientnet_lite2"
    speeds = [
        Speed(lite0, 96, "offline", 230.0, 700.0, 1.2, 2000.0),
        Speed(lite0, 128, "offline", 135.0, 430.0, 1.2, 2000.0),
        Speed(lite2, 96, "offline", 121.0, 370.0, 1.5, 2000.0),
        Speed(lite2, 128, "offline", 71.0, 230.0, 1.5, 2000.0),
    ]
    plan = make_plan(speeds, Workload(5593, 6517, photo_size=128), budget, "best")
    lead, *followers = [s for s in plan.stages if s.kind == "member"]
    assert all(f.backbone == lead.backbone or f.backbone == lite0 for f in followers)


def _lead_done(plan, speed_ratio):
    lead = plan.stages[0]
    lead.status, lead.estimate_at_start, lead.actual_minutes = "done", lead.minutes, lead.minutes * speed_ratio
    return lead


def test_time_saved_by_a_fast_lead_goes_to_another_member():
    speeds = [
        Speed("tf_efficientnet_lite0", 96, "offline", 228.5, 570.0, 3.0, 900.0),
        Speed("tf_efficientnet_lite0", 128, "offline", 142.4, 300.5, 3.0, 900.0),
    ]
    work = Workload(9800, 2310, 128)
    plan = make_plan(speeds, work, 63, "best", spent_minutes=0.3)
    members = [s for s in plan.stages if s.kind == "member"]
    assert [(s.size, s.epochs) for s in members] == [(128, 5), (128, 4)]
    remaining = 63 - 0.3 - _lead_done(plan, 0.83).actual_minutes
    changes = replan(plan, remaining)
    members = [s for s in plan.stages if s.kind == "member"]
    assert [s.name for s in members] == ["member_ce", "member_three_head", "member_ce_seed7"], changes
    assert all(s.epochs == 3 for s in members[1:]) and "added" in members[2].note
    assert [s.kind for s in plan.stages][-3:] == ["ensemble", "persons", "finish"]
    assert plan.open_minutes <= remaining * (1 - SAFETY)
    assert replan(plan, remaining) == []  # settled: asking again changes nothing


def test_no_growth_at_the_estimated_speed_for_fast_or_after_the_ensemble():
    for preset in ("best", "fast"):
        plan = make_plan(CPU, WORK, 45, preset)
        before = plan.to_dict()
        _lead_done(plan, 1.0 if preset == "best" else 0.5)
        replan(plan, 45 - plan.stages[0].actual_minutes)
        assert [s["name"] for s in plan.to_dict()["stages"]] == [s["name"] for s in before["stages"]]
    plan = make_plan(CPU, WORK, 45, "best")
    _lead_done(plan, 0.5)
    for stage in plan.stages:
        if stage.kind in ("member", "ensemble"):
            stage.status, stage.actual_minutes = "done", stage.minutes
    names = [s.name for s in plan.stages]
    replan(plan, 1e9)
    assert [s.name for s in plan.stages] == names


def test_reading_one_unmasked_photo_per_person_is_counted_where_it_happens():
    """The training persons' faces are read by the ensemble stage (it judges members with the face's evidence),
    the eval persons' by the persons stage."""
    from maskcls.solver.plan import FACE_SECONDS_PER_PERSON, ensemble_seconds, persons_seconds

    small, large = Workload(train_photos=700, eval_photos=70), Workload(train_photos=7000, eval_photos=700)
    extra = persons_seconds(CPU[0], large) - persons_seconds(CPU[0], small)
    reading = (700 - 70) / 7 * FACE_SECONDS_PER_PERSON
    assert extra > reading and extra - reading < (7700 - 770) / 1000 + (7700 - 770) / CPU[0].decode_photos_per_s + 1e-6
    training = (7000 - 700) / 7 * FACE_SECONDS_PER_PERSON
    extra = ensemble_seconds(large, 1) - ensemble_seconds(small, 1)
    assert training < extra < training + (7000 - 700) / 4000 + 1e-6
    plan = make_plan(CPU, large, 20, "fast")
    assert next(s for s in plan.stages if s.kind == "persons").minutes * 60 > reading
    assert next(s for s in plan.stages if s.kind == "ensemble").minutes * 60 > 7000 / 7 * FACE_SECONDS_PER_PERSON
