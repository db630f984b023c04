"""The Python API: maskcls.load / predict / info on runs, ensembles and ONNX files; maskcls.train; maskcls.solve."""

import numpy as np
import pandas as pd
import pytest
from conftest import TINY

import maskcls
from maskcls.api import Model, SolveResult, TrainResult, parse_budget
from maskcls.core.artifacts import RunError
from maskcls.core.tables import PROB_COLUMNS

pytestmark = pytest.mark.slow
COLUMNS = ["image", "class", "mask", "gender", "age_group", *PROB_COLUMNS, "error"]


def check_table(table: pd.DataFrame, photos: int) -> None:
    assert list(table.columns) == COLUMNS and len(table) == photos
    probs = table[PROB_COLUMNS].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    assert (table["class"].to_numpy(dtype=int) == probs.argmax(axis=1)).all()
    assert set(table["mask"]) <= {"wear", "incorrect", "not_wear"} and set(table["gender"]) <= {"male", "female"}
    assert set(table["age_group"]) <= {"<30", "30-59", ">=60"} and (table["error"] == "").all()


def test_load_a_run_predicts_a_folder_a_path_and_a_list(tiny_run, demo_dir):
    model = maskcls.load(tiny_run)
    assert isinstance(model, Model) and model.kind == "run"
    info = model.info
    assert info["kind"] == "run" and info["path"] == str(tiny_run)
    assert info["backbone"] == "test_efficientnet" and info["image_size"] == (64, 48)
    assert info["labels"] == {"age_middle": 30, "age_old": 60} and info["age_groups"] == ["<30", "30-59", ">=60"]
    assert info["folds"] == {str(tiny_run): [0, 1, 2]} and 0 <= info["oof_macro_f1"] <= 1
    images = demo_dir / "eval" / "images"
    table = model.predict(images)
    check_table(table, len(list(images.iterdir())))
    assert table["image"].tolist() == sorted(str(p) for p in images.iterdir())
    photo = sorted(images.iterdir())[0]
    one = model.predict(photo)
    check_table(one, 1)
    assert np.allclose(one[PROB_COLUMNS].to_numpy(), table[PROB_COLUMNS].to_numpy()[:1], atol=1e-5)
    check_table(model.predict([photo, str(photo)], tta="flip", batch_size=1), 2)


