"""Hugging Face backbones: load from a local folder offline, pool to (B, F) at any input size, rebuild from
model.json."""

import json

import pytest
import timm
import torch
import transformers
from safetensors.torch import save_file
from timm.optim import create_optimizer_v2

from maskcls.models.factory import MaskNet
from maskcls.models.heads import create_head
from maskcls.models.hf import (
    HFBackbone,
    create_hf_backbone,
    hf_backbone_from_config,
    hf_normalization,
    hf_normalize_preset,
    hf_source,
    is_hf_name,
)
from maskcls.models.pretrained import PretrainedWeightsError

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8)
CONFIGS = {
    "vit": lambda: transformers.ViTConfig(**TINY, intermediate_size=64),
    "deit": lambda: transformers.DeiTConfig(**TINY, intermediate_size=64),
    # BEiT as its ImageNet checkpoints are: relative position bias in every block, mean pooling + layernorm.
    "beit": lambda: transformers.BeitConfig(**TINY, intermediate_size=64, use_relative_position_bias=True),
    # No model-specific code path: its own pooler_output, position interpolation built in, an unused mask token.
    "dinov2": lambda: transformers.Dinov2Config(**TINY, mlp_ratio=2),
}
ARCHS = list(CONFIGS)
# ViT / DeiT: their pooler (dense + tanh) is trained by no image classifier, so the CLS token is the feature.
EXPECTED_POOLING = {"vit": "cls", "deit": "cls", "beit": "pooler", "dinov2": "pooler"}
MISSING_HUB_ID = "maskcls-tests/no-such-model"


@pytest.fixture(scope="module", params=ARCHS)
def saved(request, tmp_path_factory):
    """A randomly initialised transformers model written with save_pretrained, and that model."""
    torch.manual_seed(0)
    reference = transformers.AutoModel.from_config(CONFIGS[request.param]()).eval()
    folder = tmp_path_factory.mktemp(request.param)
    reference.save_pretrained(folder)
    return folder, reference


def images(height=32, width=32, seed=0):
    return torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("mode", ["hub", "offline"])
def test_hub_and_offline_load_exactly_the_saved_weights(saved, mode):
    folder, reference = saved
    backbone = create_hf_backbone(f"hf:{folder}", mode)
    expected = reference.state_dict()
    loaded = backbone.model.state_dict()
    assert loaded.keys() <= expected.keys() and len(loaded) >= len(expected) - 2  # ViT/DeiT leave their pooler out
    for key, tensor in loaded.items():
        assert torch.equal(tensor, expected[key]), key


def test_features_at_the_config_size_and_at_another_size(saved):
    folder, reference = saved
    backbone = create_hf_backbone(f"hf:{folder}", "hub").eval()
    with torch.no_grad():
        native, other = backbone(images()), backbone(images(48, 40))
        plain = reference(pixel_values=images())  # what transformers itself gives at the config size
    for features in (native, other):
        assert features.shape == (2, 32) and torch.isfinite(features).all()
        assert not torch.allclose(features[0], features[1])
    assert backbone.pooling == EXPECTED_POOLING[reference.config.model_type]
    expected = plain.last_hidden_state[:, 0] if backbone.pooling == "cls" else plain.pooler_output
    assert torch.allclose(native, expected, atol=1e-6)  # interpolating positions changes nothing at the config size


def test_none_is_a_random_init_of_the_same_architecture(saved):
    folder, reference = saved
    backbone = create_hf_backbone(f"hf:{folder}", "none")
    assert type(backbone.model) is type(reference)
    weight = backbone.model.embeddings.patch_embeddings.projection.weight
    assert weight.shape == reference.embeddings.patch_embeddings.projection.weight.shape
    assert not torch.equal(weight, reference.embeddings.patch_embeddings.projection.weight)


@pytest.mark.parametrize("mode", ["hub", "offline", "none"])
def test_hub_id_without_network_says_what_failed_and_how_to_proceed(mode):
    with pytest.raises(PretrainedWeightsError) as info:
        create_hf_backbone(f"hf:{MISSING_HUB_ID}", mode)
    message = str(info.value)
    assert f"'hf:{MISSING_HUB_ID}'" in message
    assert "save_pretrained" in message and "model.pretrained=offline" in message and "model.pretrained=none" in message


def test_names_and_missing_folders(tmp_path):
    assert is_hf_name("hf:facebook/deit-tiny-patch16-224") and not is_hf_name("deit_tiny_patch16_224")
    assert hf_source("hf:facebook/deit-tiny-patch16-224") == "facebook/deit-tiny-patch16-224"
    with pytest.raises(ValueError, match="hf:<local folder or hub id>"):
        hf_source("hf:")
    with pytest.raises(PretrainedWeightsError, match="is not a folder"):
        create_hf_backbone(f"hf:{tmp_path / 'missing'}", "hub")


def test_rebuilt_from_the_stored_config_gives_the_same_outputs(saved):
    folder, _ = saved
    backbone = create_hf_backbone(f"hf:{folder}", "hub").eval()
    stored = json.loads(json.dumps(backbone.hf_config()))  # what model.json holds
    assert stored["model_type"] == backbone.model.config.model_type
    rebuilt = hf_backbone_from_config(stored).eval()
    rebuilt.load_state_dict(backbone.state_dict(), strict=True)
    with torch.no_grad():
        for batch in (images(), images(48, 40)):
            assert torch.equal(rebuilt(batch), backbone(batch))


