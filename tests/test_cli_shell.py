"""The CLI as a shell: a wrong argument is answered before torch is imported, and tables printed to a pipe (or
a log, or a test) come out whole instead of cut to 80 columns."""

import json
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from maskcls.cli import app

BAD_ARGUMENTS = [
    ["solve", "--budget", "10x", "--data", "x", "--eval", "y", "--out", "z"],
    ["solve", "--budget", "5m", "--train", "x", "--eval", "y", "--candidate", "lite0"],
    ["solve", "--train", "x"],
    ["train", "--data", "x"],
    ["predict", "--run", "r"],
    ["predict", "--run", "r", "--onnx", "m.onnx", "photo.jpg"],
    ["--help"],
]

# Runs the app in a fresh interpreter (this test process has torch loaded by other tests) and reports, per
# argument list, the exit code and whether torch got imported.
CHILD = """
import json, sys
from typer.testing import CliRunner
from maskcls.cli import app
results = []
for args in json.loads(sys.argv[1]):
    result = CliRunner().invoke(app, args)
    torch = "torch" in sys.modules
    results.append({"args": args, "exit_code": result.exit_code, "output": result.output, "torch": torch})
print(json.dumps(results))
"""


def test_bad_arguments_are_refused_without_importing_torch():
    child = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(BAD_ARGUMENTS)], capture_output=True, text=True, check=True
    )
    results = json.loads(child.stdout.splitlines()[-1])
    for result in results:
        assert not result["torch"], result
        assert result["exit_code"] == (0 if result["args"] == ["--help"] else 2), result
    assert "cannot read the budget '10x'" in results[0]["output"]
    assert "BACKBONE@SIZE" in results[1]["output"]


def test_import_maskcls_loads_no_torch():
    code = "import sys, maskcls; print(callable(maskcls.load), 'torch' in sys.modules)"
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert child.stdout.split() == ["True", "False"]


@pytest.mark.slow
def test_a_table_printed_to_a_pipe_is_not_cut(tiny_run, demo_dir, tmp_path):
    photo = tmp_path / ("a_photo_with_a_name_long_enough_to_fill_most_of_an_eighty_column_line" + ".jpg")
    shutil.copy(sorted((demo_dir / "eval" / "images").iterdir())[0], photo)
    result = CliRunner().invoke(app, ["predict", "--run", str(tiny_run), str(photo)], env={"COLUMNS": None})
    assert result.exit_code == 0, result.output
    header = next(line for line in result.output.splitlines() if "photo" in line and "class" in line)
    assert header.split() == ["photo", "class", "mask", "gender", "age", "prob."], result.output
    row = next(line for line in result.output.splitlines() if photo.name in line)
    assert len(row.split()) == 6 and 0 < float(row.split()[-1]) <= 1, result.output