def test_a_photo_that_cannot_be_read_gets_an_error_not_an_exception(tiny_run, demo_dir, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a photo")
    photo = sorted((demo_dir / "eval" / "images").iterdir())[0]
    table = maskcls.load(tiny_run).predict([photo, bad], out=tmp_path / "out")
    assert table["error"].iloc[0] == "" and table["error"].iloc[1] != ""
    assert pd.isna(table["class"].iloc[1]) and table[PROB_COLUMNS].iloc[1].isna().all()
    assert (tmp_path / "out" / "predictions.csv").is_file()  # the table of `maskcls predict PHOTOS --out`


def test_load_refuses_what_is_not_a_model(demo_dir, tmp_path):
    with pytest.raises(RunError, match="looks like an eval folder"):
        maskcls.load(demo_dir / "eval")
    with pytest.raises(RunError, match="run directory not found"):
        maskcls.load(tmp_path / "absent")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(RunError, match="not an exported .onnx model"):
        maskcls.load(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match="ONNX model not found"):
        maskcls.load(tmp_path / "absent.onnx")


def test_an_ensemble_loads_and_predicts_like_its_members(tiny_run, demo_dir, tmp_path):
    from maskcls.ensemble.build import build_ensemble

    build_ensemble([tiny_run], "soft", tmp_path / "ensemble")
    model = maskcls.load(tmp_path / "ensemble")
    assert model.info["kind"] == "ensemble" and model.info["members"] == [str(tiny_run.resolve())]
    assert model.info["backbone"] == "test_efficientnet" and model.info["runs"] == [str(tiny_run.resolve())]
    photos = sorted((demo_dir / "eval" / "images").iterdir())[:4]
    table = model.predict(photos)
    check_table(table, 4)
    alone = maskcls.load(tiny_run).predict(photos)
    assert np.allclose(table[PROB_COLUMNS].to_numpy(), alone[PROB_COLUMNS].to_numpy(), atol=1e-5)


def test_an_onnx_file_loads_and_predicts_like_its_run(tiny_run, tiny_onnx, demo_dir):
    model = maskcls.load(tiny_onnx)
    assert model.kind == "onnx" and model.info["kind"] == "onnx"
    assert model.info["folds"] == [0, 1, 2] and model.info["image_size"] == (64, 48)
    photos = sorted((demo_dir / "eval" / "images").iterdir())[:4]
    table = model.predict(photos)
    check_table(table, 4)
    torch_table = maskcls.load(tiny_run).predict(photos)
    assert np.allclose(table[PROB_COLUMNS].to_numpy(), torch_table[PROB_COLUMNS].to_numpy(), atol=1e-3)
    with pytest.raises(ValueError, match="fixed when exporting"):
        model.predict(photos, tta="flip")


def test_predict_eval_writes_the_submission(tiny_run, demo_dir, tmp_path):
    submission = maskcls.load(tiny_run).predict_eval(demo_dir / "eval", tmp_path, progress=False)
    info = pd.read_csv(demo_dir / "eval" / "info.csv")
    assert submission["ImageID"].tolist() == info["ImageID"].tolist()
    assert (tmp_path / "submission.csv").is_file() and (tmp_path / "test_probs.csv").is_file()


def test_train_returns_a_result_that_loads(demo_dir, tmp_path):
    overrides = [*TINY, "train.epochs=1", "cv.folds=2", "data.image_size=48"]  # a square size, given as one number
    result = maskcls.train(demo_dir / "train", config="demo", out=tmp_path / "run", overrides=overrides, progress=False)
    assert isinstance(result, TrainResult) and result.run_dir == tmp_path / "run" and result.kind == "run"
    assert result.oof_macro_f1 == result.summary["oof_macro_f1"] and len(result.summary["folds"]) == 2
    model = result.load()
    assert model.info["backbone"] == "test_efficientnet" and model.info["folds"] == {str(result.run_dir): [0, 1]}
    assert model.info["image_size"] == (48, 48)
    with pytest.raises(RunError):  # the run exists: not replaced without force
        maskcls.train(demo_dir / "train", config="demo", out=tmp_path / "run", overrides=overrides, progress=False)


def test_train_checks_its_arguments_before_training(demo_dir, tmp_path):
    from maskcls.core.config import ConfigError

    with pytest.raises(ValueError, match="give out"):
        maskcls.train(demo_dir / "train")
    with pytest.raises(ValueError, match="give data"):
        maskcls.train(out=tmp_path / "run")
    with pytest.raises(ConfigError):
        maskcls.train(demo_dir / "train", config="demo", out=tmp_path / "run", overrides={"train.epochz": 1})
    assert not (tmp_path / "run").exists()


def test_solve_dry_run_returns_the_plan(demo_dir, tmp_path):
    result = maskcls.solve(
        demo_dir / "train",
        demo_dir / "eval",
        budget="5m",
        out=tmp_path / "solve",
        dry_run=True,
        candidates=["test_efficientnet@32"],
        overrides=["model.pretrained=none", "train.batch_size=32"],
        progress=False,
    )
    assert isinstance(result, SolveResult) and result.dry_run and result.summary is None
    assert result.plan.budget_minutes == 5.0 and result.plan.stages[0].kind == "calibrate"
    assert any(stage.name == "member_ce" for stage in result.plan.stages)
    assert [p.name for p in (tmp_path / "solve").iterdir()] == ["plan.json"]  # the plan only, to compare plans
    with pytest.raises(RunError, match="dry run"):
        result.load()
    with pytest.raises(RunError, match="a dry run's plan: nothing was started"):
        maskcls.solve(out=tmp_path / "solve", resume=True)


def test_solve_refuses_bad_arguments_at_once(demo_dir, tmp_path):
    with pytest.raises(ValueError, match="cannot read the budget '10x'"):
        maskcls.solve(demo_dir / "train", demo_dir / "eval", budget="10x", out=tmp_path / "solve")
    with pytest.raises(ValueError, match="BACKBONE@SIZE"):
        maskcls.solve(demo_dir / "train", demo_dir / "eval", budget="5m", candidates=["lite0"])
    assert parse_budget("1h30m") == 90 and parse_budget(2) == 2 and parse_budget("90s") == 1.5


def test_maskcls_solve_stays_the_function_once_the_solver_package_is_imported():
    import maskcls.solver.plan  # noqa: F401 - the solver package has its own name, so maskcls.solve is untouched

    assert maskcls.solve is maskcls.api.solve
