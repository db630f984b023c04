"""Typed recipes: YAML files (shipped ones in ``maskcls/recipes/``) plus dotted ``--set key=value`` overrides.

Validated once, at the door: an unknown key is rejected with the nearest valid one, a bad value
with the key and the reason. Everything downstream trusts the ``Config`` it gets.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .labels import AgeThresholds
from .tta import MERGES, TTA_SETS


class ConfigError(ValueError):
    """A recipe or override that cannot be used; the message names the key."""


# The names of every pluggable family, once: the factories in models/ and training/ are keyed on exactly these
# (a test checks it), so a recipe is checked here, when it is read, before any run directory or cache is written.
HEAD_NAMES = ("linear", "msd", "three_head", "mask_classes", "gender_classes", "age_classes", "age_regression")
# ``separate`` is no head of its own: one network per head (mask_classes, gender_classes, age_classes), combined.
HEAD_CHOICES = (*HEAD_NAMES, "separate")
LOSS_NAMES = ("ce", "focal", "soft_f1")
# timm's optimizers (``create_optimizer_v2``), except adamp / sgdp, taken from the ``adamp`` package.
OPTIMIZER_NAMES = (
    "sgd",
    "adam",
    "adamw",
    "nadam",
    "nadamw",
    "radam",
    "adamax",
    "adamp",
    "sgdp",
    "adabelief",
    "adafactor",
    "adagrad",
    "adan",
    "adopt",
    "lamb",
    "lars",
    "laprop",
    "lion",
    "madgrad",
    "novograd",
    "rmsprop",
    "rmsproptf",
    "mars",
)
SCHEDULER_NAMES = ("cosine", "linear", "step", "multistep", "poly", "tanh", "onecycle", "constant")
SAMPLER_NAMES = ("random", "balanced")
TTA_NAMES = tuple(TTA_SETS)


def unknown_choice(what: str, value: object, choices, note: str = "") -> str:
    """``unknown <what> 'x'; did you mean 'y'? choose one of a, b, c`` (the one wording for every named choice)."""
    choices = [str(choice) for choice in choices]
    close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ";"
    return f"unknown {what} '{value}'{hint} choose one of {', '.join(choices)}{note}"


def literal_choices(annotation) -> tuple:
    """The values a ``Literal`` (or a list / optional of one) allows; empty for any other type."""
    if get_origin(annotation) is Literal:
        return get_args(annotation)
    return tuple(choice for arg in get_args(annotation) for choice in literal_choices(arg))


NORMALIZE_PRESETS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    # Mean / std of the competition's 18,900 training photos, as its baseline used them.
    "competition": ((0.548, 0.504, 0.479), (0.237, 0.247, 0.246)),
    "inception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    section: ClassVar[str] = ""

    @field_validator("*", mode="before")
    @classmethod
    def _named_choice(cls, value, info):
        """A value outside a field's named choices is refused with the nearest one (a case slip is forgiven)."""
        choices = literal_choices(cls.model_fields[info.field_name].annotation)
        if not choices:
            return value

        def check(item):
            if not isinstance(item, str) or item in choices:
                return item
            folded = [choice for choice in choices if isinstance(choice, str) and choice.lower() == item.lower()]
            if folded:
                return folded[0]
            raise ValueError(unknown_choice(f"{cls.section}.{info.field_name}", item, choices))

        return [check(item) for item in value] if isinstance(value, list) else check(value)


