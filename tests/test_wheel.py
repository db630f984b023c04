"""The built wheel works on its own: built from a copy of the checkout, installed into a folder, and run from a
working directory outside the checkout with only that folder on PYTHONPATH (so the wheel's maskcls shadows the
editable checkout), it trains by recipe name (the recipes are package data), predicts through the Python API and
plans a solve. Nothing is downloaded: the wheel is built without build isolation, with the venv's setuptools."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TINY_TRAIN = [
    "--set", "model.name=test_efficientnet",
    "--set", "cv.folds=2",
    "--set", "train.epochs=1",
    "--set", "data.image_size=[32, 24]",
    "--set", "train.batch_size=32",
    "--set", "train.loggers=[csv]",
]  # fmt: skip
PROB_COLUMNS = [f"p{k}" for k in range(18)]


def _setuptools_builds_offline() -> str | None:
    """Why the wheel cannot be built here without the network (None when it can)."""
    try:
        import setuptools
    except ImportError:
        return "setuptools is not installed in this environment (pip install -e '.[dev]' brings it)"
    required = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    wanted = next((r.split(">=")[1] for r in required if r.startswith("setuptools>=")), "0")
    have = tuple(int(part) for part in setuptools.__version__.split(".")[:1])
    if have < (int(wanted.split(".")[0]),):
        return f"setuptools {setuptools.__version__} is older than the build needs ({wanted}); pip install -e '.[dev]'"
    return None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> tuple[Path, Path]:
    """(the wheel, the folder it is installed in with ``pip install --target``)."""
    reason = _setuptools_builds_offline()
    if reason:
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("wheel")
    tree = base / "tree"  # a clean copy: no stale build/ or egg-info of the checkout ends up in the wheel
    tree.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, tree / name)
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    dist = base / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]
    built = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(tree)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (found,) = dist.glob("maskcls-*.whl")
    site = base / "site"
    installed = subprocess.run(
        [*pip, "install", "--no-deps", "--no-compile", "--target", str(site), str(found)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return found, site


@pytest.fixture(scope="module")
def outside(tmp_path_factory) -> Path:
    """A working directory outside the checkout."""
    path = tmp_path_factory.mktemp("outside")
    assert ROOT not in path.resolve().parents
    return path


def _run(site: Path, cwd: Path, *args: str, code: str | None = None, timeout: int = 300) -> str:
    """``python -m maskcls ARGS`` (or ``python -c CODE``) with only the wheel's folder on PYTHONPATH."""
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1"}
    command = [sys.executable, "-c", code] if code is not None else [sys.executable, "-m", "maskcls", *args]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{command[2:]} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_wheel_holds_the_package_data_and_only_the_package(wheel):
    names = zipfile.ZipFile(wheel[0]).namelist()
    for recipe in (ROOT / "src" / "maskcls" / "recipes").rglob("*.yaml"):
        assert f"maskcls/{recipe.relative_to(ROOT / 'src' / 'maskcls').as_posix()}" in names
    for static in (ROOT / "src" / "maskcls" / "serve" / "static").iterdir():
        assert f"maskcls/serve/static/{static.name}" in names
    assert {name.split("/")[0] for name in names} == {"maskcls", "maskcls-0.1.0.dist-info"}


def test_wheel_metadata_keeps_torch_out_of_the_base_install(wheel):
    with zipfile.ZipFile(wheel[0]) as archive:
        metadata = archive.read("maskcls-0.1.0.dist-info/METADATA").decode()
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    base = [r for r in requires if ";" not in r]
    assert base and not [r for r in base if r.split(">")[0].split("=")[0] in {"torch", "torchvision", "lightning"}]
    assert any(r.startswith("torch>=") and 'extra == "train"' in r for r in requires)


@pytest.fixture(scope="module")
def wheel_demo(wheel, outside) -> Path:
    _, site = wheel
    out = outside / "demo"
    _run(site, outside, "demo-data", str(out), "--persons", "24", "--eval-persons", "3", "--size", "64x48")
    return out


@pytest.fixture(scope="module")
def wheel_run(wheel, outside, wheel_demo) -> tuple[Path, str]:
    """A tiny 2-fold run trained by the wheel from the recipe named ``demo`` (package data)."""
    _, site = wheel
    run = outside / "runs" / "tiny"
    printed = _run(
        site, outside, "train", "--data", str(wheel_demo / "train"), "--config", "demo", "--out", str(run),
        "--quiet", *TINY_TRAIN,
    )  # fmt: skip
    return run, printed


def test_the_wheel_shadows_the_checkout(wheel, outside):
    _, site = wheel
    printed = _run(site, outside, code="import maskcls, maskcls.cli, maskcls.core.config as c; print(maskcls.__file__)")
    assert Path(printed.strip()).resolve().is_relative_to(site.resolve())
    assert "0.1.0" in _run(site, outside, "--version")


def test_wheel_trains_by_recipe_name(wheel_run):
    run, printed = wheel_run
    assert "out-of-fold macro F1" in printed
    summary = json.loads((run / "summary.json").read_text())
    assert 0 <= summary["oof_macro_f1"] <= 1
    assert sorted(p.name for p in run.glob("fold_*")) == ["fold_0", "fold_1"]
    # the resolved recipe is the shipped demo recipe (its own lr, weight decay and dropout), the overrides on top
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert (config["optim"]["lr"], config["optim"]["weight_decay"], config["model"]["drop_rate"]) == (0.003, 0.02, 0.2)
    assert config["model"]["name"] == "test_efficientnet" and config["cv"]["folds"] == 2


def test_wheel_predicts_through_the_python_api(wheel, outside, wheel_run, wheel_demo):
    _, site = wheel
    run, _ = wheel_run
    code = f"""
import json, maskcls
assert maskcls.__file__.startswith({str(site)!r}), maskcls.__file__
model = maskcls.load({str(run)!r})
table = model.predict({str(wheel_demo / "eval" / "images")!r})
print(json.dumps({{"columns": list(table.columns), "rows": len(table), "kind": model.info["kind"],
                  "sums": [float(s) for s in table[[f"p{{k}}" for k in range(18)]].sum(axis=1)],
                  "classes": [int(c) for c in table["class"]]}}))
"""
    result = json.loads(_run(site, outside, code=code).strip().splitlines()[-1])
    assert result["kind"] == "run"
    assert {"image", "class", "mask", "gender", "age_group", *PROB_COLUMNS} <= set(result["columns"])
    assert result["rows"] == len(list((wheel_demo / "eval" / "images").iterdir()))
    assert all(abs(total - 1) < 1e-3 for total in result["sums"])
    assert all(0 <= c < 18 for c in result["classes"])


def test_wheel_plans_a_solve(wheel, outside, wheel_demo):
    _, site = wheel
    out = outside / "solve"
    printed = _run(
        site, outside, "solve", "--dry-run", "--train", str(wheel_demo / "train"), "--eval",
        str(wheel_demo / "eval"), "--out", str(out), "--budget", "5m", "--quiet",
        "--candidate", "test_efficientnet@32", "--set", "model.pretrained=none", "--set", "train.batch_size=32",
    )  # fmt: skip
    assert "measured test_efficientnet at 32 px" in printed
    assert "plan: preset best, budget 5.0 min" in printed
    saved = json.loads((out / "plan.json").read_text())  # a dry run records its plan, to compare plans
    assert saved["dry_run"] and saved["plan"]["stages"]
