"""ONNX export and the torch-free runtime: the numbers of PyTorch, metadata that round-trips, clear refusals."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import onnx
import pandas as pd
import pytest
import torch
from conftest import NO_TORCH, SHARED_DATA, invoke
from typer.testing import CliRunner

from maskcls.cli import app
from maskcls.core.config import DataConfig, ModelConfig
from maskcls.core.tables import PROB_COLUMNS
from maskcls.core.tta import tta_views
from maskcls.data.images import read_resized
from maskcls.engine.predictor import predict_outputs
from maskcls.export.graph import PredictionGraph, build_graph
from maskcls.export.metadata import FORMAT_VERSION, METADATA_KEY, OUTPUT_NAMES, ExportedModelError
from maskcls.export.onnx_export import OPSET, write_graph
from maskcls.export.runtime import OnnxModel
from maskcls.models.factory import create_model

TOLERANCE = 1e-4
DATA = DataConfig(image_size=[64, 48])


def _random_model(head: str, seed: int):
    """A random test_efficientnet whose head is rescaled so that its probabilities are far from uniform."""
    torch.manual_seed(seed)
    model = create_model(
        ModelConfig(name="test_efficientnet", pretrained="none", head=head, channels_last=False)
    ).eval()
    with torch.no_grad():
        features = model.backbone(torch.rand(16, 3, *DATA.size_hw))
        scale = 4.0 / (features.std() * features.shape[1] ** 0.5)
        model.head.fc.weight.copy_(torch.randn_like(model.head.fc.weight) * scale)
    return model


@pytest.fixture(scope="module")
def heads_graph(tmp_path_factory):
    """Linear, three-head and MSD models as the 'folds' of one graph with every TTA view: one export covers them all."""
    models = [_random_model(head, seed) for seed, head in enumerate(("linear", "three_head", "msd"))]
    graph = PredictionGraph(models, DATA, tta_views("full"), "mean_probs").eval()
    path = write_graph(graph, tmp_path_factory.mktemp("heads") / "heads.onnx", {})
    import onnxruntime

    return graph, onnxruntime.InferenceSession(str(path))


def _photos(demo_dir, count=8):
    paths = sorted((demo_dir / "train" / "images").glob("*/*.jpg"))[:count]
    return np.stack([read_resized(path, DATA.cache_hw) for path in paths])


def _compare(graph, session, pixels):
    with torch.no_grad():
        expected = [tensor.numpy() for tensor in graph(torch.from_numpy(pixels))]
    got = session.run(list(OUTPUT_NAMES), {"pixels": pixels})
    return expected, got


def test_linear_three_head_and_msd_match_pytorch_on_random_and_real_photos(heads_graph, demo_dir):
    graph, session = heads_graph
    random_pixels = np.random.default_rng(0).integers(0, 256, (5, *DATA.cache_hw, 3), dtype=np.uint8)
    for pixels in (random_pixels, _photos(demo_dir)):
        expected, got = _compare(graph, session, pixels)
        for name, want, have in zip(OUTPUT_NAMES, expected, got, strict=False):
            assert have.shape == want.shape, name
            assert np.abs(have - want).max() < TOLERANCE, name
        fold_probs = expected[-1]  # (N, model, 18): linear, three_head, msd
        assert fold_probs.max(axis=2).min() > 0.1  # far from uniform (1/18): the tolerance means something
        assert np.allclose(fold_probs.sum(axis=2), 1, atol=1e-5)
    # The tolerance tells a wrong preprocessing apart: the same models without TTA differ by far more.
    other = PredictionGraph(list(graph.models), DATA, tta_views("none"), "mean_probs").eval()
    with torch.no_grad():
        no_tta = other(torch.from_numpy(random_pixels))[0].numpy()
    assert np.abs(no_tta - _compare(graph, session, random_pixels)[1][0]).max() > 100 * TOLERANCE


@pytest.mark.skipif(
    not (SHARED_DATA / "utkmask18").is_dir(), reason=f"real photos not found at {SHARED_DATA}/utkmask18"
)
def test_heads_match_pytorch_on_real_faces(heads_graph):
    graph, session = heads_graph
    paths = sorted((SHARED_DATA / "utkmask18" / "train" / "images").glob("*/*"))[:14]
    expected, got = _compare(graph, session, np.stack([read_resized(path, DATA.cache_hw) for path in paths]))
    for name, want, have in zip(OUTPUT_NAMES, expected, got, strict=False):
        assert np.abs(have - want).max() < TOLERANCE, name


def test_graph_is_the_prediction_path(heads_graph, demo_dir):
    """Each model's output in the graph equals what `predict --run` computes for it (Lightning, per-view passes)."""
    graph, _ = heads_graph
    pixels = _photos(demo_dir, 6)
    with torch.no_grad():
        fold_probs = graph(torch.from_numpy(pixels))[-1].numpy()
    for index, model in enumerate(graph.models):
        reference = predict_outputs(
            model, DATA, pixels, np.arange(len(pixels)), accelerator="cpu", progress=False, tta="full"
        )["probs"]
        assert np.abs(fold_probs[:, index] - reference).max() < 1e-5


