"""Shared fixtures: a tiny demo data set and an isolated decode cache for the whole session."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

if "MASKCLS_CACHE_DIR" not in os.environ:
    _SESSION_CACHE = tempfile.mkdtemp(prefix="maskcls-test-cache-")
    os.environ["MASKCLS_CACHE_DIR"] = _SESSION_CACHE
else:
    _SESSION_CACHE = None
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED_DATA = Path(os.environ.get("MASKCLS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def pytest_unconfigure(config) -> None:
    """Delete the session's decode cache (80 MB a run): left behind, runs on one machine filled its disk."""
    if _SESSION_CACHE is not None:
        shutil.rmtree(_SESSION_CACHE, ignore_errors=True)


def kill_when(command: list[str], path: Path, timeout: float = 300) -> None:
    """Run ``command`` until ``path`` exists, then SIGKILL it (a kill in the middle of long work); fails with the
    command's output when it ended first."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=os.environ.copy())
    deadline = time.monotonic() + timeout
    while not path.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert process.poll() is None, process.stdout.read().decode()
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """60 training persons (420 photos) and 6 eval persons of synthetic faces."""
    from maskcls.data.demo import generate_demo

    return generate_demo(tmp_path_factory.mktemp("demo") / "demo", persons=60, eval_persons=6, seed=1)


@pytest.fixture
def train_copy(demo_dir, tmp_path) -> Path:
    """A private copy of the demo train/ folder that a test may damage."""
    target = tmp_path / "train"
    shutil.copytree(demo_dir / "train", target)
    return target


TINY = [
    "model.name=test_efficientnet",
    "model.pretrained=none",
    "data.image_size=[64, 48]",
    "train.epochs=35",
    "train.batch_size=32",
    "optim.lr=0.005",
    "cv.folds=3",
    "train.early_stopping_patience=0",
]


def invoke(*args):
    """Run the ``maskcls`` CLI in-process; fail the test with its output unless it exits 0."""
    from typer.testing import CliRunner

    from maskcls.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def train_tiny(demo_dir: Path, run_dir: Path, *overrides: str) -> Path:
    """Train a tiny model on the demo set through the CLI (a few seconds per fold on 2 cores)."""
    args = ["train", "--data", demo_dir / "train", "--out", run_dir, "--quiet"]
    for override in TINY + list(overrides):
        args += ["--set", override]
    invoke(*args)
    return run_dir


@pytest.fixture(scope="session")
def tiny_run(demo_dir, tmp_path_factory) -> Path:
    """A 3-fold run of timm's test_efficientnet on the demo set."""
    return train_tiny(demo_dir, tmp_path_factory.mktemp("runs") / "tiny")


@pytest.fixture(scope="session")
def tiny_run_b(demo_dir, tmp_path_factory) -> Path:
    """A second, different run on the same folds (three-head model), for ensembles."""
    return train_tiny(
        demo_dir, tmp_path_factory.mktemp("runs") / "tiny_b", "model.head=three_head", "train.epochs=15", "train.seed=5"
    )


@pytest.fixture(scope="session")
def tiny_onnx(tiny_run, tmp_path_factory) -> Path:
    """``tiny_run``'s three folds exported as one ONNX graph."""
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    invoke("export", "--run", tiny_run, "--out", path, "--quiet")
    return path


# Python code to run first in a child process: every later import of torch (or a torch submodule) fails there.
NO_TORCH = """
import importlib.abc, sys
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test: the ONNX runtime path must not import it")
sys.meta_path.insert(0, NoTorch())
"""


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def live_server(tiny_onnx, tmp_path_factory):
    """``maskcls serve --onnx tiny.onnx --workers 2`` in a real process on a loopback port; yields its base URL.

    Two workers with prometheus-client's multiprocess mode, so /metrics reports both, as deployed.
    """
    import subprocess
    import sys
    import time

    import httpx

    port = free_port()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path_factory.mktemp("prometheus"))}
    log = open(  # noqa: SIM115 (the server writes into it for the whole session; closed at teardown)
        tmp_path_factory.mktemp("server") / "server.log", "w+"
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "maskcls",
            "serve",
            "--onnx",
            str(tiny_onnx),
            "--port",
            str(port),
            "--workers",
            "2",
            "--threads",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            if process.poll() is not None:
                log.seek(0)
                pytest.fail(f"maskcls serve exited with {process.returncode}:\n{log.read()}")
            try:
                if httpx.get(base_url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("maskcls serve did not answer /health within 120 s")
            time.sleep(0.3)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def make_real_mask_folder(demo_dir, folder, persons=4):
    """Photos laid out like ``../shared/data/realmask``: mask_worn/ and no_mask/ with a labels.csv."""
    rows = ["path,mask"]
    for index, person in enumerate(sorted((demo_dir / "train" / "images").iterdir())[:persons]):
        for stem, side, mask in (("mask1", "mask_worn", "wear"), ("incorrect_mask", "mask_worn", "incorrect")):
            (folder / side).mkdir(parents=True, exist_ok=True)
            shutil.copy(person / f"{stem}.jpg", folder / side / f"{index}_{stem}.jpg")
            rows.append(f"{side}/{index}_{stem}.jpg,{mask}")
        (folder / "no_mask").mkdir(parents=True, exist_ok=True)
        shutil.copy(person / "normal.jpg", folder / "no_mask" / f"{index}.jpg")
        rows.append(f"no_mask/{index}.jpg,not_wear")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder
