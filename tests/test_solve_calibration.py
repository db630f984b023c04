"""A calibration you can trust: repeated timings with slow outliers dropped, a redo (then a cap) for a heavier
candidate measured faster per photo than a lighter one, the first real epoch's speed replacing the calibrated one
for the next re-plan, and plans that do not move when one batch of calibration was slowed. No timing thresholds:
times are given, or counted, never compared with a clock."""

from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest

from maskcls.solver import calibrate as calibration
from maskcls.solver import display
from maskcls.solver.calibrate import (
    CAP_TOLERANCE,
    REDO_TOLERANCE,
    cap_speed,
    faster_per_photo,
    heavier,
    outpaced,
    robust_seconds,
)
from maskcls.solver.display import StageClock
from maskcls.solver.plan import (
    RELATIVE_COST,
    Plan,
    Speed,
    Workload,
    estimate_minutes,
    make_plan,
    observed_speed,
    observed_speed_factor,
    redo_note,
    replan,
    update_speed,
)

WORK = Workload(train_photos=9800, eval_photos=2310)
LITE0, LITE1, LITE2 = "tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"


def _speed(backbone: str, size: int, train: float, infer: float | None = None) -> Speed:
    return Speed(backbone, size, "offline", train, 3.3 * train if infer is None else infer, 3.0, 800.0)


# --- outliers ---------------------------------------------------------------------------------------------------


def test_one_stalled_batch_is_dropped_and_counted():
    timing = robust_seconds([0.100, 0.102, 0.098, 0.101, 0.099, 0.103, 0.500])
    assert (timing.taken, timing.rejected) == (7, 1)
    assert timing.seconds == pytest.approx(np.median([0.100, 0.102, 0.098, 0.101, 0.099, 0.103]))
    assert 0 < timing.spread < 0.05  # the kept batches agree within a few percent


def test_plain_noise_and_fast_batches_are_kept():
    noisy = 0.1 * (1 + 0.02 * np.random.default_rng(0).standard_normal(20))
    assert robust_seconds(noisy).rejected == 0
    fast = robust_seconds([0.1, 0.1, 0.1, 0.1, 0.01])  # nothing makes a machine faster: only slow ones are outliers
    assert fast.rejected == 0 and fast.seconds == pytest.approx(0.1)
    same = robust_seconds([0.2] * 5)
    assert (same.seconds, same.rejected, same.spread) == (pytest.approx(0.2), 0, 0.0)
    with pytest.raises(ValueError, match="no timings"):
        robust_seconds([])


# --- plan stability ----------------------------------------------------------------------------------------------

# seconds per photo of 7 timed batches for each candidate (photos/s: 120 at 96 px, 70 at 128 px), 2 % noise
TRUE_SECONDS = {(LITE0, 96): 1 / 120, (LITE0, 128): 1 / 70}
NOISY = {
    key: seconds * (1 + 0.02 * np.random.default_rng(index).standard_normal(7))
    for index, (key, seconds) in enumerate(TRUE_SECONDS.items())
}


def _speeds_from(timings: dict, summary) -> list[Speed]:
    return [_speed(backbone, size, round(1 / summary(seconds), 2)) for (backbone, size), seconds in timings.items()]


def _choices(plan: Plan) -> list[tuple]:
    return [(s.kind, s.recipe, s.backbone, s.size, s.epochs, s.folds) for s in plan.stages if s.status != "dropped"]


@pytest.mark.parametrize("budget", [20, 45, 90])
def test_three_calibrations_with_one_stalled_batch_each_plan_the_same(budget):
    runs = []
    for run, key in enumerate([(LITE0, 96), (LITE0, 128), (LITE0, 128)]):  # a different batch stalls in each
        timings = {k: v.copy() for k, v in NOISY.items()}
        timings[key][2 * run] *= 4.0
        runs.append(timings)
    speeds = [_speeds_from(timings, lambda s: robust_seconds(s).seconds) for timings in runs]
    plans = [make_plan(s, WORK, budget, "best", spent_minutes=1.0) for s in speeds]
    assert _choices(plans[0]) == _choices(plans[1]) == _choices(plans[2])
    for run in speeds:  # the stalled batch moved no speed by more than the noise
        for measured, truth in zip(run, TRUE_SECONDS.values(), strict=True):
            assert measured.train_photos_per_s == pytest.approx(1 / truth, rel=0.03)
    means = _speeds_from(runs[0], np.mean)  # what the mean would have said
    assert means[0].train_photos_per_s < 0.8 * speeds[0][0].train_photos_per_s