class LabelsConfig(_Section):
    """The age groups of the label schema: ``< age_middle``, ``age_middle`` to ``age_old - 1``, ``>= age_old``."""

    section: ClassVar[str] = "labels"
    age_middle: int = Field(30, description="Youngest age of the middle group (30-59 in the competition).")
    age_old: int = Field(60, description="Youngest age of the old group, in training and in every score.")
    train_age_old: int | None = Field(
        None,
        description="Youngest age of the old group in the training targets only (teams trained at 58 and were "
        "scored at 60); validation, OOF and every score keep age_old. Empty: age_old.",
    )
    train_age_soft_years: float = Field(
        0.0,
        ge=0.0,
        description="Training targets only: a photo of known age is shared with the neighbouring age group, "
        "sigmoid(years past the cut / this) on the far side (a 29-year-old is not wholly unlike a 30-year-old). "
        "0: hard groups.",
    )

    @model_validator(mode="after")
    def _ordered(self):
        AgeThresholds(self.age_middle, self.age_old)
        if self.train_age_old is not None:
            AgeThresholds(self.age_middle, self.train_age_old)
        return self

    @property
    def thresholds(self) -> AgeThresholds:
        return AgeThresholds(self.age_middle, self.age_old)

    @property
    def training_thresholds(self) -> AgeThresholds:
        """The cuts the training targets are made with (``train_age_old`` when set)."""
        return AgeThresholds(self.age_middle, self.train_age_old or self.age_old)


