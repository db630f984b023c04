"""Everything is checked at the door: a bad name, backbone, data column or photo is refused before a run
directory is written or a model is run, with the nearest valid choice, and a corrected rerun is not blocked."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from conftest import TINY

from maskcls.core.config import (
    HEAD_NAMES,
    LOSS_NAMES,
    OPTIMIZER_NAMES,
    SCHEDULER_NAMES,
    TTA_NAMES,
    Config,
    ConfigError,
    load_config,
)

# Seconds, not minutes: one fold of two, one epoch, tiny photos.
QUICK = [*TINY, "train.epochs=1", "cv.folds=2", "cv.train_folds=[0]", "data.image_size=[32, 24]"]


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("model.head=linaer", "unknown model.head 'linaer'; did you mean 'linear'?"),
        ("loss.name=focall", "unknown loss 'focall'; did you mean 'focal'?"),
        ("loss.name=ce+soft_f", "unknown loss 'soft_f'; did you mean 'soft_f1'?"),
        ("loss.per_head={age: focl}", "unknown loss 'focl'; did you mean 'focal'?"),
        ("optim.name=adamww", "unknown optim.name 'adamww'; did you mean 'adamw'?"),
        ("scheduler.name=cosin", "unknown scheduler.name 'cosin'; did you mean 'cosine'?"),
        ("tta.name=flipp", "unknown tta.name 'flipp'; did you mean 'flip'?"),
        ("tta.merge=mean_prob", "unknown tta.merge 'mean_prob'; did you mean 'mean_probs'?"),
        ("sampler.name=balance", "unknown sampler.name 'balance'; did you mean 'balanced'?"),
        ("data.on_bad_image=skp", "unknown data.on_bad_image 'skp'; did you mean 'skip'?"),
    ],
)
def test_a_typo_in_a_named_choice_is_refused_when_the_config_is_read(override, words):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    message = str(info.value)
    assert f"config key '{override.split('=')[0]}'" in message and words in message, message
    assert "choose one of" in message and "Value error" not in message


def test_named_choices_are_listed_for_the_reference_and_a_case_slip_is_forgiven():
    assert load_config(None, ["optim.name=AdamW"]).optim.name == "adamw"
    fields = {section: Config.model_fields[section].annotation.model_fields for section in Config.model_fields}
    assert all(field.description for section in fields.values() for field in section.values())
    assert fields["loss"]["name"].json_schema_extra["choices"] == list(LOSS_NAMES)


def test_the_factories_are_keyed_on_exactly_the_config_names():
    import torch

    from maskcls.models.heads import HEADS
    from maskcls.training.losses import LOSSES
    from maskcls.training.optim import build_optimizer, build_scheduler

    assert tuple(HEADS) == HEAD_NAMES
    assert tuple(LOSSES) == LOSS_NAMES
    cfg = Config()
    model = torch.nn.Linear(4, 3)
    for name in OPTIMIZER_NAMES:
        optimizer = build_optimizer(model, cfg.optim.model_copy(update={"name": name, "fused": False}))
        assert isinstance(optimizer, torch.optim.Optimizer), name
    for name in SCHEDULER_NAMES:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        assert build_scheduler(optimizer, cfg.scheduler.model_copy(update={"name": name}), 3, 4) is not None, name
    from maskcls.core.tta import TTA_SETS

    assert tuple(TTA_SETS) == TTA_NAMES


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["model.name=test_efficientnt"], "unknown timm model 'test_efficientnt'; did you mean test_efficientnet"),
        (["model.pretrained=ofline"], "did you mean 'offline'?"),
        (["model.name=hf:/no/such/folder"], "is not a folder"),
    ],
)
def test_check_backbone_names_the_problem(overrides, words):
    from maskcls.models.factory import check_backbone

    with pytest.raises((ValueError, RuntimeError), match=words.replace("(", r"\(").replace("?", r"\?")):
        check_backbone(load_config(None, [*QUICK, *overrides]).model)


def _train(train_dir, out_dir, *overrides):
    from maskcls.training.kfold import train_kfold

    return train_kfold(train_dir, load_config(None, [*QUICK, *overrides]), out_dir, progress=False)


def _assert_nothing_written(out_dir):
    assert not out_dir.exists() or not any(out_dir.iterdir()), sorted(p.name for p in out_dir.iterdir())


def test_bad_recipe_leaves_out_untouched_and_the_corrected_rerun_works(demo_dir, tmp_path):
    from typer.testing import CliRunner

    from maskcls.cli import app

    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["train", "--data", str(demo_dir / "train"), "--out", str(out), "--quiet", "--set", "loss.name=focall"]
    )
    assert result.exit_code != 0 and "did you mean 'focal'" in result.output, result.output
    _assert_nothing_written(out)
    with pytest.raises(ValueError, match="did you mean test_efficientnet"):
        _train(demo_dir / "train", out, "model.name=test_efficientnt")
    _assert_nothing_written(out)
    with pytest.raises(ConfigError, match="loss.per_head"):  # a loss for an output the head does not have
        _train(demo_dir / "train", out, "loss.per_head={age: focal}")
    _assert_nothing_written(out)
    summary = _train(demo_dir / "train", out)  # the corrected rerun, into the same --out
    assert (out / "summary.json").is_file() and summary["folds"]


def test_missing_age_column_is_found_before_out_is_written(train_copy, tmp_path):
    from maskcls.data.layout import DataError

    csv = train_copy / "train.csv"
    good = csv.read_text()
    pd.read_csv(csv).drop(columns=["age"]).to_csv(csv, index=False)
    out = tmp_path / "run"
    with pytest.raises(DataError, match="age"):
        _train(train_copy, out)
    _assert_nothing_written(out)
    csv.write_text(good)
    _train(train_copy, out)
    assert (out / "summary.json").is_file()


@pytest.fixture(scope="module")
def quick_run(demo_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("door") / "run"
    _train(demo_dir / "train", out)
    return out


def test_an_unreadable_eval_photo_is_reported_before_any_model_runs(quick_run, demo_dir, tmp_path, monkeypatch):
    from maskcls.data.layout import DataError
    from maskcls.inference import predict

    eval_dir = tmp_path / "eval"
    shutil.copytree(demo_dir / "eval", eval_dir)
    first = pd.read_csv(eval_dir / "info.csv")["ImageID"][0]
    (eval_dir / "images" / first).write_text("not a photo, only notes")

    def no_models(*args, **kwargs):
        raise AssertionError("a model was loaded before the photos were checked")

    with monkeypatch.context() as patch:
        patch.setattr(predict, "load_run", no_models)
        with pytest.raises(DataError) as info:
            predict.predict_eval(quick_run, eval_dir, out_dir=tmp_path / "out", progress=False)
    assert first in str(info.value) or any(first in p.file for p in info.value.problems)
    assert not (tmp_path / "out").exists()
    submission = predict.predict_eval(
        quick_run, eval_dir, out_dir=tmp_path / "out", on_bad_image="skip", progress=False
    )  # --on-bad-image skip: the row keeps the fallback class and is listed
    assert len(submission) == len(pd.read_csv(eval_dir / "info.csv"))
    assert first in (tmp_path / "out" / "predict_skipped.csv").read_text()


def test_metrics_label_static_files_by_their_mount():
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from maskcls.serve.metrics import MetricsMiddleware, ServiceMetrics
    from maskcls.serve.routes import page

    metrics = ServiceMetrics()
    app = FastAPI()
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.include_router(page.router)
    page.mount_static(app)
    client = TestClient(app)
    for path in ("/", "/static/app.js", "/static/style.css", "/docs", "/nowhere"):
        client.get(path)
    text = metrics.render().decode()
    assert 'route="/static",status="200"} 2.0' in text and 'route="/docs",status="200"' in text
    assert 'route="unmatched",status="404"} 1.0' in text and 'route="unmatched",status="200"' not in text
