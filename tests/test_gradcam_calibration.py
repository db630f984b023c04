"""Grad-CAM for CNN, ViT (timm, Hugging Face) and three-head networks; temperature scaling and predict --calibrate."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import invoke
from torch import nn
from typer.testing import CliRunner

from maskcls.analysis.calibration import calibration_report
from maskcls.analysis.gradcam import (
    HeadTarget,
    TokenGrid,
    class_log_probs,
    find_target_layer,
    grad_cam,
    load_inputs,
    overlay,
)
from maskcls.cli import app
from maskcls.core.artifacts import CalibrationError, stored_temperature
from maskcls.core.config import DataConfig, ModelConfig
from maskcls.core.metrics import apply_temperature, expected_calibration_error, fit_temperature, negative_log_likelihood
from maskcls.core.tables import PROB_COLUMNS
from maskcls.models.factory import MaskNet, create_model
from maskcls.models.heads import create_head

SIZE = (64, 48)


def photos(demo_dir, n=4):
    return sorted(str(p) for p in (demo_dir / "train" / "images").glob("*/normal.*"))[:n]


def tiny_hf_vit():
    import transformers

    from maskcls.models.hf import HFBackbone

    config = transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8
    )
    backbone = HFBackbone(transformers.AutoModel.from_config(config, add_pooling_layer=False))
    return MaskNet(backbone, create_head("linear", backbone.num_features, 0.0))


NETWORKS = {
    "cnn": lambda: create_model(ModelConfig(name="test_efficientnet", pretrained="none")),
    "vit": lambda: create_model(ModelConfig(name="test_vit", pretrained="none")),
    "three_head": lambda: create_model(ModelConfig(name="test_efficientnet", pretrained="none", head="three_head")),
    "hf_vit": tiny_hf_vit,
}


@pytest.mark.parametrize("name", list(NETWORKS))
def test_grad_cam_explains_every_head_of_cnns_and_vits(name, demo_dir):
    torch.manual_seed(0)
    model = NETWORKS[name]().eval()
    layer, reshape = find_target_layer(model, SIZE)
    if name in ("vit", "hf_vit"):
        assert isinstance(layer, nn.LayerNorm) and isinstance(reshape, TokenGrid)
    else:
        assert reshape is None and not isinstance(layer, nn.LayerNorm)
    inputs, shown = load_inputs(photos(demo_dir), DataConfig(image_size=list(SIZE)))
    assert inputs.shape == (4, 3, *SIZE) and shown.shape == (4, *SIZE, 3) and shown.min() >= 0 and shown.max() <= 1
    maps = grad_cam([model], inputs, ["mask", "gender", "age", "class"], [2, 1, 0, 5])
    assert maps.shape == (4, *SIZE) and np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1 + 1e-6
    assert maps.reshape(4, -1).std(axis=1).max() > 0.01  # not blank
    assert overlay(shown, maps).shape == (4, *SIZE, 3)


def test_head_targets_are_the_log_marginals():
    torch.manual_seed(0)
    for head_name in ("linear", "three_head"):
        model = create_model(ModelConfig(name="test_efficientnet", pretrained="none", head=head_name)).eval()
        logits = model(torch.randn(2, 3, *SIZE))
        probs = model.probabilities(logits)
        assert torch.allclose(class_log_probs(model, logits).exp(), probs, atol=1e-5)
        joint = probs[0].reshape(3, 2, 3)
        assert torch.isclose(HeadTarget(model, "mask", 1)(logits[0]).exp(), joint[1].sum(), atol=1e-5)
        assert torch.isclose(HeadTarget(model, "gender", 0)(logits[0]).exp(), joint[:, 0].sum(), atol=1e-5)
        assert torch.isclose(HeadTarget(model, "age", 2)(logits[0]).exp(), joint[:, :, 2].sum(), atol=1e-5)
        assert torch.isclose(HeadTarget(model, "class", 7)(logits[0]).exp(), probs[0, 7], atol=1e-5)


def test_token_grid_drops_prefix_tokens():
    grid = TokenGrid((64, 48))
    assert grid.grid(13) == (1, (4, 3)) and grid.grid(14) == (2, (4, 3)) and grid.grid(12) == (0, (4, 3))
    tokens = torch.arange(2 * 13 * 5, dtype=torch.float32).reshape(2, 13, 5)
    maps = grid(tokens)
    assert maps.shape == (2, 5, 4, 3) and torch.equal(maps[:, :, 0, 0], tokens[:, 1, :])
    with pytest.raises(ValueError, match="patch grid"):
        TokenGrid((64, 64)).grid(3)


def miscalibrated(n=4000, seed=0):
    """Labels drawn from softmax(z), probabilities reported as softmax(3 z): far too confident."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 18)) * 1.5
    true_probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(18, p=p) for p in true_probs])
    return apply_temperature(true_probs, 1 / 3), labels, np.arange(n) // 7