def test_make_plan_is_a_pure_function_of_its_speeds():
    speeds = _speeds_from(NOISY, lambda s: robust_seconds(s).seconds)
    given = [asdict(s) for s in speeds]
    first = make_plan(speeds, WORK, 45, "best", spent_minutes=1.0)
    again = make_plan(list(reversed(speeds))[::-1], WORK, 45, "best", spent_minutes=1.0)
    assert first.to_dict() == again.to_dict()
    assert [asdict(s) for s in speeds] == given and set(first.speeds) <= set(speeds)  # planning changes no speed


# --- a heavier candidate measured faster per photo ----------------------------------------------------------------


def test_which_candidates_surely_do_more_work_per_photo():
    assert heavier(_speed(LITE0, 128, 1), _speed(LITE0, 96, 1))
    assert heavier(_speed(LITE1, 128, 1), _speed(LITE0, 128, 1))
    assert heavier(_speed(LITE1, 192, 1), _speed(LITE0, 160, 1))
    assert not heavier(_speed(LITE1, 96, 1), _speed(LITE0, 128, 1))  # neither is larger in both
    assert not heavier(_speed(LITE0, 96, 1), _speed(LITE0, 96, 1))
    assert not heavier(_speed("resnet18", 128, 1), _speed(LITE0, 96, 1))  # no relative cost known
    assert heavier(_speed("resnet18", 128, 1), _speed("resnet18", 96, 1))


def test_a_redo_is_asked_beyond_the_tolerance_per_pixel_and_a_cap_only_per_photo():
    light = _speed(LITE0, 96, 100.0)
    per_pixel = 100.0 * (96 / 128) ** 2  # 128 px at 96 px's speed per pixel
    assert outpaced(_speed(LITE0, 128, per_pixel * (1 + REDO_TOLERANCE) - 0.01), [light]) is None
    assert outpaced(_speed(LITE0, 128, per_pixel * (1 + REDO_TOLERANCE) + 0.01), [light]) is light
    assert outpaced(_speed(LITE0, 128, 97.0), [light]) is light  # as fast per photo: 1.78x faster per pixel
    assert outpaced(_speed(LITE0, 96, 500.0), [_speed(LITE0, 128, 100.0)]) is None  # a lighter one may be faster
    heavier_model = _speed(LITE1, 128, 100.0 / RELATIVE_COST[LITE1] * (1 + REDO_TOLERANCE) + 0.01)
    assert outpaced(heavier_model, [_speed(LITE0, 128, 100.0)]) is not None  # the backbone's cost counts too
    # Faster per pixel is possible (per-photo costs spread over more pixels); faster per photo is not.
    assert not faster_per_photo(_speed(LITE0, 128, 97.0), [light])
    assert faster_per_photo(_speed(LITE0, 128, 100.0 * (1 + CAP_TOLERANCE) + 0.01), [light])
    capped = cap_speed(_speed(LITE0, 128, 150.0, infer=400.0), [light, _speed(LITE0, 64, 300.0, infer=900.0)])
    assert (capped.train_photos_per_s, capped.infer_photos_per_s) == (100.0, 330.0)  # the slowest lighter one's
    assert "lite0 at 96 px" in capped.timing["capped"] and capped.timing["measured_train_photos_per_s"] == 150.0


def _fake_measure(monkeypatch, responses: dict) -> list:
    """``calibrate.measure`` answering each candidate's training photos/s from ``responses``, in turn."""
    calls = []

    def fake(manifest, backbone, size, accelerator, overrides):
        calls.append((backbone, size))
        return Speed(backbone, size, "offline", responses[(backbone, size)].pop(0), 300.0, 3.0, 800.0, {"taken": 7})

    monkeypatch.setattr(calibration, "measure", fake)
    return calls