def test_unknown_model_type_in_a_stored_config_is_a_clear_error():
    with pytest.raises(ValueError, match="model type 'not-a-model' is unknown to transformers"):
        hf_backbone_from_config({"model_type": "not-a-model", "transformers_version": "9.9.9"})


def test_layer_decay_scales_the_lr_down_with_depth(saved):
    folder, _ = saved
    backbone = create_hf_backbone(f"hf:{folder}", "hub")
    optimizer = create_optimizer_v2(backbone, opt="adamw", lr=1e-3, weight_decay=0.05, layer_decay=0.7)
    name_of = {id(p): name for name, p in backbone.named_parameters()}
    scale, decay = {}, {}
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            scale[name_of[id(parameter)]], decay[name_of[id(parameter)]] = group["lr_scale"], group["weight_decay"]
    trainable = {name for name, p in backbone.named_parameters() if p.requires_grad}
    assert set(scale) == trainable

    blocks = backbone._block_list_name()
    stem = {scale[n] for n in scale if n.startswith("model.embeddings.")}
    block0 = {scale[n] for n in scale if n.startswith(f"{blocks}.0.")}
    block1 = {scale[n] for n in scale if n.startswith(f"{blocks}.1.")}
    final_norm = {scale[n] for n in scale if not n.startswith(("model.embeddings.", f"{blocks}."))}
    # timm's convention: the final norm decays with the last block; the head (none here) would get 1.0
    assert [sorted(stem), sorted(block0), sorted(block1), sorted(final_norm)] == [
        [pytest.approx(0.7**k)] for k in (2, 1, 0, 0)
    ]
    assert decay["model.embeddings.cls_token"] == 0.0
    assert decay["model.embeddings.patch_embeddings.projection.weight"] == 0.05


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_weights_file_loads(saved, tmp_path, suffix):
    folder, reference = saved
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        path.write_bytes((folder / "model.safetensors").read_bytes())  # save_pretrained's own key names
    else:  # an image-classification checkpoint: base-model prefix plus a classifier to skip
        state = {f"{reference.base_model_prefix}.{k}": v for k, v in reference.state_dict().items()}
        torch.save({"state_dict": {**state, "classifier.weight": torch.zeros(5, 32)}}, path)
    backbone = create_hf_backbone(f"hf:{folder}", str(path))
    expected = reference.state_dict()
    for key, tensor in backbone.model.state_dict().items():
        assert torch.equal(tensor, expected[key]), key


def test_weights_for_another_architecture_are_refused(saved, tmp_path):
    folder, _ = saved
    path = tmp_path / "resnet.safetensors"
    save_file(timm.create_model("test_resnet").state_dict(), str(path))
    with pytest.raises(PretrainedWeightsError, match="does not fit this architecture"):
        create_hf_backbone(f"hf:{folder}", str(path))
    with pytest.raises(PretrainedWeightsError, match="not found"):
        create_hf_backbone(f"hf:{folder}", str(tmp_path / "nope.safetensors"))


def test_masknet_trains_every_backbone_parameter(saved):
    folder, _ = saved
    backbone = create_hf_backbone(f"hf:{folder}", "hub")
    model = MaskNet(backbone, create_head("linear", backbone.num_features, 0.0)).to(memory_format=torch.channels_last)
    logits = model(images(48, 40))
    assert logits.shape == (2, 18)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 17])).backward()
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:  # a parameter without a gradient would stall DDP
            assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name


def test_drop_path_rate_goes_into_the_stored_config(saved):
    folder, reference = saved
    if not hasattr(reference.config, "drop_path_rate"):  # ViT, DeiT: transformers has no stochastic depth for them
        with pytest.raises(ValueError, match="has no stochastic depth"):
            create_hf_backbone(f"hf:{folder}", "none", drop_path_rate=0.2)
        return
    backbone = create_hf_backbone(f"hf:{folder}", "hub", drop_path_rate=0.2)
    assert hf_backbone_from_config(backbone.hf_config()).model.config.drop_path_rate == 0.2


def test_a_text_model_is_refused():
    bert = transformers.BertModel(transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2))
    with pytest.raises(ValueError, match="takes 'input_ids', not images"):
        HFBackbone(bert)


def test_normalization_from_the_preprocessor_config(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5] * 3, "image_std": [0.5] * 3}))
    assert hf_normalization(f"hf:{tmp_path}") == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert hf_normalize_preset(tmp_path) == "inception"
    imagenet = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
    assert hf_normalize_preset(imagenet) == "imagenet"
    assert hf_normalization({"image_mean": 0.4, "image_std": 0.2}) == ((0.4,) * 3, (0.2,) * 3)
    assert hf_normalization({**imagenet, "do_normalize": False}) == ((0.0,) * 3, (1.0,) * 3)
    assert hf_normalize_preset({"image_mean": [0.1] * 3, "image_std": [0.3] * 3}) is None
    assert hf_normalization(tmp_path / "empty") is None
    assert hf_normalization(MISSING_HUB_ID) is None