def test_temperature_scaling_lowers_nll_and_ece_on_a_miscalibrated_table():
    probs, labels, persons = miscalibrated()
    temperature = fit_temperature(probs, labels)
    assert 2.5 < temperature < 3.5  # recovers the planted factor
    after = apply_temperature(probs, temperature)
    assert negative_log_likelihood(after, labels) < negative_log_likelihood(probs, labels) - 0.1
    assert (after.argmax(1) == probs.argmax(1)).all() and np.allclose(after.sum(1), 1)
    report = calibration_report(probs, labels, persons)
    assert report.nll_after < report.nll_before and report.ece_after < report.ece_before / 2
    assert expected_calibration_error(np.eye(18)[labels], labels) == 0


@pytest.mark.slow
def test_predict_applies_the_stored_temperature(tiny_run, demo_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    with pytest.raises(CalibrationError, match="maskcls calibrate"):
        stored_temperature(run)
    invoke("calibrate", "--run", run)
    record = json.loads((run / "calibration.json").read_text())
    assert record["nll_after"] <= record["nll_before"] + 0.02 and record["temperature"] == stored_temperature(run)
    invoke("predict", "--run", run, "--data", demo_dir / "eval", "--out", tmp_path / "plain", "--quiet")
    invoke(
        "predict", "--run", run, "--data", demo_dir / "eval", "--out", tmp_path / "calibrated", "--quiet", "--calibrate"
    )
    plain = pd.read_csv(tmp_path / "plain" / "test_probs.csv")[PROB_COLUMNS].to_numpy()
    calibrated = pd.read_csv(tmp_path / "calibrated" / "test_probs.csv")[PROB_COLUMNS].to_numpy()
    assert np.allclose(calibrated, apply_temperature(plain, record["temperature"]), atol=1e-5)
    assert pd.read_csv(tmp_path / "plain" / "submission.csv").equals(
        pd.read_csv(tmp_path / "calibrated" / "submission.csv")
    )
    assert json.loads((tmp_path / "calibrated" / "predict.json").read_text())["temperature"] == record["temperature"]
    photos = sorted((demo_dir / "eval" / "images").iterdir())[:3]
    rows = invoke("predict", "--run", run, *photos, "--out", tmp_path / "files", "--calibrate")
    table = pd.read_csv(tmp_path / "files" / "predictions.csv")
    plain_rows = (
        pd.read_csv(tmp_path / "plain" / "test_probs.csv")
        .set_index("image_id")
        .loc[[p.name for p in photos], PROB_COLUMNS]
        .to_numpy()
    )
    assert np.allclose(
        table["probability"], apply_temperature(plain_rows, record["temperature"]).max(axis=1), atol=1e-5
    ), rows.output
    refused = CliRunner().invoke(
        app, ["predict", "--onnx", str(tmp_path / "model.onnx"), "--data", str(demo_dir / "eval"), "--calibrate"]
    )
    assert refused.exit_code == 2 and "--calibrate needs --run" in refused.output
    oof = pd.read_csv(run / "oof.csv")
    oof.loc[0, "p0"] = 0.5
    oof.to_csv(run / "oof.csv", index=False)
    with pytest.raises(CalibrationError, match="changed since"):
        stored_temperature(run)