LADDER = ((LITE0, 96), (LITE0, 128), (LITE1, 192))


def _calibrate(monkeypatch, responses):
    calls = _fake_measure(monkeypatch, responses)
    speeds, skipped = calibration.calibrate(pd.DataFrame(), WORK, 600, LADDER, progress=False)
    return calls, {(s.backbone, s.size): s for s in speeds}, skipped


def test_a_bigger_input_measured_faster_is_redone_with_the_lighter_one_and_each_keeps_its_faster(monkeypatch):
    # The first solve of 2026-12-07: lite0 at 96 px slowed by other work (83.6), the next candidate measured at
    # 109 and 130; the old rule redid only the faster one and capped it at the slowed 83.6.
    calls, speeds, skipped = _calibrate(
        monkeypatch, {(LITE0, 96): [83.6, 180.0], (LITE0, 128): [109.0, 130.0], (LITE1, 192): [20.0]}
    )
    assert calls == [(LITE0, 96), (LITE0, 128), (LITE0, 128), (LITE0, 96), (LITE1, 192)] and not skipped
    lighter, redone = speeds[(LITE0, 96)], speeds[(LITE0, 128)]
    assert lighter.train_photos_per_s == 180.0 and lighter.timing["first_train_photos_per_s"] == 83.6
    assert redone.train_photos_per_s == 130.0 and "capped" not in redone.timing
    assert redone.timing["first_train_photos_per_s"] == 109.0 and redone.timing["again_train_photos_per_s"] == 130.0
    assert "lite0 at 96 px" in redone.timing["redone"] and redone.timing["taken"] == 7  # the measurement's own record
    assert "redone" not in speeds[(LITE1, 192)].timing


def test_a_redo_of_the_lighter_candidate_is_shown_as_it_happens_and_in_the_plans_lines(monkeypatch, capsys):
    _fake_measure(monkeypatch, {(LITE0, 96): [83.6, 180.0], (LITE0, 128): [109.0, 130.0], (LITE1, 192): [20.0]})
    speeds, _ = calibration.calibrate(pd.DataFrame(), WORK, 600, LADDER, progress=True)
    shown = capsys.readouterr().err  # progress lines go to stderr
    assert "tf_efficientnet_lite0 at 96 px again beside it: train 83.6 then 180.0 photos/s, kept 180.0" in shown
    flags = [redo_note(s.timing) for s in speeds]
    assert flags == [" (measured twice: 83.6 and 180.0, the faster kept)",
                     " (measured twice: 109.0 and 130.0, the faster kept)", ""]  # fmt: skip
    capped = cap_speed(_speed(LITE1, 192, 95.0), [_speed(LITE0, 128, 60.0)])
    assert redo_note(capped.timing) == " (capped; measured 95.0)"


def test_a_lighter_candidate_redone_twice_keeps_every_try_in_its_record(monkeypatch):
    # The demo data's dry run of 2026-12-08: lite0 at 96 px redone beside lite2 at 96 px, then beside 128 px.
    ladder = ((LITE0, 96), (LITE2, 96), (LITE2, 128))
    _fake_measure(monkeypatch, {(LITE0, 96): [122.1, 143.9, 133.3], (LITE2, 96): [108.3, 110.0],
                                (LITE2, 128): [60.1, 52.2]})  # fmt: skip
    speeds, _ = calibration.calibrate(pd.DataFrame(), WORK, 600, ladder, progress=False)
    lighter = speeds[0]
    assert lighter.train_photos_per_s == 143.9 and lighter.timing["train_tries"] == [122.1, 143.9, 133.3]
    assert redo_note(lighter.timing) == " (measured 3 times: 122.1, 143.9 and 133.3, the fastest kept)"


def test_a_redo_keeps_the_first_measurement_when_it_was_the_faster(monkeypatch):
    _, speeds, _ = _calibrate(
        monkeypatch, {(LITE0, 96): [100.0, 90.0], (LITE0, 128): [95.0, 60.0], (LITE1, 192): [20.0]}
    )
    assert speeds[(LITE0, 96)].train_photos_per_s == 100.0  # slowed the second time: the first stands
    kept = speeds[(LITE0, 128)]
    assert kept.train_photos_per_s == 95.0 and "capped" not in kept.timing and "per pixel" in kept.timing["redone"]