def test_merged_folds_give_the_run_s_files_without_torch(tiny_run, tiny_onnx, demo_dir, tmp_path):
    """`predict --onnx` in a process where torch cannot be imported writes the files of `predict --run`."""
    eval_dir = demo_dir / "eval"
    invoke("predict", "--run", tiny_run, "--data", eval_dir, "--out", tmp_path / "torch", "--quiet")
    photo = sorted((eval_dir / "images").iterdir())[0]
    commands = [
        ["predict", "--onnx", str(tiny_onnx), "--data", str(eval_dir), "--out", str(tmp_path / "onnx"), "--quiet"],
        ["predict", "--onnx", str(tiny_onnx), str(photo)],
    ]
    code = (
        NO_TORCH
        + f"""
from maskcls.cli import app
for argv in {commands!r}:
    try:
        app(argv)
    except SystemExit as done:
        if done.code:
            raise
assert not any(name == "torch" or name.startswith("torch.") for name in sys.modules)
"""
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}
    )
    assert done.returncode == 0, done.stdout + done.stderr
    torch_probs = pd.read_csv(tmp_path / "torch" / "test_probs.csv")
    onnx_probs = pd.read_csv(tmp_path / "onnx" / "test_probs.csv")
    assert list(onnx_probs.columns) == list(torch_probs.columns)
    assert onnx_probs["image_id"].tolist() == torch_probs["image_id"].tolist()
    numbers = [*PROB_COLUMNS, "entropy", "disagreement"]
    assert np.abs(onnx_probs[numbers].to_numpy() - torch_probs[numbers].to_numpy()).max() < TOLERANCE
    assert (tmp_path / "onnx" / "submission.csv").read_text() == (tmp_path / "torch" / "submission.csv").read_text()
    answer = int(torch_probs.loc[torch_probs["image_id"] == photo.name, PROB_COLUMNS].to_numpy().argmax())
    assert photo.name in done.stdout and f" {answer} " in done.stdout


def test_metadata_round_trips(tiny_run, tiny_onnx):
    model = OnnxModel(tiny_onnx)
    _, built = build_graph(tiny_run)
    read = model.metadata
    assert read.model_dump(exclude={"opset", "exported_at"}) == built.model_dump(exclude={"opset", "exported_at"})
    assert read.format_version == FORMAT_VERSION and read.opset == OPSET and read.folds == (0, 1, 2)
    assert read.cache_hw == DATA.cache_hw and read.preprocess.image_size == DATA.size_hw
    assert read.labels.age_old == 60 and len(read.labels.class_names) == 18
    assert read.tta.name == "none" and read.fallback_class in range(18)
    proto = onnx.load(str(tiny_onnx))
    assert json.loads({p.key: p.value for p in proto.metadata_props}[METADATA_KEY]) == json.loads(read.to_json())
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [OPSET]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # a named, dynamic batch axis
    pixels = np.zeros((3, *read.cache_hw, 3), np.uint8)
    assert model.predict(pixels)["probs"].shape == (3, 18) and model.predict(pixels[:1])["fold_probs"].shape == (
        1,
        3,
        18,
    )


