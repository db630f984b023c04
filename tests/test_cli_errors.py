"""Known bad input ends with a one-line error and exit status 2, never a traceback."""

from typer.testing import CliRunner

from maskcls.cli import app

runner = CliRunner()


def test_missing_optional_package_names_the_extra(monkeypatch, tmp_path):
    def needs_xgboost(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'xgboost'", name="xgboost")

    monkeypatch.setattr("maskcls.ensemble.build.build_ensemble", needs_xgboost)
    result = runner.invoke(app, ["ensemble", "--runs", str(tmp_path), "--out", str(tmp_path / "e"), "--method", "stack", "--learner", "xgboost"])
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
