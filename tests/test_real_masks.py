"""The mask head on a folder of real photos (``analysis/real_masks.py``, ``solve --real-masks``): the folder is
checked before any work, the scores count a masked photo right when the head says worn or worn incorrectly,
and solve plans the prediction time."""

import shutil

import numpy as np
import pytest
from conftest import SHARED_DATA, make_real_mask_folder

from maskcls.analysis.real_masks import read_real_masks, real_mask_accuracy, real_mask_scores
from maskcls.data.layout import DataError
from maskcls.solver.plan import FINISH_SECONDS, TRAINERS, Speed, Workload, make_plan, replan


def test_scores_count_either_mask_answer_as_masked():
    # head probabilities (worn, incorrect, not worn); truth 0 worn, 1 incorrect, 2 not worn
    probs = np.array(
        [[0.8, 0.1, 0.1], [0.1, 0.7, 0.2], [0.6, 0.1, 0.3], [0.1, 0.1, 0.8], [0.5, 0.2, 0.3], [np.nan] * 3]
    )
    scores = real_mask_scores(probs, np.array([0, 0, 1, 2, 2, 2]))
    assert scores["photos"] == 5 and scores["unreadable"] == 1
    assert scores["mask_worn_recall"] == 1.0  # worn said incorrect still counts as masked
    assert scores["no_mask_recall"] == 0.5 and scores["accuracy"] == 0.8
    assert scores["incorrect_recall"] == 0.0  # the one incorrectly worn photo was called worn
    assert "incorrect_recall" not in real_mask_scores(probs[:2], np.array([0, 2]))


def test_a_bad_folder_is_named_before_any_work(demo_dir, tmp_path):
    with pytest.raises(DataError, match="labels.csv: not found"):
        read_real_masks(tmp_path)
    folder = make_real_mask_folder(demo_dir, tmp_path / "real", persons=1)
    assert read_real_masks(folder)["mask"].tolist() == [0, 1, 2]
    labels = folder / "labels.csv"
    labels.write_text("file,mask\nmask_worn/0_mask1.jpg,wear\n")
    with pytest.raises(DataError, match="missing column"):
        read_real_masks(folder)
    labels.write_text("path,mask\nmask_worn/0_mask1.jpg,masked\n")
    with pytest.raises(DataError, match="unknown mask label"):
        read_real_masks(folder)
    labels.write_text("path,mask\nmask_worn/gone.jpg,wear\n")
    with pytest.raises(DataError, match="1 listed photo.*gone.jpg"):
        read_real_masks(folder)


def test_a_trained_run_is_scored_on_real_mask_photos(demo_dir, tiny_run, tmp_path):
    folder = make_real_mask_folder(demo_dir, tmp_path / "real")
    scores = real_mask_accuracy(tiny_run, folder)
    assert scores["photos"] == 12 and 0 <= scores["accuracy"] <= 1 and "incorrect_recall" in scores


@pytest.mark.skipif(not (SHARED_DATA / "realmask" / "labels.csv").is_file(), reason="../shared/data/realmask absent")
def test_real_web_photos_are_read(tiny_run, tmp_path):
    """Real web photos (odd sizes and modes) go through the same path; 40 of them keep the test short."""
    source = SHARED_DATA / "realmask"
    lines = (source / "labels.csv").read_text().splitlines()
    picked = [lines[0], *lines[1:21], *lines[-20:]]
    for line in picked[1:]:
        path = tmp_path / line.split(",")[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / line.split(",")[0], path)
    (tmp_path / "labels.csv").write_text("\n".join(picked) + "\n")
    scores = real_mask_accuracy(tiny_run, tmp_path)
    assert scores["photos"] + scores["unreadable"] == 40 and scores["mask_worn_recall"] is not None


def test_solve_plans_the_real_mask_prediction():
    """The finish stage's real-mask predictions are in the plan's total, so the plan fits its budget with them
    (they were once added after planning, and the first re-plan cut an epoch to make room)."""
    speed = Speed("tf_efficientnet_lite0", 128, "none", 100.0, 200.0, 1.0, 500.0)
    without = make_plan([speed], Workload(1000, 100), 20)
    plan = make_plan([speed], Workload(1000, 100, real_mask_photos=800), 20)
    finish = next(s for s in plan.stages if s.kind == "finish")
    members = [s for s in plan.stages if s.kind in TRAINERS]
    predicted = sum(800 * s.folds * 2 / 200 for s in members)  # photos x folds x flip views / photos/s
    assert finish.minutes == pytest.approx((FINISH_SECONDS + predicted) / 60)
    assert next(s for s in without.stages if s.kind == "finish").minutes == pytest.approx(FINISH_SECONDS / 60)
    assert plan.open_minutes <= 20 * (1 - plan.safety)
    assert replan(plan, 20) == []  # nothing to cut: the plan was made with them