def test_one_fold_as_its_own_file(tiny_run, tmp_path, demo_dir):
    invoke(
        "export",
        "--run",
        tiny_run,
        "--out",
        tmp_path / "m.onnx",
        "--fold",
        "1",
        "--separate",
        "--tta",
        "flip",
        "--quiet",
    )
    model = OnnxModel(tmp_path / "m.fold1.onnx")
    assert (
        model.metadata.folds == (1,)
        and model.metadata.tta.name == "flip"
        and model.metadata.tta.views == ("identity", "hflip")
    )
    graph, _ = build_graph(tiny_run, [1], "flip")
    pixels = _photos(demo_dir, 5)
    with torch.no_grad():
        expected = graph(torch.from_numpy(pixels))[0].numpy()
    assert np.abs(model.predict(pixels)["probs"] - expected).max() < TOLERANCE


def _rewrite_metadata(source, target, change):
    proto = onnx.load(str(source))
    props = {p.key: p.value for p in proto.metadata_props}
    del proto.metadata_props[:]
    props = change(props)
    onnx.helper.set_model_props(proto, props)
    onnx.save(proto, str(target))
    return target


def _with_meta(update=None, drop=None):
    def change(props):
        meta = json.loads(props[METADATA_KEY])
        meta.update(update or {})
        for key in drop or ():
            del meta[key]
        return {**props, METADATA_KEY: json.dumps(meta)}

    return change


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda props: {}, "has no maskcls metadata: it was not written by `maskcls export`"),
        (
            _with_meta({"format_version": 0, "maskcls_version": "0.0.1"}),
            r"exported by maskcls 0.0.1 in model format 0; this maskcls \(.*\) reads format 2 only: "
            "export the run again",
        ),
        (_with_meta(drop=["format_version"]), "in model format None"),
        (_with_meta({"format_version": 99}), "newer than this maskcls .* upgrade maskcls"),
        (_with_meta(drop=["labels"]), "incomplete or damaged \\(field 'labels'"),
        (
            _with_meta(
                {
                    "input": {
                        "name": "pixels",
                        "dtype": "uint8",
                        "layout": "NHWC",
                        "height": 99,
                        "width": 54,
                        "center_crop": 1.0,
                        "face_crop": None,
                    }
                }
            ),
            "does not match its metadata",
        ),
    ],
    ids=["missing", "older", "unversioned", "newer", "incomplete", "mismatched"],
)
def test_old_or_missing_metadata_is_refused(tiny_onnx, tmp_path, change, message):
    damaged = _rewrite_metadata(tiny_onnx, tmp_path / "old.onnx", change)
    with pytest.raises(ExportedModelError, match=message):
        OnnxModel(damaged)
    result = CliRunner().invoke(app, ["predict", "--onnx", str(damaged), str(damaged)])
    assert result.exit_code == 2 and "error:" in result.output and "Traceback" not in result.output


def test_not_an_onnx_file_is_refused(tmp_path):
    bogus = tmp_path / "bogus.onnx"
    bogus.write_text("not a model")
    with pytest.raises(ExportedModelError, match="is not an ONNX model onnxruntime can load"):
        OnnxModel(bogus)
    with pytest.raises(ExportedModelError, match="not found"):
        OnnxModel(tmp_path / "absent.onnx")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--fold", "7"], r"has folds \[0, 1, 2\]; cannot export fold\(s\) \[7\]"),
        (["--fold", "0", "--all-folds"], "not both"),
        (["--tta", "sideways"], "unknown TTA set 'sideways'"),
    ],
)
def test_export_refuses_bad_requests(tiny_run, tmp_path, args, message):
    result = CliRunner().invoke(
        app, ["export", "--run", str(tiny_run), "--out", str(tmp_path / "m.onnx"), *args], env={"COLUMNS": "300"}
    )
    assert result.exit_code == 2, result.output
    assert re.search(message, " ".join(result.output.split())), result.output
    assert not (tmp_path / "m.onnx").exists()


def test_export_refuses_what_is_not_a_k_fold_run(tiny_run, tmp_path):
    result = CliRunner().invoke(app, ["export", "--run", str(tiny_run), "--out", str(tmp_path / "m.txt")])
    assert result.exit_code == 2 and "*.onnx" in result.output
    (tmp_path / "ens").mkdir()
    (tmp_path / "ens" / "ensemble.json").write_text("{}")
    result = CliRunner().invoke(
        app, ["export", "--run", str(tmp_path / "ens"), "--out", str(tmp_path / "m.onnx")], env={"COLUMNS": "300"}
    )
    assert result.exit_code == 2 and "is an ensemble" in result.output
