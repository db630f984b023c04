"""Typed recipes: YAML files (shipped ones in ``maskcls/recipes/``) plus dotted ``--set key=value`` overrides.

Validated once, at the door: an unknown key is rejected with the nearest valid one, a bad value
with the key and the reason. Everything downstream trusts the ``Config`` it gets.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .labels import AgeThresholds


class ConfigError(ValueError):
    """A recipe or override that cannot be used; the message names the key."""


NORMALIZE_PRESETS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    # Mean / std of the competition's 18,900 training photos, as its baseline used them.
    "competition": ((0.548, 0.504, 0.479), (0.237, 0.247, 0.246)),
    "inception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LabelsConfig(_Section):
    age_middle: int = 30
    age_old: int = 60

    @model_validator(mode="after")
    def _ordered(self):
        AgeThresholds(self.age_middle, self.age_old)
        return self

    @property
    def thresholds(self) -> AgeThresholds:
        return AgeThresholds(self.age_middle, self.age_old)


class DataConfig(_Section):
    image_size: int | tuple[int, int] = 128
    resize_margin: float = Field(0.125, ge=0.0, le=1.0)
    center_crop: float = Field(1.0, gt=0.0, le=1.0)
    normalize: str = "imagenet"
    on_bad_image: Literal["fail", "skip"] = "fail"
    max_image_pixels: int = Field(40_000_000, gt=0)
    max_file_mb: float = Field(50.0, gt=0)
    cache_dir: str | None = None
    decode_workers: int = Field(0, ge=0)
    loader_workers: int | None = Field(None, ge=0)
    device_cache: Literal["auto", "on", "off"] = "auto"
    device_cache_gb: float = Field(16.0, gt=0)
    face_crop: bool = False
    face_margin: float = Field(0.4, ge=0.0, le=3.0)
    face_detector: Literal["hog", "cnn", "auto"] = "auto"
    face_upsample: int = Field(1, ge=0, le=3)
    face_pad: float = Field(0.25, ge=0.0, le=1.0)
    face_detect_size: int = Field(320, ge=64)

    @field_validator("image_size")
    @classmethod
    def _positive_size(cls, value):
        sizes = (value,) if isinstance(value, int) else value
        if any(s < 8 for s in sizes):
            raise ValueError("image sizes must be at least 8 pixels")
        return value

    @field_validator("normalize")
    @classmethod
    def _known_preset(cls, value):
        if value not in NORMALIZE_PRESETS:
            raise ValueError(f"unknown preset '{value}', choose one of {sorted(NORMALIZE_PRESETS)}")
        return value

    @property
    def size_hw(self) -> tuple[int, int]:
        """Training input size as (height, width)."""
        return (self.image_size, self.image_size) if isinstance(self.image_size, int) else tuple(self.image_size)

    @property
    def cache_hw(self) -> tuple[int, int]:
        """Size images are decoded to once: the input size plus a margin for random crops."""
        return tuple(round(s * (1 + self.resize_margin)) for s in self.size_hw)

    @property
    def mean_std(self):
        return NORMALIZE_PRESETS[self.normalize]


class AugmentConfig(_Section):
    crop: Literal["random_resized", "center"] = "random_resized"
    crop_scale: tuple[float, float] = (0.6, 1.0)
    crop_ratio: tuple[float, float] = (0.75, 1.3333)
    hflip: float = Field(0.5, ge=0.0, le=1.0)
    brightness: float = Field(0.2, ge=0.0)
    contrast: float = Field(0.2, ge=0.0)
    saturation: float = Field(0.2, ge=0.0)
    hue: float = Field(0.0, ge=0.0, le=0.5)
    blur: float = Field(0.0, ge=0.0, le=1.0)
    blur_sigma: tuple[float, float] = (0.1, 1.5)
    cutout: float = Field(0.0, ge=0.0, le=1.0)
    motion_blur: float = Field(0.0, ge=0.0, le=1.0)
    motion_blur_kernel: tuple[int, int] = (3, 9)
    downscale: float = Field(0.0, ge=0.0, le=1.0)
    downscale_range: tuple[float, float] = (0.25, 0.75)
    jpeg: float = Field(0.0, ge=0.0, le=1.0)
    jpeg_quality: tuple[float, float] = (15.0, 75.0)
    mixup: float = Field(0.0, ge=0.0)
    cutmix: float = Field(0.0, ge=0.0)
    mix_prob: float = Field(1.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _robustness_ranges(self):
        low, high = self.downscale_range
        if not 0 < low <= high <= 1:
            raise ValueError(
                f"augment.downscale_range must satisfy 0 < low <= high <= 1, got {list(self.downscale_range)}"
            )
        low, high = self.jpeg_quality
        if not 1 <= low <= high <= 100:
            raise ValueError(
                f"augment.jpeg_quality must satisfy 1 <= low <= high <= 100, got {list(self.jpeg_quality)}"
            )
        low, high = self.motion_blur_kernel
        if not (3 <= low <= high and low % 2 and high % 2):
            raise ValueError(
                f"augment.motion_blur_kernel must be odd sizes >= 3 (low <= high), got {list(self.motion_blur_kernel)}"
            )
        return self


class ModelConfig(_Section):
    name: str = "tf_efficientnet_lite0"
    pretrained: str = "offline"
    head: str = "linear"
    drop_rate: float = Field(0.2, ge=0.0, lt=1.0)
    drop_path_rate: float = Field(0.0, ge=0.0, lt=1.0)
    msd_samples: int = Field(5, ge=1)
    channels_last: bool = True
    freeze_stages: int = Field(0, ge=0)  # leading layer groups (the stem first) whose weights stay fixed


class LossConfig(_Section):
    name: str = "ce"
    focal_gamma: float = Field(2.0, ge=0.0)
    focal_alpha: float | None = Field(None, gt=0.0, le=1.0)
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    class_weights: Literal["none", "balanced"] = "none"
    component_weights: list[float] | None = None
    per_head: dict[str, str] = {}
    head_weights: dict[str, float] = {}


class SamplerConfig(_Section):
    name: Literal["random", "balanced"] = "random"
    alpha: float = Field(1.0, ge=0.0, le=1.0)


class OptimConfig(_Section):
    name: str = "adamw"
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(1e-2, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = True
    fused: bool | None = None
    layer_decay: float | None = Field(None, gt=0.0, le=1.0)
    lr_base_batch: int | None = Field(None, ge=1)


class SchedulerConfig(_Section):
    name: Literal["cosine", "linear", "step", "multistep", "poly", "tanh", "onecycle", "constant"] = "cosine"
    warmup_epochs: float = Field(1.0, ge=0.0)
    warmup_lr: float = Field(1e-5, ge=0.0)
    min_lr: float = Field(1e-6, ge=0.0)
    cycles: int = Field(1, ge=1)
    cycle_mul: float = Field(1.0, gt=0.0)
    cycle_decay: float = Field(1.0, gt=0.0)
    decay_epochs: float = Field(10.0, gt=0.0)
    decay_milestones: list[int] = [30, 60]
    decay_rate: float = Field(0.1, gt=0.0)


class TrainConfig(_Section):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=1)
    precision: str = "auto"
    early_stopping_patience: int = Field(5, ge=0)
    grad_clip: float = Field(0.0, ge=0.0)
    ema_decay: float | None = Field(None, gt=0.0, lt=1.0)
    accumulate_grad_batches: int = Field(1, ge=1)
    seed: int = 42
    accelerator: str = "auto"
    devices: int | str = "auto"
    num_nodes: int = Field(1, ge=1)
    strategy: str = "auto"
    compile: bool = False
    loggers: list[Literal["tensorboard", "csv", "wandb"]] = ["tensorboard", "csv"]
    wandb_project: str = "maskcls"
    wandb_offline: bool = False
    progress_bar: bool = True


class TTAConfig(_Section):
    name: str = "none"
    merge: Literal["mean_probs", "mean_logits"] = "mean_probs"


class CVConfig(_Section):
    folds: int = Field(5, ge=2)
    seed: int = 42
    train_folds: list[int] | None = None
    folds_file: str | None = None  # a run's folds.csv: reuse its person -> fold split (compare runs on the same folds)


class Config(_Section):
    labels: LabelsConfig = LabelsConfig()
    data: DataConfig = DataConfig()
    augment: AugmentConfig = AugmentConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    sampler: SamplerConfig = SamplerConfig()
    optim: OptimConfig = OptimConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    train: TrainConfig = TrainConfig()
    tta: TTAConfig = TTAConfig()
    cv: CVConfig = CVConfig()

    @model_validator(mode="after")
    def _consistent(self):
        if (self.augment.mixup or self.augment.cutmix) and self.model.head == "age_regression":
            raise ValueError(
                "augment.mixup / augment.cutmix mix class targets; they cannot be used with model.head=age_regression"
            )
        if (self.augment.mixup or self.augment.cutmix) and self.train.batch_size % 2:
            raise ValueError("augment.mixup / augment.cutmix pair up photos: train.batch_size must be even")
        from .tta import TTA_SETS

        if self.tta.name not in TTA_SETS:
            raise ValueError(f"unknown tta.name '{self.tta.name}'; choose one of {sorted(TTA_SETS)}")
        return self

    @model_validator(mode="after")
    def _folds_in_range(self):
        for fold in self.cv.train_folds or []:
            if not 0 <= fold < self.cv.folds:
                raise ValueError(f"cv.train_folds has fold {fold}, but folds are 0..{self.cv.folds - 1}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"


def recipe_names() -> list[str]:
    """The recipes shipped with the package (``maskcls/recipes/*.yaml``), by name."""
    return sorted(path.stem for path in RECIPES_DIR.glob("*.yaml"))


def resolve_recipe(path_or_name: str | Path) -> Path:
    """A recipe file: an existing path as given, else a shipped recipe by name (``lite0_baseline``, with or
    without ``.yaml``; ``configs/lite0_baseline.yaml`` from older docs finds it too)."""
    path = Path(path_or_name)
    if path.is_file():
        return path
    shipped = RECIPES_DIR / (path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml")
    if shipped.is_file() and (len(path.parts) == 1 or path.parent.name == "configs"):
        return shipped
    close = difflib.get_close_matches(path.stem, recipe_names(), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else f"; shipped recipes: {', '.join(recipe_names())}"
    raise ConfigError(f"config file not found: {path} (neither a file nor a shipped recipe name{hint})")


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML recipe (a file, or a shipped recipe by name; the defaults when ``path`` is None) and apply
    ``key=value`` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        path = resolve_recipe(path)
        data = read_yaml(path, "config file") or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a recipe must be a mapping of sections, got {type(data).__name__}")
    for override in overrides:
        _apply_override(data, override)
    return config_from_dict(data, source=str(path) if path else "overrides")


def read_yaml(path: str | Path, what: str = "file") -> Any:
    """A YAML file's content; a missing file or a syntax error is a ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None


def config_from_dict(data: dict[str, Any], source: str = "config") -> Config:
    """Validate a nested dict into a ``Config`` with messages that name the key."""
    reject_unknown_keys(data, Config, prefix="")
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise ConfigError(f"{source}: config key '{key}': {first['msg']} (got {first.get('input')!r})") from None


def valid_keys(model_cls: type[BaseModel] = Config, prefix: str = "") -> list[str]:
    """All dotted keys a recipe may set, e.g. ``train.epochs``."""
    keys = []
    for name, field in model_cls.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys.extend(valid_keys(annotation, f"{prefix}{name}."))
        else:
            keys.append(f"{prefix}{name}")
    return keys


def _apply_override(data: dict[str, Any], override: str) -> None:
    key, sep, raw_value = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override '{override}' must look like key=value, e.g. train.epochs=3")
    try:
        value = yaml.safe_load(raw_value) if raw_value.strip() else ""
    except yaml.YAMLError:
        value = raw_value
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override '{override}': '{part}' is a value, not a section")
        node = child
    node[parts[-1]] = value


def reject_unknown_keys(data: Any, model_cls: type[BaseModel], prefix: str) -> None:
    if not isinstance(data, dict):
        return
    for key, value in data.items():
        field = model_cls.model_fields.get(key)
        if field is None:
            raise ConfigError(_unknown_key_message(f"{prefix}{key}", model_cls, prefix))
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if not isinstance(value, dict):
                raise ConfigError(
                    f"config key '{prefix}{key}' is a section; set its keys, e.g. {prefix}{key}.<name>=..."
                )
            reject_unknown_keys(value, annotation, f"{prefix}{key}.")


def _unknown_key_message(key: str, model_cls: type[BaseModel], prefix: str) -> str:
    everywhere = valid_keys()
    here = [prefix + name for name in model_cls.model_fields]
    leaf = key.rsplit(".", 1)[-1]
    match = (
        difflib.get_close_matches(key, here, n=1, cutoff=0.6)
        or difflib.get_close_matches(key, everywhere, n=1, cutoff=0.6)
        or [k for k in everywhere if k.rsplit(".", 1)[-1] == leaf][:1]
        or difflib.get_close_matches(key, everywhere, n=1, cutoff=0.0)
    )
    return f"unknown config key '{key}'; did you mean '{match[0]}'?"
