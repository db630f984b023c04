"""Separate per-head models and the age-specific model, trained on the same folds and combined; a Hugging
Face backbone through the whole pipeline."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import TINY, invoke

from maskcls.core.labels import head_probabilities
from maskcls.core.tables import PROB_COLUMNS
from maskcls.training.combine import age_groups_one_hot, fit_age_cuts

pytestmark = pytest.mark.slow


def test_fit_age_cuts_finds_the_shifted_threshold():
    rng = np.random.default_rng(0)
    true_ages = rng.integers(18, 80, 3000)
    predicted = true_ages - 3.0 + rng.uniform(-0.2, 0.2, 3000)  # a model that under-estimates by 3 years
    labels = (true_ages >= 30).astype(int) + (true_ages >= 60).astype(int)  # mask 0, gender 0: class = age group
    mask, gender = np.tile([0.8, 0.1, 0.1], (3000, 1)), np.tile([0.6, 0.4], (3000, 1))
    cuts, score = fit_age_cuts(mask, gender, predicted, labels)
    assert cuts == (26.5, 56.5) and score == pytest.approx(
        1.0
    )  # the only grid cuts between 29 / 30 and 59 / 60, shifted
    assert np.array_equal(age_groups_one_hot(np.array([26.4, 26.5, 56.5]), cuts).argmax(1), [0, 1, 2])


@pytest.mark.parametrize("age_head", ["age_regression", "age_classes"])
def test_train_with_an_age_model_and_predict_from_the_combination(demo_dir, tmp_path, age_head):
    age_recipe = tmp_path / "age.yaml"
    age_recipe.write_text(f"model:\n  head: {age_head}\n")
    args = ["train", "--data", demo_dir / "train", "--out", tmp_path / "run", "--age-config", age_recipe, "--quiet"]
    for override in TINY + ["train.epochs=3", "cv.train_folds=[0, 1, 2]"]:
        args += ["--set", override]
    result = invoke(*args)
    assert "combined out-of-fold macro F1" in result.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["age_cuts"] is not None) == (age_head == "age_regression")
    main_oof, age_oof, combined = (pd.read_csv(tmp_path / "run" / part / "oof.csv") for part in ("main", "age", "."))
    assert main_oof["fold"].tolist() == age_oof.set_index("image_id").loc[main_oof["image_id"], "fold"].tolist()
    heads_main = head_probabilities(main_oof[PROB_COLUMNS].to_numpy())
    heads_combined = head_probabilities(combined[PROB_COLUMNS].to_numpy())
    assert np.allclose(heads_main["mask"], heads_combined["mask"], atol=1e-6)  # mask and gender come from the main run
    if age_head == "age_classes":
        assert np.allclose(
            heads_combined["age"],
            age_oof.set_index("image_id").loc[combined["image_id"], ["a0", "a1", "a2"]].to_numpy(),
            atol=1e-5,
        )
    invoke("predict", "--run", tmp_path / "run", "--data", demo_dir / "eval", "--quiet")
    submission = pd.read_csv(tmp_path / "run" / "submission.csv")
    assert len(submission) == 42 and submission["ans"].between(0, 17).all()


def test_hugging_face_backbone_trains_and_predicts_without_its_folder(demo_dir, tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8
    )
    folder = tmp_path / "tiny-vit"
    transformers.ViTModel(config, add_pooling_layer=False).save_pretrained(folder)
    args = ["train", "--data", demo_dir / "train", "--out", tmp_path / "run", "--quiet"]
    for override in TINY + [
        f"model.name=hf:{folder}",
        "model.pretrained=hub",
        "data.image_size=[48, 40]",
        "data.normalize=inception",
        "train.epochs=1",
        "cv.train_folds=[0]",
        "optim.layer_decay=0.8",
    ]:
        args += ["--set", override]
    invoke(*args)
    shutil.rmtree(folder)  # the trained model must not need it any more
    invoke("predict", "--run", tmp_path / "run", "--data", demo_dir / "eval", "--quiet")
    assert len(pd.read_csv(tmp_path / "run" / "submission.csv")) == 42


def test_separate_models_per_head_are_trained_and_combined(demo_dir, tmp_path):
    args = ["train", "--data", demo_dir / "train", "--out", tmp_path / "run", "--quiet"]
    for override in TINY + ["train.epochs=2", "model.head=separate"]:
        args += ["--set", override]
    invoke(*args)
    combined = pd.read_csv(tmp_path / "run" / "oof.csv")
    heads = head_probabilities(combined[PROB_COLUMNS].to_numpy())
    for head, columns in (("mask", ["m0", "m1", "m2"]), ("gender", ["g0", "g1"]), ("age", ["a0", "a1", "a2"])):
        part = pd.read_csv(tmp_path / "run" / head / "oof.csv").set_index("image_id").loc[combined["image_id"]]
        assert np.allclose(heads[head], part[columns].to_numpy(), atol=1e-5)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert set(summary["sources"]) == {"mask", "gender", "age"}
    invoke("predict", "--run", tmp_path / "run", "--data", demo_dir / "eval", "--quiet")
