"""Every shipped recipe trains as written, with only its backbone swapped for a tiny offline one
(hub weights cannot be downloaded in CI) and the run made short."""

import pytest
from typer.testing import CliRunner

from maskcls.cli import app
from maskcls.core.config import RECIPES_DIR, load_config

pytestmark = pytest.mark.slow
CONFIGS = sorted((RECIPES_DIR).glob("*.yaml"))
SHORT = [
    "data.image_size=[48, 36]",
    "train.epochs=1",
    "train.batch_size=16",
    "cv.folds=2",
    "cv.train_folds=[0]",
    "model.pretrained=none",
]


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8
    )
    folder = tmp_path_factory.mktemp("hf") / "vit"
    transformers.ViTModel(config, add_pooling_layer=False).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("recipe", CONFIGS, ids=lambda p: p.stem)
def test_recipe_trains(recipe, demo_dir, tmp_path, tiny_vit):
    cfg = load_config(recipe)
    backbone = f"hf:{tiny_vit}" if cfg.model.name.startswith("hf:") else "test_efficientnet"
    overrides = SHORT + [f"model.name={backbone}"]
    if cfg.model.drop_path_rate and backbone.startswith("hf:"):
        overrides.append("model.drop_path_rate=0.0")  # the tiny ViT has no stochastic depth; BEiT has
    args = [
        "train",
        "--config",
        str(recipe),
        "--data",
        str(demo_dir / "train"),
        "--out",
        str(tmp_path / "run"),
        "--quiet",
    ]
    for override in overrides:
        args += ["--set", override]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "summary.json").is_file()
