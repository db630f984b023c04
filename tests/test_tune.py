"""Optuna search: space checks at the door, a shared study, best.yaml as a full recipe, pruning through Lightning."""

from pathlib import Path

import pytest
import yaml

optuna = pytest.importorskip("optuna")

from maskcls.core.config import RECIPES_DIR, ConfigError, load_config  # noqa: E402
from maskcls.training.kfold import train_kfold  # noqa: E402
from maskcls.training.tune import PruningCallback, load_search_space, suggest_overrides, trial_objective, tune  # noqa: E402

SPACES = RECIPES_DIR / "spaces"
TINY = [
    "model.name=test_efficientnet",
    "model.pretrained=none",
    "data.image_size=[48, 36]",
    "train.epochs=2",
    "cv.folds=2",
    "cv.train_folds=[0]",
    "train.batch_size=32",
    "train.loggers=[csv]",
]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """These models are tiny: on a shared CPU, several torch threads only wait on each other (10x slower)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_space(tmp_path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def test_shipped_example_space_is_valid():
    space = load_search_space(SPACES / "example.yaml")
    assert {"optim.lr", "loss.name", "train.batch_size"} <= set(space)


@pytest.mark.parametrize(
    "text, words",
    [
        (
            "optim.lrr: {type: float, low: 0.001, high: 0.1}",
            ["unknown config key 'optim.lrr'", "did you mean 'optim.lr'"],
        ),
        ("trian.epochs: {type: int, low: 1, high: 3}", ["unknown config key 'trian'", "did you mean 'train'"]),
        ("optim: {type: float, low: 0.001, high: 0.1}", ["'optim' is a section"]),
        ("optim.lr: {type: floot, low: 0.001, high: 0.1}", ["'optim.lr'", "unknown type 'floot'", "categorical"]),
        ("optim.lr: {type: float, low: 0.1, high: 0.1}", ["'optim.lr'", "low (0.1) must be below high (0.1)"]),
        ("train.epochs: {type: int, low: 5, high: 2}", ["'train.epochs'", "low (5) must be below high (2)"]),
        ("optim.lr: {type: float, low: 0.001}", ["'optim.lr'", "needs high"]),
        ("optim.lr: {type: float, low: 0.001, high: 0.1, lg: true}", ["'optim.lr'", "unknown field(s) lg"]),
        ("optim.lr: {type: float, low: 0.0, high: 0.1, log: true}", ["'optim.lr'", "log scale needs low > 0"]),
        ("train.epochs: {type: int, low: 1.5, high: 3}", ["'train.epochs'", "'low' must be an integer"]),
        ("loss.name: {type: categorical, choices: []}", ["'loss.name'", "non-empty list"]),
        ("loss.name: [ce, focal]", ["'loss.name'", "'type'"]),
        ("optim.lr: {type: float, low: -0.1, high: 0.1}", ["'optim.lr'", "value -0.1 is not valid in the recipe"]),
        ("sampler.name: {type: categorical, choices: [random, uniform]}", ["'sampler.name'", "'uniform'"]),
        ("[1, 2]", ["non-empty mapping"]),
    ],
)
def test_bad_search_space_is_rejected_with_the_key_named(tmp_path, text, words):
    with pytest.raises(ConfigError) as info:
        load_search_space(write_space(tmp_path, text))
    for word in words:
        assert word in str(info.value)


def test_list_valued_choice_is_parsed_like_a_set_value(tmp_path):
    space = load_search_space(
        write_space(tmp_path, 'data.image_size: {type: categorical, choices: ["[48, 36]", "64"]}')
    )
    study = optuna.create_study()
    trial = study.ask({"data.image_size": space["data.image_size"]})
    overrides = suggest_overrides(trial, space)
    assert load_config(None, overrides).data.size_hw in ((48, 36), (64, 64))


@pytest.mark.slow
def test_study_is_shared_and_best_yaml_is_the_best_trials_full_recipe(demo_dir, tmp_path):
    space = write_space(
        tmp_path,
        "optim.lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}\n"
        "loss.name: {type: categorical, choices: [ce, focal]}\n",
    )
    first = tune(demo_dir / "train", space, 2, tmp_path / "a", overrides=TINY, seed=0)
    assert (tmp_path / "a" / "study.db").is_file()
    assert first["trials"] == {"COMPLETE": 2}

    # A second process (here: another out_dir) on the same storage continues the same study.
    shared = f"sqlite:///{tmp_path / 'a' / 'study.db'}"
    second = tune(demo_dir / "train", space, 1, tmp_path / "b", overrides=TINY, storage=shared, seed=1)
    assert second["trials"] == {"COMPLETE": 3}
    assert (tmp_path / "b" / "trials" / "trial_2" / "summary.json").is_file()
    study = optuna.load_study(study_name="maskcls", storage=shared)
    assert len(study.trials) == 3

    best = study.best_trial
    assert second["best_trial"] == best.number and second["best_value"] == pytest.approx(best.value)
    assert second["best_params"] == best.params
    reloaded = load_config(second["best_config"])
    assert (
        reloaded.optim.lr == pytest.approx(best.params["optim.lr"]) and reloaded.loss.name == best.params["loss.name"]
    )
    # The full recipe the best trial trained with, not only the searched keys.
    trained_with = load_config(Path(best.user_attrs["run_dir"]) / "config.yaml")
    assert reloaded == trained_with
    assert (reloaded.model.name, reloaded.data.size_hw, reloaded.cv.train_folds) == ("test_efficientnet", (48, 36), [0])
    table = (tmp_path / "b" / "trials.csv").read_text().splitlines()
    assert len(table) == 4 and "params_optim.lr" in table[0]


def test_failing_trial_is_recorded_with_its_message_and_the_study_goes_on(demo_dir, tmp_path):
    # A backbone name is a valid recipe value (any string); timm refuses it only when the trial starts.
    space = write_space(tmp_path, "model.name: {type: categorical, choices: [no_such_net]}")
    result = tune(demo_dir / "train", space, 2, tmp_path / "out", overrides=TINY)
    assert result["trials"] == {"FAIL": 2}
    assert result["best_config"] is None and not (tmp_path / "out" / "best.yaml").exists()
    study = optuna.load_study(study_name="maskcls", storage=f"sqlite:///{tmp_path / 'out' / 'study.db'}")
    assert all("unknown timm model 'no_such_net'" in t.user_attrs["error"] for t in study.trials)
    assert "user_attrs_error" in (tmp_path / "out" / "trials.csv").read_text().splitlines()[0]


def test_a_named_choice_the_recipe_refuses_stops_before_any_trial(demo_dir, tmp_path):
    space = write_space(tmp_path, "loss.name: {type: categorical, choices: [ce, no_such_loss]}")
    with pytest.raises(ValueError, match="unknown loss 'no_such_loss'; choose one of ce, focal, soft_f1"):
        tune(demo_dir / "train", space, 1, tmp_path / "out", overrides=TINY)
    assert not (tmp_path / "out" / "study.db").exists()


def test_missing_training_folder_stops_before_any_trial(tmp_path):
    space = write_space(tmp_path, "optim.lr: {type: float, low: 1.0e-3, high: 1.0e-2}")
    with pytest.raises(ValueError, match="training folder not found"):
        tune(tmp_path / "nowhere", space, 1, tmp_path / "out", overrides=TINY)
    assert not (tmp_path / "out" / "study.db").exists()


class RecordingTrial:
    """Stands in for an Optuna trial: keeps what is reported and prunes when told to."""

    def __init__(self, prune: bool):
        self.prune = prune
        self.reports: list[tuple[float, int]] = []

    def report(self, value: float, step: int) -> None:
        self.reports.append((value, step))

    def should_prune(self) -> bool:
        return self.prune


@pytest.mark.slow
def test_pruning_callback_steps_grow_across_folds(demo_dir, tmp_path):
    trial = RecordingTrial(prune=False)
    cfg = load_config(None, TINY + ["cv.train_folds=[0, 1]"])
    summary = train_kfold(demo_dir / "train", cfg, tmp_path / "run", progress=False, callbacks=[PruningCallback(trial)])
    assert [step for _, step in trial.reports] == [0, 1, 2, 3]
    # What was reported is the validation macro F1: each fold keeps its best epoch's model.
    for fold, reported in zip(summary["folds"], (trial.reports[:2], trial.reports[2:]), strict=False):
        assert fold["macro_f1"] == pytest.approx(max(value for value, _ in reported), abs=1e-6)


@pytest.mark.slow
def test_pruning_callback_stops_a_real_trainer_with_trial_pruned(demo_dir, tmp_path):
    trial = RecordingTrial(prune=True)
    callback = PruningCallback(trial)
    cfg = load_config(None, TINY)
    with pytest.raises(optuna.TrialPruned, match="pruned at step 0"):
        train_kfold(demo_dir / "train", cfg, tmp_path / "run", progress=False, callbacks=[callback])
    assert len(trial.reports) == 1 and callback.pruned_message is not None
    assert not (tmp_path / "run" / "summary.json").exists()


@pytest.mark.slow
def test_pruned_trial_is_recorded_pruned_not_failed(demo_dir, tmp_path):
    space = load_search_space(write_space(tmp_path, "optim.lr: {type: float, low: 1.0e-3, high: 1.0e-2}"))
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=2.0)
    )  # F1 < 2: prune at once
    study.optimize(trial_objective(demo_dir / "train", space, tmp_path / "out", overrides=TINY), n_trials=1)
    (trial,) = study.trials
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert trial.intermediate_values and list(trial.intermediate_values) == [0]
    assert "error" not in trial.user_attrs


def test_sampled_values_reach_the_recipe_with_their_type(tmp_path):
    """Tiny floats print as 1e-06, which YAML would read as a string: overrides must stay numbers."""
    space = load_search_space(
        write_space(
            tmp_path,
            "optim.lr: {type: float, low: 1.0e-6, high: 5.0e-6, log: true}\n"
            "train.batch_size: {type: int, low: 8, high: 16, step: 8}",
        )
    )
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3)).ask()
    overrides = suggest_overrides(trial, space)
    values = {o.split("=")[0]: yaml.safe_load(o.split("=", 1)[1]) for o in overrides}
    assert isinstance(values["optim.lr"], float) and values["optim.lr"] == trial.params["optim.lr"]
    assert isinstance(values["train.batch_size"], int) and values["train.batch_size"] in (8, 16)
    assert load_config(None, overrides).optim.lr == trial.params["optim.lr"]