class DataConfig(_Section):
    """How photos are read, checked, decoded once into the cache and framed."""

    section: ClassVar[str] = "data"
    image_size: int | tuple[int, int] = Field(
        128, description="Network input size in pixels: one number (square) or [height, width]."
    )
    resize_margin: float = Field(
        0.125,
        ge=0.0,
        le=1.0,
        description="Extra share of the input size decoded into the cache, room for random crops.",
    )
    center_crop: float = Field(
        1.0, gt=0.0, le=1.0, description="Share of each photo kept around its centre before resizing (1 keeps all)."
    )
    normalize: str = Field(
        "imagenet",
        description=f"Pixel mean / std preset the network expects ({', '.join(NORMALIZE_PRESETS)}).",
        json_schema_extra={"choices": list(NORMALIZE_PRESETS)},
    )
    on_bad_image: Literal["fail", "skip"] = Field(
        "fail", description="An unreadable photo or bad row: stop before training (fail) or leave it out (skip)."
    )
    max_image_pixels: int = Field(
        40_000_000, gt=0, description="Photos with more pixels are refused (decompression-bomb guard)."
    )
    max_file_mb: float = Field(50.0, gt=0, description="Photo files larger than this many MB are refused.")
    cache_dir: str | None = Field(
        None, description="Folder of the decode-once cache (default: MASKCLS_CACHE_DIR or the user cache)."
    )
    decode_workers: int = Field(0, ge=0, description="Processes decoding photos into the cache (0: one per CPU).")
    loader_workers: int | None = Field(
        None, ge=0, description="DataLoader worker processes (default: chosen from the CPUs and the device)."
    )
    device_cache: Literal["auto", "on", "off"] = Field(
        "auto", description="Keep the decoded photos on the GPU for the whole run (auto: when they fit)."
    )
    device_cache_gb: float = Field(16.0, gt=0, description="Most GPU memory, in GB, the device cache may take.")
    face_crop: bool = Field(False, description="Frame each photo on the detected face instead of its centre.")
    face_margin: float = Field(
        0.4, ge=0.0, le=3.0, description="Margin around a detected face, as a share of its size."
    )
    face_detector: Literal["hog", "cnn", "auto"] = Field(
        "auto", description="dlib face detector: hog (fast, CPU), cnn (accurate, GPU), auto (cnn on a GPU)."
    )
    face_upsample: int = Field(1, ge=0, le=3, description="Times the detector upsamples a photo to find small faces.")
    face_pad: float = Field(
        0.25, ge=0.0, le=1.0, description="Padding added around a photo before detection, for faces at its edge."
    )
    face_detect_size: int = Field(
        320, ge=64, description="Longest side, in pixels, photos are shrunk to for detection."
    )

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
            raise ValueError(unknown_choice("preset", value, NORMALIZE_PRESETS))
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
    """Training-time augmentation; each probability is per photo (mixup / cutmix per batch)."""

    section: ClassVar[str] = "augment"
    crop: Literal["random_resized", "center"] = Field(
        "random_resized",
        description="Training crop: a random part of the photo, resized (random_resized), or its centre.",
    )
    crop_scale: tuple[float, float] = Field((0.6, 1.0), description="Range of the photo's area a random crop covers.")
    crop_ratio: tuple[float, float] = Field(
        (0.75, 1.3333), description="Range of a random crop's width / height ratio."
    )
    hflip: float = Field(0.5, ge=0.0, le=1.0, description="Probability of a horizontal flip.")
    brightness: float = Field(0.2, ge=0.0, description="Colour jitter: most brightness change (share).")
    contrast: float = Field(0.2, ge=0.0, description="Colour jitter: most contrast change (share).")
    saturation: float = Field(0.2, ge=0.0, description="Colour jitter: most saturation change (share).")
    hue: float = Field(0.0, ge=0.0, le=0.5, description="Colour jitter: most hue shift (share of the colour wheel).")
    blur: float = Field(0.0, ge=0.0, le=1.0, description="Probability of a Gaussian blur.")
    blur_sigma: tuple[float, float] = Field((0.1, 1.5), description="Range of the Gaussian blur's sigma, in pixels.")
    cutout: float = Field(0.0, ge=0.0, le=1.0, description="Probability of erasing a random rectangle.")
    motion_blur: float = Field(0.0, ge=0.0, le=1.0, description="Probability of a motion blur (camera shake).")
    motion_blur_kernel: tuple[int, int] = Field(
        (3, 9), description="Range of the motion blur's kernel size, odd pixels."
    )
    downscale: float = Field(
        0.0, ge=0.0, le=1.0, description="Probability of shrinking and re-enlarging the photo (low resolution)."
    )
    downscale_range: tuple[float, float] = Field(
        (0.25, 0.75), description="Range of the scale a downscaled photo is shrunk to."
    )
    jpeg: float = Field(0.0, ge=0.0, le=1.0, description="Probability of JPEG re-compression artefacts.")
    jpeg_quality: tuple[float, float] = Field((15.0, 75.0), description="Range of the JPEG quality used (1-100).")
    mixup: float = Field(0.0, ge=0.0, description="MixUp alpha: blend pairs of photos and their labels (0: off).")
    cutmix: float = Field(0.0, ge=0.0, description="CutMix alpha: paste a patch of one photo into another (0: off).")
    mix_prob: float = Field(1.0, ge=0.0, le=1.0, description="Probability a batch is mixed when mixup / cutmix is on.")

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
    """The network: a backbone (timm, or Hugging Face with ``hf:``) and a head."""

    section: ClassVar[str] = "model"
    name: str = Field(
        "tf_efficientnet_lite0",
        description="Backbone: a timm architecture (timm.list_models()) or hf:<folder or hub id>; checked up front.",
    )
    pretrained: str = Field(
        "offline",
        description="Initial weights: none (random), offline (bundled pip packages), hub (download) or a weights file.",
    )
    head: Literal[HEAD_CHOICES] = Field(
        "linear",
        description="Classifier head: the 18 classes (linear, msd, three_head), one head alone, or separate models.",
    )
    drop_rate: float = Field(0.2, ge=0.0, lt=1.0, description="Dropout before the head.")
    drop_path_rate: float = Field(0.0, ge=0.0, lt=1.0, description="Stochastic depth in the backbone (0: off).")
    msd_samples: int = Field(5, ge=1, description="Dropout samples of the msd (multi-sample dropout) head.")
    channels_last: bool = Field(True, description="Channels-last memory layout (faster convolutions on GPUs).")
    freeze_stages: int = Field(
        0, ge=0, description="Leading layer groups of the backbone (the stem first) whose weights stay fixed."
    )