def test_a_bigger_model_measured_faster_twice_is_capped(monkeypatch):
    calls, speeds, _ = _calibrate(
        monkeypatch, {(LITE0, 96): [100.0, 100.0], (LITE0, 128): [60.0], (LITE1, 192): [90.0, 95.0]}
    )
    assert calls.count((LITE1, 192)) == 2 and calls.count((LITE0, 96)) == 2  # the one it beat most per pixel
    capped = speeds[(LITE1, 192)]
    assert capped.train_photos_per_s == 60.0  # no faster than the slowest lighter candidate
    assert "lite0 at 128 px" in capped.timing["capped"] and capped.timing["measured_train_photos_per_s"] == 95.0


def test_a_plausible_speed_is_measured_once(monkeypatch):
    calls, speeds, _ = _calibrate(
        monkeypatch, {(LITE0, 96): [100.0], (LITE0, 128): [70.0], (LITE1, 192): [20.0]}
    )  # within the tolerance per pixel: per-photo costs and noise, not a broken measurement
    assert calls == list(LADDER) and all("redone" not in s.timing for s in speeds.values())


# --- the first real epoch's speed -----------------------------------------------------------------------------------

CPU = [_speed(LITE0, 96, 120.0, 400.0), _speed(LITE0, 128, 70.0, 230.0)]


def _two_sizes() -> Plan:
    plan = make_plan(CPU, WORK, 70, "best")  # a lead at 128 px joined by a member at 96 px
    assert [s.size for s in plan.stages if s.kind == "member"] == [128, 96]
    return plan


def test_the_observed_speed_replaces_the_calibrated_one():
    plan = _two_sizes()
    lead = plan.stages[0]
    assert observed_speed(plan, lead, 0.0, 100) is None and observed_speed(plan, lead, 10.0, 0) is None
    speed = observed_speed(plan, lead, train_seconds=100.0, train_photos=3500, infer_seconds=2.0, infer_photos=400)
    assert (speed.train_photos_per_s, speed.infer_photos_per_s) == (35.0, 200.0) and speed.observed
    assert speed.timing["observed"]["calibrated"] == [70.0, 230.0] and not plan.speed_of(lead).observed  # pure
    update_speed(plan, lead, speed)
    assert plan.speed_of(lead) is speed and len(plan.speeds) == 2
    assert (
        lead.estimate_observed == pytest.approx(estimate_minutes(plan, lead)) and lead.estimate_observed > lead.minutes
    )
    again = observed_speed(plan, lead, 100.0, 4000)  # seen again: the calibrated speeds are still those first ones
    assert again.train_photos_per_s == 40.0 and again.timing["observed"]["calibrated"] == [70.0, 230.0]
    restored = Plan.from_dict(plan.to_dict())
    assert (
        restored.speed_of(restored.stages[0]).observed
        and restored.stages[0].estimate_observed == lead.estimate_observed
    )


def _lead_ran_at_half_speed(plan: Plan):
    """The lead trains at half its calibrated speed in its first epoch, and the stage takes what that predicts."""
    lead = plan.stages[0]
    lead.status, lead.estimate_at_start = "running", lead.minutes
    calibrated = plan.speed_of(lead).train_photos_per_s
    update_speed(plan, lead, observed_speed(plan, lead, 100.0, int(50 * calibrated)))
    lead.status, lead.actual_minutes = "done", lead.estimate_observed
    return lead


def test_replan_counts_an_observed_slowdown_once():
    speeds = [_speed(LITE0, 96, 228.5, 570.0), _speed(LITE0, 128, 142.4, 300.5)]
    plan = make_plan(speeds, Workload(9800, 2310, 128), 60, "best")
    lead, follower = (s for s in plan.stages if s.kind == "member")
    assert (follower.size, follower.backbone) == (lead.size, lead.backbone)
    before = follower.minutes
    _lead_ran_at_half_speed(plan)
    assert observed_speed_factor(plan, follower) == pytest.approx(1.0)  # the observed speed says it all
    replan(plan, 1e9, speed_factor=None)
    assert follower.minutes == pytest.approx(estimate_minutes(plan, follower, 1.0))
    slower = lead.actual_minutes / lead.estimate_at_start
    assert before * 1.5 < follower.minutes < before * slower * 1.1  # the slowdown once, not slower**2


