import pytest

from maskcls.core.config import RECIPES_DIR, ConfigError, load_config

CONFIGS = RECIPES_DIR


def test_default_recipe_is_the_lite0_baseline_file():
    assert load_config(None) == load_config(CONFIGS / "lite0_baseline.yaml")


@pytest.mark.parametrize("recipe", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_loads(recipe):
    load_config(recipe)


def test_issue_override_keys_work_exactly():
    cfg = load_config(None, ["model.name=resnet18", "train.epochs=3", "cv.folds=5", "data.image_size=224"])
    assert (cfg.model.name, cfg.train.epochs, cfg.cv.folds, cfg.data.size_hw) == ("resnet18", 3, 5, (224, 224))


def test_overrides_parse_types_lists_and_nested_values():
    cfg = load_config(None, ["data.image_size=[96, 72]", "labels.age_old=58", "optim.lr=3e-4", "cv.train_folds=[0, 2]"])
    assert cfg.data.size_hw == (96, 72)
    assert cfg.labels.thresholds.old == 58
    assert cfg.optim.lr == pytest.approx(3e-4)
    assert cfg.cv.train_folds == [0, 2]


@pytest.mark.parametrize(
    "override, key, nearest",
    [
        ("train.epoch=3", "'train.epoch'", "'train.epochs'"),
        ("model.nmae=x", "'model.nmae'", "'model.name'"),
        ("epochs=3", "'epochs'", "'train.epochs'"),
        ("trian.epochs=3", "'trian'", "'train'"),
    ],
)
def test_unknown_key_names_the_key_and_the_nearest_valid_one(override, key, nearest):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    message = str(info.value)
    assert f"unknown config key {key}" in message and f"did you mean {nearest}" in message


def test_unknown_key_in_a_yaml_file(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  batch_szie: 8\n")
    with pytest.raises(ConfigError, match="train.batch_szie.*train.batch_size"):
        load_config(recipe)


@pytest.mark.parametrize(
    "override, words",
    [
        ("train.epochs=abc", "train.epochs"),
        ("train.epochs=0", "train.epochs"),
        ("data.on_bad_image=ignore", "data.on_bad_image"),
        ("data.normalize=mine", "unknown preset"),
        ("labels.age_old=20", "thresholds"),
        ("cv.train_folds=[7]", "fold 7"),
        ("train.epochs", "key=value"),
    ],
)
def test_bad_values_say_which_key_and_why(override, words):
    with pytest.raises(ConfigError, match=words.replace(".", r"\.")):
        load_config(None, [override])


def test_missing_and_malformed_recipe_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listed)