class LossConfig(_Section):
    """The training loss; several can be summed (``ce+soft_f1``)."""

    section: ClassVar[str] = "loss"
    name: str = Field(
        "ce",
        description=f"Loss ({', '.join(LOSS_NAMES)}), or a sum of them joined by '+' (e.g. focal+soft_f1).",
        json_schema_extra={"choices": list(LOSS_NAMES)},
    )
    focal_gamma: float = Field(2.0, ge=0.0, description="Focal loss: how much easy photos are down-weighted.")
    focal_alpha: float | None = Field(None, gt=0.0, le=1.0, description="Focal loss: overall scale (none: 1).")
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="Share of each target spread over all classes.")
    class_weights: Literal["none", "balanced"] = Field(
        "none", description="Weight classes by inverse frequency (balanced) or not (none)."
    )
    component_weights: list[float] | None = Field(
        None, description="Weights of the summed losses in loss.name, in order (default: 1 each)."
    )
    per_head: dict[str, str] = Field(
        {}, description="A loss per output of a multi-output head, e.g. {age: focal}; others use loss.name."
    )
    head_weights: dict[str, float] = Field({}, description="Weight of each head output's loss, e.g. {age: 2.0}.")

    @field_validator("name")
    @classmethod
    def _known_losses(cls, value):
        return _check_losses("loss.name", value)

    @field_validator("per_head")
    @classmethod
    def _known_head_losses(cls, value):
        return {block: _check_losses(f"loss.per_head.{block}", name) for block, name in value.items()}


def _check_losses(key: str, value: str) -> str:
    for part in str(value).split("+"):
        if part.strip() not in LOSS_NAMES:
            raise ValueError(unknown_choice("loss", part.strip(), LOSS_NAMES, " (or sum them with '+')"))
    return value


class SamplerConfig(_Section):
    """Which photos a training epoch draws."""

    section: ClassVar[str] = "sampler"
    name: Literal[SAMPLER_NAMES] = Field(
        "random", description="random: every photo once per epoch; balanced: rare classes drawn more often."
    )
    alpha: float = Field(1.0, ge=0.0, le=1.0, description="Balanced sampler: 1 draws classes equally, 0 as they occur.")


class OptimConfig(_Section):
    """The optimizer (timm's factory; adamp / sgdp from the adamp package)."""

    section: ClassVar[str] = "optim"
    name: Literal[OPTIMIZER_NAMES] = Field("adamw", description="Optimizer.")
    lr: float = Field(1e-3, gt=0.0, description="Peak learning rate.")
    weight_decay: float = Field(1e-2, ge=0.0, description="Weight decay (not applied to biases and norms).")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="Momentum of SGD-like optimizers.")
    nesterov: bool = Field(True, description="Nesterov momentum for sgd / sgdp.")
    fused: bool | None = Field(None, description="Fused optimizer kernels (default: on CUDA, and Adam(W) on CPU).")
    layer_decay: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="Layer-wise LR decay: each earlier backbone stage learns at this times the next.",
    )
    lr_base_batch: int | None = Field(
        None, ge=1, description="Scale optim.lr linearly with the batch: lr is for batches of this size."
    )


class SchedulerConfig(_Section):
    """The learning-rate schedule, stepped every update, after a linear warmup."""

    section: ClassVar[str] = "scheduler"
    name: Literal[SCHEDULER_NAMES] = Field("cosine", description="Schedule of the learning rate after warmup.")
    warmup_epochs: float = Field(1.0, ge=0.0, description="Epochs of linear warmup from scheduler.warmup_lr.")
    warmup_lr: float = Field(1e-5, ge=0.0, description="Learning rate the warmup starts at.")
    min_lr: float = Field(1e-6, ge=0.0, description="Lowest learning rate the schedule reaches.")
    cycles: int = Field(1, ge=1, description="Cosine: number of cycles (more than 1 restarts it).")
    cycle_mul: float = Field(1.0, gt=0.0, description="Cosine: each cycle is this many times longer than the last.")
    cycle_decay: float = Field(1.0, gt=0.0, description="Cosine: each cycle's peak is this times the last one's.")
    decay_epochs: float = Field(10.0, gt=0.0, description="step: epochs between decays.")
    decay_milestones: list[int] = Field([30, 60], description="multistep: epochs at which the rate decays.")
    decay_rate: float = Field(0.1, gt=0.0, description="step / multistep: factor per decay; poly: the power.")