def test_a_setting_not_observed_yet_takes_the_slowdown_as_this_machines():
    plan = _two_sizes()
    lead, follower = (s for s in plan.stages if s.kind == "member")
    _lead_ran_at_half_speed(plan)
    slower = lead.actual_minutes / lead.estimate_at_start
    assert slower > 1.5 and observed_speed_factor(plan, follower) == pytest.approx(slower)
    replan(plan, 1e9)
    assert follower.minutes == pytest.approx(estimate_minutes(plan, follower, slower))  # at 96 px


class _Clock:
    def __init__(self):
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


class _Trainer:
    def __init__(self, batches=5):
        self.current_epoch, self.max_epochs, self.should_stop = 0, 3, False
        self.num_training_batches, self.sanity_checking, self.world_size = batches, False, 1


def _epoch(clock, stage_clock, trainer, train_step=0.5, val_step=0.1, val_batches=4):
    stage_clock.on_train_epoch_start(trainer, None)
    for index in range(trainer.num_training_batches):
        clock.now += train_step
        stage_clock.on_train_batch_end(trainer, None, None, (np.zeros((32, 3)), None, None), index)
    stage_clock.on_validation_epoch_start(trainer, None)
    for index in range(val_batches):
        clock.now += val_step
        stage_clock.on_validation_batch_end(trainer, None, None, (np.zeros((64, 3)), None, None), index)
    stage_clock.on_train_epoch_end(trainer, None)
    trainer.current_epoch += 1


def test_the_stage_clock_hands_the_first_epochs_speed_to_the_plan(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(display, "time", clock)
    plan = _two_sizes()
    lead = plan.stages[0]
    stage_clock, trainer = StageClock(None, 2, 3, None, 0.0, plan=plan, stage=lead), _Trainer()
    stage_clock.on_fit_start(trainer, None)
    _epoch(clock, stage_clock, trainer)
    # from the end of the first batch: 4 batches of 32 in 2 s; validation 3 batches of 64 in 0.3 s
    observed = plan.speed_of(lead)
    assert observed is stage_clock.observed and observed.train_photos_per_s == 64.0
    assert observed.infer_photos_per_s == pytest.approx(640.0)
    _epoch(clock, stage_clock, trainer, train_step=5.0)  # later epochs do not replace it again
    assert plan.speed_of(lead) is observed and lead.estimate_observed is not None


def test_the_stage_clock_without_a_plan_or_with_too_short_an_epoch_changes_nothing(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(display, "time", clock)
    plan = _two_sizes()
    before = plan.to_dict()
    plain = StageClock(None, 2, 3, None)  # as run.py builds it today
    plain.on_fit_start(_Trainer(), None)
    _epoch(clock, plain, _Trainer())
    short = StageClock(None, 2, 3, None, plan=plan, stage=plan.stages[0])
    short.on_fit_start(_Trainer(2), None)
    _epoch(clock, short, _Trainer(2), val_batches=1)  # 2 batches say too little
    assert plain.observed is None and short.observed is None and plan.to_dict() == before


# --- the real measurement ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_measure_times_several_rounds_and_two_prediction_passes(demo_dir):
    from maskcls.data.layout import read_train

    manifest, _ = read_train(demo_dir / "train")
    speed = calibration.measure(
        manifest, "test_efficientnet", 32, "cpu", ("model.pretrained=none",), batches=2, warmup=1, batch_size=8
    )
    assert speed.train_photos_per_s > 0 and speed.infer_photos_per_s > 0
    assert speed.timing["train_batches"] == 2 * (2 + 1) - 1  # two rounds of three batches, less the warm-up
    assert speed.timing["predict_passes"] == 2 and 0 <= speed.timing["train_rejected"] < speed.timing["train_batches"]
