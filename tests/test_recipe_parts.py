"""Heads, losses, samplers, optimizers and schedules: shapes, values on known inputs, statistics, curves."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from maskcls.core.config import ConfigError, LossConfig, OptimConfig, SchedulerConfig, load_config
from maskcls.core.labels import decode, joint_from_heads
from maskcls.data.loader import EpochSampler, balanced_weights
from maskcls.models.factory import create_model
from maskcls.models.freeze import freeze_stages
from maskcls.models.heads import create_head, split_blocks
from maskcls.training.losses import HeadCriterion, build_loss, class_weights
from maskcls.training.optim import build_optimizer, build_scheduler, step_scheduler

torch.manual_seed(0)
FEATURES = torch.randn(6, 16)
LABELS = torch.tensor([0, 5, 7, 11, 17, 3])


@pytest.mark.parametrize(
    "name, width, task",
    [
        ("linear", 18, "classes"),
        ("msd", 18, "classes"),
        ("three_head", 8, "classes"),
        ("age_classes", 3, "age"),
        ("age_regression", 1, "age"),
    ],
)
def test_head_shapes_and_probabilities(name, width, task):
    head = create_head(name, 16, 0.1).eval()
    logits = head(FEATURES)
    assert logits.shape == (6, width) and head.task == task
    probs = head.probabilities(logits)
    assert probs.shape == (6, 18 if task == "classes" else 3)
    assert torch.allclose(probs.sum(1), torch.ones(6), atol=1e-5)


def test_three_head_probabilities_are_the_product_of_the_heads():
    head = create_head("three_head", 16, 0.0)
    logits = head(FEATURES)
    blocks = split_blocks(head, logits)
    expected = joint_from_heads(*(blocks[k].softmax(1).detach().numpy() for k in ("mask", "gender", "age")))
    assert np.allclose(head.probabilities(logits).detach().numpy(), expected, atol=1e-6)


def test_multi_sample_dropout_averages_k_masks_in_training_only():
    head = create_head("msd", 16, 0.5, samples=4)
    head.eval()
    assert torch.allclose(head(FEATURES), head.fc(FEATURES))
    head.train()
    torch.manual_seed(1)
    averaged = head(FEATURES)
    torch.manual_seed(1)
    singles = torch.stack([head.fc(head.dropout(FEATURES)) for _ in range(4)]).mean(0)
    assert torch.allclose(averaged, singles, atol=1e-6)


def test_age_regression_groups_follow_the_thresholds():
    head = create_head("age_regression", 16, 0.0)
    logits = torch.tensor([[0.25], [0.45], [0.61]])  # 25, 45 and 61 years
    assert head.probabilities(logits).argmax(1).tolist() == [0, 1, 2]


def _soft(labels, smoothing=0.0):
    return F.one_hot(labels, 18).float() * (1 - smoothing) + smoothing / 18


def test_cross_entropy_weights_and_smoothing_match_torch():
    logits = torch.randn(6, 18)
    cfg = LossConfig()
    assert torch.allclose(build_loss("ce", cfg)(logits, _soft(LABELS)), F.cross_entropy(logits, LABELS), atol=1e-6)
    weight = torch.rand(18) + 0.1
    assert torch.allclose(
        build_loss("ce", cfg, weight)(logits, _soft(LABELS)), F.cross_entropy(logits, LABELS, weight=weight), atol=1e-5
    )
    assert torch.allclose(
        build_loss("ce", cfg)(logits, _soft(LABELS, 0.1)),
        F.cross_entropy(logits, LABELS, label_smoothing=0.1),
        atol=1e-5,
    )


def test_focal_loss_known_values():
    logits = torch.randn(6, 18)
    assert torch.allclose(
        build_loss("focal", LossConfig(focal_gamma=0.0))(logits, _soft(LABELS)),
        F.cross_entropy(logits, LABELS),
        atol=1e-6,
    )
    p_true = logits.softmax(1)[torch.arange(6), LABELS]
    expected = (-((1 - p_true) ** 2) * p_true.log()).mean() * 0.25
    assert torch.allclose(
        build_loss("focal", LossConfig(focal_gamma=2.0, focal_alpha=0.25))(logits, _soft(LABELS)), expected, atol=1e-6
    )


def test_soft_f1_loss_and_sums():
    perfect = _soft(LABELS) * 40 - 20
    assert (
        build_loss("soft_f1", LossConfig())(perfect, _soft(LABELS)) < 0.7
    )  # 12 of 18 classes are absent from the batch
    uniform = torch.zeros(6, 18)
    probs = torch.full((6, 18), 1 / 18)
    tp, fp, fn = (
        (probs * _soft(LABELS)).sum(0),
        (probs * (1 - _soft(LABELS))).sum(0),
        ((1 - probs) * _soft(LABELS)).sum(0),
    )
    expected = 1 - (2 * tp / (2 * tp + fp + fn + 1e-7)).mean()
    assert torch.allclose(build_loss("soft_f1", LossConfig())(uniform, _soft(LABELS)), expected, atol=1e-6)
    cfg = LossConfig(component_weights=[1.0, 0.5])
    both = build_loss("ce+soft_f1", cfg)(uniform, _soft(LABELS))
    assert torch.allclose(both, F.cross_entropy(uniform, LABELS) + 0.5 * expected, atol=1e-6)
    with pytest.raises(ValueError, match="unknown loss 'nope'"):
        build_loss("ce+nope", cfg)


def test_three_head_criterion_sums_weighted_per_head_losses():
    head = create_head("three_head", 16, 0.0)
    logits = head(FEATURES)
    cfg = LossConfig(per_head={"age": "focal"}, head_weights={"mask": 2.0})
    criterion = HeadCriterion(head, cfg, np.ones(18))
    mask, gender, age = (torch.as_tensor(t) for t in decode(LABELS.numpy()))
    blocks = split_blocks(head, logits)
    p_age = blocks["age"].softmax(1)[torch.arange(6), age]
    expected = (
        2 * F.cross_entropy(blocks["mask"], mask)
        + F.cross_entropy(blocks["gender"], gender)
        + (-((1 - p_age) ** 2) * p_age.log()).mean()
    )
    assert torch.allclose(criterion(logits, criterion.soft_targets(LABELS)), expected, atol=1e-5)
    with pytest.raises(ValueError, match="loss.per_head names"):
        HeadCriterion(create_head("linear", 16, 0.0), cfg, np.ones(18))


def test_age_regression_loss_ignores_unknown_ages():
    head = create_head("age_regression", 16, 0.0)
    criterion = HeadCriterion(head, LossConfig(), np.ones(18))
    logits = torch.tensor([[0.30], [0.90]])
    ages = torch.tensor([30, -1])
    assert criterion(logits, criterion.soft_targets(torch.tensor([0, 0])), ages).item() == pytest.approx(0.0, abs=1e-7)


def test_balanced_class_weights():
    weights = class_weights(np.array([10, 30, 0] + [20] * 15))
    assert weights[0] == pytest.approx(3 * weights[1]) and weights[2] == weights.max()


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_weighted_sampler_statistics_over_many_draws(alpha):
    labels = np.repeat(np.arange(4), [700, 200, 80, 20])
    sampler = EpochSampler(len(labels), balanced_weights(labels, alpha), seed=3)
    draws = []
    for epoch in range(20):
        sampler.set_epoch(epoch)
        draws.extend(labels[list(sampler)])
    share = np.bincount(draws, minlength=4) / len(draws)
    counts = np.bincount(labels).astype(float)
    expected = counts ** (1 - alpha) / (counts ** (1 - alpha)).sum()
    assert np.allclose(share, expected, atol=0.02), (share, expected)


def test_sampler_is_seeded_per_epoch():
    sampler = EpochSampler(100, seed=7)
    first = list(sampler)
    assert sorted(first) == list(range(100)) and list(sampler) == first
    sampler.set_epoch(1)
    assert list(sampler) != first
    assert len(EpochSampler(100, seed=7, num_samples=98)) == 98


def _lrs(name, epochs=10, steps=10, **options):
    model = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(model, OptimConfig(name="sgd", lr=0.1))
    scheduler = build_scheduler(
        optimizer, SchedulerConfig(name=name, warmup_lr=0.001, min_lr=0.0001, **options), epochs, steps
    )
    rates = [optimizer.param_groups[0]["lr"]]
    for step in range(1, epochs * steps):
        optimizer.step()
        step_scheduler(scheduler, step)
        rates.append(optimizer.param_groups[0]["lr"])
    return np.array(rates)


def test_cosine_with_warmup_curve():
    rates = _lrs("cosine", warmup_epochs=2)
    assert rates[0] == pytest.approx(0.001)
    assert np.all(np.diff(rates[:20]) > 0) and rates[20] == pytest.approx(0.1, rel=1e-3)
    assert np.all(np.diff(rates[20:]) <= 1e-12) and rates[-1] < 0.002


def test_cosine_restarts_linear_step_and_onecycle_curves():
    restarts = _lrs("cosine", warmup_epochs=0, cycles=3)
    drops = np.flatnonzero(np.diff(restarts) > 0.05)
    assert len(drops) == 2  # two jumps back up: three cycles
    linear = _lrs("linear", warmup_epochs=0)
    assert np.allclose(np.diff(linear[5:-5]), np.diff(linear[5:-5]).mean(), rtol=1e-3)
    step = _lrs("step", warmup_epochs=0, decay_epochs=4, decay_rate=0.5)
    assert step[0] == pytest.approx(0.1) and step[45] == pytest.approx(0.05) and step[85] == pytest.approx(0.025)
    onecycle = _lrs("onecycle", warmup_epochs=3)
    assert (
        onecycle.argmax() == pytest.approx(30, abs=1) and onecycle[0] == pytest.approx(0.001) and onecycle[-1] < 0.001
    )


@pytest.mark.parametrize(
    "name, cls",
    [("sgd", "SGD"), ("adam", "Adam"), ("adamw", "AdamW"), ("radam", "RAdam"), ("adamp", "AdamP"), ("sgdp", "SGDP")],
)
def test_every_optimizer_builds_and_steps(name, cls):
    model = create_model(load_config(None, ["model.name=test_resnet", "model.pretrained=none"]).model)
    optimizer = build_optimizer(model, OptimConfig(name=name, lr=0.01))
    assert type(optimizer).__name__ == cls
    if name in ("adamp", "sgdp"):
        assert type(optimizer).__module__.startswith("adamp")
    before = model.head.fc.weight.clone()
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    optimizer.step()
    assert not torch.equal(before, model.head.fc.weight)
    no_decay = [g for g in optimizer.param_groups if g["weight_decay"] == 0]
    assert no_decay and all(p.ndim <= 1 for g in no_decay for p in g["params"])


def test_freeze_stages_fixes_the_stem_and_first_stages_only():
    model = create_model(load_config(None, ["model.name=test_efficientnet", "model.pretrained=none"]).model)
    freeze_stages(model.backbone, 2)  # the stem and blocks.0
    fixed = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert fixed and all(
        name.startswith(("backbone.conv_stem", "backbone.bn1", "backbone.blocks.0.")) for name in fixed
    )
    assert "backbone.conv_stem.weight" in fixed and "backbone.blocks.0.0.conv.weight" in fixed
    optimizer = build_optimizer(model, OptimConfig(name="adamw"))
    trained = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert trained == {id(p) for p in model.parameters() if p.requires_grad}
    with pytest.raises(ValueError, match="whole backbone"):
        freeze_stages(model.backbone, 99)
    with pytest.raises(ValueError, match="does not name its stages"):
        freeze_stages(torch.nn.Linear(2, 2), 1)


def test_sgd_nesterov_flag_and_fused_adamw():
    model = torch.nn.Linear(3, 3)
    assert build_optimizer(model, OptimConfig(name="sgd", nesterov=True)).defaults["nesterov"] is True
    assert build_optimizer(model, OptimConfig(name="sgd", nesterov=False)).defaults["nesterov"] is False
    assert build_optimizer(model, OptimConfig(name="adamw", fused=True)).defaults["fused"] is True


def test_layer_wise_lr_decay_scales_grow_with_depth_and_head_is_full():
    model = create_model(load_config(None, ["model.name=test_efficientnet", "model.pretrained=none"]).model)
    optimizer = build_optimizer(model, OptimConfig(name="adamw", layer_decay=0.5))
    scales = {id(p): g["lr_scale"] for g in optimizer.param_groups for p in g["params"]}
    assert scales[id(model.head.fc.weight)] == 1.0
    stem, last_block = (
        scales[id(model.backbone.conv_stem.weight)],
        scales[id(list(model.backbone.blocks[-1].parameters())[0])],
    )
    assert stem < last_block < 1.0


def test_mixup_with_an_odd_batch_or_a_regression_head_is_refused():
    with pytest.raises(ConfigError, match="batch_size must be even"):
        load_config(None, ["augment.mixup=0.2", "train.batch_size=7"])
    with pytest.raises(ConfigError, match="age_regression"):
        load_config(None, ["augment.cutmix=1.0", "model.head=age_regression"])


def test_centre_crop_mode_blur_and_cutout():
    from maskcls.core.config import AugmentConfig, DataConfig
    from maskcls.data.augment import BatchPreprocess, center_crop

    images = torch.randint(0, 255, (8, 36, 27, 3), dtype=torch.uint8)
    data_cfg = DataConfig(image_size=(32, 24), normalize="inception")
    still = AugmentConfig(crop="center", hflip=0.0, brightness=0.0, contrast=0.0, saturation=0.0)
    expected = center_crop(images.permute(0, 3, 1, 2).float() / 255, (32, 24)) * 2 - 1
    assert torch.allclose(BatchPreprocess(data_cfg, still)(images, train=True), expected, atol=1e-5)
    noisy = AugmentConfig(blur=1.0, cutout=1.0)
    out = BatchPreprocess(data_cfg, noisy)(images, train=True)
    assert out.shape == (8, 3, 32, 24) and torch.isfinite(out).all()


def test_mixup_and_cutmix_give_soft_targets_that_sum_to_one():
    from maskcls.training.module import MaskClassifier

    cfg = load_config(
        None,
        [
            "model.name=test_efficientnet",
            "model.pretrained=none",
            "augment.mixup=0.4",
            "augment.cutmix=1.0",
            "train.batch_size=8",
        ],
    )
    module = MaskClassifier(cfg.to_dict(), [1] * 18)
    images = torch.rand(8, 3, 32, 32)
    mixed, soft = module.mixup(images, LABELS[:6].repeat(2)[:8])
    assert soft.shape == (8, 18) and torch.allclose(soft.sum(1), torch.ones(8))
    assert (soft > 0).sum(1).max() >= 2  # two classes per mixed photo


def test_ema_follows_the_weights_slowly():
    from maskcls.training.module import MaskClassifier

    cfg = load_config(None, ["model.name=test_efficientnet", "model.pretrained=none", "train.ema_decay=0.5"])
    module = MaskClassifier(cfg.to_dict(), [1] * 18)
    before = module.ema.module.head.fc.weight.clone()
    with torch.no_grad():
        module.model.head.fc.weight.add_(1.0)
    module.ema.update(module.model, step=1000)
    after = module.ema.module.head.fc.weight
    assert torch.allclose(after, before + 0.5, atol=1e-5)  # halfway, at decay 0.5
    assert module.eval_model is module.ema.module


def test_compile_option_compiles_in_place_and_keeps_state_dict_names():
    from maskcls.training.module import MaskClassifier

    cfg = load_config(None, ["model.name=test_efficientnet", "model.pretrained=none", "train.compile=true"])
    module = MaskClassifier(cfg.to_dict(), [1] * 18)
    names = list(module.state_dict())
    module.configure_model()
    assert module.model._compiled_call_impl is not None  # torch.compile is lazy: nothing is built until the first step
    assert list(module.state_dict()) == names and not any("_orig_mod" in n for n in names)


def test_a_run_with_frozen_stages_keeps_their_pretrained_weights(demo_dir, tmp_path):
    from conftest import train_tiny
    from safetensors.torch import load_file, save_file

    from maskcls.models.pretrained import create_backbone

    weights = tmp_path / "backbone.safetensors"
    save_file(create_backbone("test_efficientnet", "none").state_dict(), str(weights))
    run = train_tiny(
        demo_dir,
        tmp_path / "run",
        f"model.pretrained={weights}",
        "model.freeze_stages=2",
        "train.epochs=2",
        "cv.train_folds=[0]",
    )
    start, trained = load_file(str(weights)), load_file(str(run / "fold_0" / "model.safetensors"))
    assert torch.equal(trained["backbone.conv_stem.weight"], start["conv_stem.weight"])
    assert torch.equal(trained["backbone.blocks.0.0.conv.weight"], start["blocks.0.0.conv.weight"])
    assert not torch.equal(trained["backbone.blocks.1.0.conv_exp.weight"], start["blocks.1.0.conv_exp.weight"])
