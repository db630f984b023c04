"""The pipeline on a small subset of the real-face benchmark in ../shared (skipped where it is absent)."""

import json

import pandas as pd
import pytest
from conftest import SHARED_DATA

from maskcls.core.config import load_config
from maskcls.inference.predict import predict_eval
from maskcls.training.kfold import train_kfold

UTK = SHARED_DATA / "utkmask18"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (UTK / "train" / "train.csv").is_file(),
        reason=f"benchmark data not found at {UTK} (it lives in ../shared, outside the repository)",
    ),
]


def _subset(tmp_path, persons=24, eval_photos=21):
    train = tmp_path / "train"
    train.mkdir()
    pd.read_csv(UTK / "train" / "train.csv", dtype=str).head(persons).to_csv(train / "train.csv", index=False)
    (train / "images").symlink_to(UTK / "train" / "images")
    evaluation = tmp_path / "eval"
    evaluation.mkdir()
    pd.read_csv(UTK / "eval" / "info.csv", dtype=str).head(eval_photos).to_csv(evaluation / "info.csv", index=False)
    (evaluation / "images").symlink_to(UTK / "eval" / "images")
    return train, evaluation


def test_train_and_predict_on_a_utkmask18_subset(tmp_path):
    train, evaluation = _subset(tmp_path)
    cfg = load_config(
        None,
        [
            "model.name=test_efficientnet",
            "model.pretrained=none",
            "data.image_size=64",
            "train.epochs=1",
            "cv.folds=2",
            "train.batch_size=32",
        ],
    )
    summary = train_kfold(train, cfg, tmp_path / "run", progress=False)
    assert summary["images"] == 24 * 7 and summary["oof_images"] == 24 * 7
    assert 0 <= summary["oof_macro_f1"] <= 1
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["persons"] == 24
    submission = predict_eval(tmp_path / "run", evaluation, progress=False)
    assert len(submission) == 21 and submission["ans"].between(0, 17).all()
