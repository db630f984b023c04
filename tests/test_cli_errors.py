"""Known bad input ends with a one-line error and exit status 2, never a traceback."""

from typer.testing import CliRunner

from maskcls.cli import app

runner = CliRunner()


def test_missing_optional_package_names_the_extra(monkeypatch, tmp_path):
    def needs_xgboost(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'xgboost'", name="xgboost")

    monkeypatch.setattr("maskcls.ensemble.build.build_ensemble", needs_xgboost)
    result = runner.invoke(
        app,
        [
            "ensemble",
            "--runs",
            str(tmp_path),
            "--out",
            str(tmp_path / "e"),
            "--method",
            "stack",
            "--learner",
            "xgboost",
        ],
    )
    assert result.exit_code == 2
    assert "optional package 'xgboost': pip install maskcls[stack]" in result.output


def test_missing_data_folder_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "train.csv: file not found" in result.output and "Traceback" not in result.output


def test_eda_and_cache_report_bad_layouts(tmp_path):
    (tmp_path / "train.csv").write_text("id,gender\n1,male\n")
    for command in (["eda", str(tmp_path), "--out", str(tmp_path / "r")], ["cache", str(tmp_path)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2 and "missing column(s) race, age, path" in result.output


def test_cache_command_builds_reports_and_rebuilds(demo_dir):
    first = runner.invoke(app, ["cache", str(demo_dir / "eval"), "--set", "data.image_size=32"], env={"COLUMNS": "300"})
    assert first.exit_code == 0, first.output
    assert "42 photos at 36x36" in first.output and "MiB" in first.output
    again = runner.invoke(
        app, ["cache", str(demo_dir / "eval"), "--set", "data.image_size=32", "--rebuild"], env={"COLUMNS": "300"}
    )
    assert (
        again.exit_code == 0
        and first.output.split("cache: ")[1].split(" ")[0] == again.output.split("cache: ")[1].split(" ")[0]
    )


def test_tune_command_runs_a_trial_and_writes_the_best_recipe(demo_dir, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("optim.lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}\n")
    args = [
        "tune",
        "--data",
        str(demo_dir / "train"),
        "--space",
        str(space),
        "--trials",
        "1",
        "--out",
        str(tmp_path / "study"),
    ]
    for override in (
        "model.name=test_efficientnet",
        "model.pretrained=none",
        "data.image_size=[48, 36]",
        "train.epochs=1",
        "cv.folds=2",
        "cv.train_folds=[0]",
    ):
        args += ["--set", override]
    result = runner.invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert (
        "best recipe" in result.output
        and (tmp_path / "study" / "best.yaml").is_file()
        and (tmp_path / "study" / "study.db").is_file()
    )
