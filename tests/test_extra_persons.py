"""train --extra with whole persons: a competition-layout folder joins the training folds person by person,
never validation; its ids are namespaced; folds.csv / run.json record where every extra photo came from;
a cap per class and a ratio limit how much is added."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import TINY, invoke
from typer.testing import CliRunner

from maskcls.cli import app
from maskcls.core.labels import NUM_CLASSES
from maskcls.data.extra import ExtraSpec, limit_extras, read_extras
from maskcls.data.layout import DataError, read_train

QUICK = [o for o in TINY if not o.startswith("train.epochs")] + ["train.epochs=1", "cv.train_folds=[0]"]


@pytest.fixture(scope="module")
def extra_persons(tmp_path_factory):
    """A second demo set: 12 more persons in the competition layout, with the same ids as the first one's."""
    from maskcls.data.demo import generate_demo

    return generate_demo(tmp_path_factory.mktemp("extra") / "more", persons=12, eval_persons=1, seed=7) / "train"


def _train(demo_dir, run_dir, *extra_args):
    args = ["train", "--data", demo_dir / "train", "--out", run_dir, "--quiet", *extra_args]
    for override in QUICK:
        args += ["--set", override]
    return invoke(*args)


def test_layout_persons_join_training_whole_namespaced_and_capped(demo_dir, extra_persons, tmp_path):
    run = tmp_path / "run"
    result = _train(demo_dir, run, "--extra", extra_persons, "--extra-max-per-class", "10")
    folds = pd.read_csv(run / "folds.csv", dtype=str, keep_default_na=False)
    extra = folds[folds["source"] == "extra"]
    assert 0 < len(extra) < 84 and (extra["fold"] == "-1").all()
    assert f"extra: {len(extra)} photos of {len(extra) // 7} persons" in result.output
    assert extra["person_id"].str.startswith("extra:more:").all()  # namespaced by the source folder
    assert (extra.groupby("person_id").size() == 7).all()  # whole persons only
    assert np.bincount(extra["label"].astype(int), minlength=NUM_CLASSES).max() <= 10
    assert set(extra["origin"]) == {str(extra_persons.resolve())}
    assert not set(extra["person_id"]) & set(folds.loc[folds["source"] == "train", "person_id"])
    run_json = json.loads((run / "run.json").read_text())
    assert (
        run_json["extra"] == [str(extra_persons.resolve())]
        and run_json["extra_max_per_class"] == 10
        and run_json["extra_ratio"] is None
    )
    assert run_json["extra_sources"] == [
        {
            "path": str(extra_persons.resolve()),
            "kind": "layout",
            "persons": 12,
            "images": 84,
            "used_persons": len(extra) // 7,
            "used_images": len(extra),
        }
    ]
    oof = pd.read_csv(run / "oof.csv", dtype=str)
    assert not oof["image_id"].str.startswith("extra:").any()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["extra_images"] == len(extra) and summary["extra_persons"] == len(extra) // 7
    assert summary["folds"][0]["train_images"] == (folds["fold"] != "0").sum()


def test_cap_per_class_and_ratio_take_whole_persons(extra_persons):
    spec = ExtraSpec.of([extra_persons])
    offered, problems = read_extras(spec)
    assert not problems and len(offered) == 84 and offered["person_id"].str.startswith("extra:more:").all()
    capped = limit_extras(offered, 1000, ExtraSpec(spec.sources, max_per_class=10), seed=0)
    assert np.bincount(capped["label"], minlength=NUM_CLASSES).max() <= 10
    assert (capped.groupby("person_id").size() == 7).all() and 0 < len(capped) < len(offered)
    by_ratio = limit_extras(offered, 100, ExtraSpec(spec.sources, ratio=0.3), seed=0)
    assert len(by_ratio) == 28  # 30 photos allowed: 4 whole persons
    assert limit_extras(offered, 100, ExtraSpec(spec.sources, ratio=0.3), seed=0).equals(by_ratio)
    assert limit_extras(offered, 100, spec, seed=0).equals(offered)


def test_csv_and_layout_sources_together_and_a_missing_one(demo_dir, extra_persons, tmp_path):
    manifest, _ = read_train(extra_persons)
    csv_path = tmp_path / "pseudo.csv"
    manifest.head(5)[["image_id", "path", "label"]].to_csv(csv_path, index=False)
    offered, _ = read_extras(ExtraSpec.of([csv_path, extra_persons]))
    assert len(offered) == 89 and offered["image_id"].is_unique
    assert set(offered["origin"]) == {str(csv_path.resolve()), str(extra_persons.resolve())}
    with pytest.raises(DataError, match="extra source not found"):
        read_extras(ExtraSpec.of([tmp_path / "nowhere"]))
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--data",
            str(demo_dir / "train"),
            "--out",
            str(tmp_path / "r"),
            "--extra",
            str(tmp_path / "nowhere.csv"),
            "--quiet",
        ],
    )
    assert result.exit_code == 2 and "extra source not found" in result.output and "nowhere.csv" in result.output


def test_bad_limits_are_refused():
    with pytest.raises(ValueError, match="extra-max-per-class"):
        ExtraSpec((), max_per_class=0)
    with pytest.raises(ValueError, match="extra-ratio"):
        ExtraSpec((), ratio=-1.0)