class TrainConfig(_Section):
    """The training loop (PyTorch Lightning)."""

    section: ClassVar[str] = "train"
    epochs: int = Field(10, ge=1, description="Epochs per fold.")
    batch_size: int = Field(64, ge=1, description="Photos per batch (per device).")
    precision: str = Field(
        "auto", description="Lightning precision, e.g. 32, bf16-mixed, 16-mixed (auto: bf16 on GPUs)."
    )
    early_stopping_patience: int = Field(
        5, ge=0, description="Stop a fold after this many epochs without better validation macro F1 (0: never)."
    )
    grad_clip: float = Field(0.0, ge=0.0, description="Clip the gradient norm to this (0: off).")
    ema_decay: float | None = Field(
        None, gt=0.0, lt=1.0, description="Keep an exponential moving average of the weights with this decay."
    )
    accumulate_grad_batches: int = Field(1, ge=1, description="Batches whose gradients add up to one update.")
    seed: int = Field(42, description="Random seed (each fold adds its number).")
    accelerator: str = Field("auto", description="Lightning accelerator: auto, cpu, gpu, ...")
    devices: int | str = Field("auto", description="Lightning devices: a count, a list such as '0,1', or auto.")
    num_nodes: int = Field(1, ge=1, description="Machines to train on (DDP).")
    strategy: str = Field("auto", description="Lightning strategy: auto, ddp, ...")
    compile: bool = Field(False, description="torch.compile the model.")
    loggers: list[Literal["tensorboard", "csv", "wandb"]] = Field(
        ["tensorboard", "csv"], description="Where training curves are logged."
    )
    wandb_project: str = Field("maskcls", description="Weights & Biases project (with the wandb logger).")
    wandb_offline: bool = Field(False, description="Weights & Biases without a network (sync later).")
    progress_bar: bool = Field(True, description="Show the per-epoch progress bar.")


class TTAConfig(_Section):
    """Test-time augmentation, for out-of-fold and test predictions alike."""

    section: ClassVar[str] = "tta"
    name: Literal[TTA_NAMES] = Field("none", description="Views of each photo predicted and merged.")
    merge: Literal[MERGES] = Field(
        "mean_probs", description="How views are merged: mean of probabilities, or mean of logits."
    )


class CVConfig(_Section):
    """Person-level cross-validation."""

    section: ClassVar[str] = "cv"
    folds: int = Field(5, ge=2, description="Number of folds (all photos of a person share one).")
    seed: int = Field(42, description="Seed of the person -> fold split.")
    train_folds: list[int] | None = Field(None, description="Train only these folds (default: all).")
    folds_file: str | None = Field(
        None, description="A run's folds.csv: reuse its person -> fold split (compare runs on the same folds)."
    )


class Config(_Section):
    labels: LabelsConfig = Field(LabelsConfig(), description="Label schema.")
    data: DataConfig = Field(DataConfig(), description="Reading and decoding photos.")
    augment: AugmentConfig = Field(AugmentConfig(), description="Training augmentation.")
    model: ModelConfig = Field(ModelConfig(), description="Backbone and head.")
    loss: LossConfig = Field(LossConfig(), description="Training loss.")
    sampler: SamplerConfig = Field(SamplerConfig(), description="Epoch sampling.")
    optim: OptimConfig = Field(OptimConfig(), description="Optimizer.")
    scheduler: SchedulerConfig = Field(SchedulerConfig(), description="Learning-rate schedule.")
    train: TrainConfig = Field(TrainConfig(), description="Training loop.")
    tta: TTAConfig = Field(TTAConfig(), description="Test-time augmentation.")
    cv: CVConfig = Field(CVConfig(), description="Cross-validation.")

    @model_validator(mode="after")
    def _consistent(self):
        if (self.augment.mixup or self.augment.cutmix) and self.model.head == "age_regression":
            raise ValueError(
                "augment.mixup / augment.cutmix mix class targets; they cannot be used with model.head=age_regression"
            )
        if (self.augment.mixup or self.augment.cutmix) and self.labels.train_age_soft_years:
            raise ValueError(
                "augment.mixup / augment.cutmix make their own targets from the classes; they cannot be used with "
                "labels.train_age_soft_years"
            )
        if (self.augment.mixup or self.augment.cutmix) and self.train.batch_size % 2:
            raise ValueError("augment.mixup / augment.cutmix pair up photos: train.batch_size must be even")
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
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{source}: config key '{key}': {message} (got {first.get('input')!r})") from None


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
