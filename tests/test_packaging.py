"""pyproject.toml uses the current licence fields (an SPDX string and license-files): no setuptools warnings; torch
only in the train extra (the base install and the serve / onnx extras carry none); recipes ship as package data."""

import warnings
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_licence_is_an_spdx_expression_with_its_file():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    assert all((ROOT / name).is_file() for name in project["license-files"])


def test_setuptools_reads_the_project_without_warnings(monkeypatch):
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    monkeypatch.chdir(ROOT)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        apply_configuration(Distribution(), ROOT / "pyproject.toml")
    assert [str(w.message).splitlines()[0] for w in caught] == []


TORCH_STACK = {"torch", "torchvision", "lightning", "pytorch-lightning", "timm", "torchmetrics", "kornia"}


def _names(requirements: list[str]) -> set[str]:
    import re

    return {re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def test_base_install_and_the_serving_extras_carry_no_torch():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    for name, requirements in [("dependencies", project["dependencies"]), ("serve", extras["serve"]),
                               ("onnx", extras["onnx"])]:  # fmt: skip
        assert not _names(requirements) & TORCH_STACK, name
        assert not any(r.startswith("maskcls[") for r in requirements), name  # nor through another extra
    assert {"torch", "torchvision", "lightning", "timm"} <= _names(extras["train"])
    assert "onnxruntime" in _names(extras["serve"]) and "onnxruntime" in _names(extras["onnx"])


def test_all_is_every_extra_and_dev_has_the_make_test_tools():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    (everything,) = extras["all"]
    named = set(everything.removeprefix("maskcls[").removesuffix("]").split(","))
    assert named == set(extras) - {"all", "dev"}
    assert {"pytest", "ruff", "import-linter", "mkdocs-material", "selenium", "httpx"} <= _names(extras["dev"])


def test_only_lower_bounds():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for group in project["optional-dependencies"].values() for r in group]
    assert [r for r in requirements if any(op in r for op in ("<", "==", "~=", "!="))] == []


def test_recipes_ship_as_package_data():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    data = tool["package-data"]["maskcls"]
    assert "recipes/*.yaml" in data and "recipes/spaces/*.yaml" in data and "serve/static/*" in data
    assert tool["packages"]["find"]["where"] == ["src"]
    recipes = ROOT / "src" / "maskcls" / "recipes"
    assert (recipes / "demo.yaml").is_file() and (recipes / "lite0_baseline.yaml").is_file()


# The import names of the train extra's packages (but scipy, which serve and onnx share): none of them is installed by
# `pip install "maskcls[serve]"` or `"maskcls[onnx]"`, so the modules those installs run must not import them when
# loaded (a call may, lazily).
TRAIN_ONLY = [
    "torch", "torchvision", "timm", "lightning", "pytorch_lightning", "torchmetrics", "kornia", "safetensors",
    "sklearn", "matplotlib", "seaborn", "tensorboard", "imagehash", "adamp",
]  # fmt: skip
SERVING_MODULES = [
    "maskcls", "maskcls.cli", "maskcls.api", "maskcls.export.runtime", "maskcls.export.metadata",
    "maskcls.inference.outputs", "maskcls.serve.app", "maskcls.serve.server",
]  # fmt: skip


def test_the_serving_path_loads_without_the_train_extra():
    import subprocess
    import sys

    code = f"""
import importlib, importlib.abc, sys, traceback
BLOCKED = {TRAIN_ONLY!r}
class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (the train extra is not installed here)")
sys.meta_path.insert(0, Blocked())
failed = []
for module in {SERVING_MODULES!r}:
    try:
        importlib.import_module(module)
    except ImportError as error:
        frames = traceback.extract_tb(error.__traceback__)
        chain = [f"{{f.filename.rsplit('/src/', 1)[-1]}}:{{f.lineno}}" for f in frames if "maskcls" in f.filename]
        failed.append(f"{{module}}: {{error}}; via " + " -> ".join(chain))
        for name in [m for m in sys.modules if m.startswith("maskcls")]:
            del sys.modules[name]
print("\\n".join(failed))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
