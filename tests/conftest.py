"""Shared fixtures: a tiny demo data set and an isolated decode cache for the whole session."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("MASKCLS_CACHE_DIR", tempfile.mkdtemp(prefix="maskcls-test-cache-"))
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED_DATA = Path(os.environ.get("MASKCLS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


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
