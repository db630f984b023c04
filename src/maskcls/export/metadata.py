"""What an exported model says about itself: everything a runtime needs besides the graph, in the ONNX metadata.

One JSON document under the key ``maskcls`` of the model's ``metadata_props``: the input it takes
(uint8 photos at the cache size, how to decode them), the preprocessing inside the graph, the label
schema and thresholds, the TTA set, the source run, the versions. A model without it, or written in
another format version, is refused with what to do, never guessed at. Torch-free.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from ..core.version import __version__
from ..data.framing import FaceCrop, Framing

FORMAT = "maskcls-onnx"
FORMAT_VERSION = 2  # 2: the input records its framing (centre crop, face crop)
METADATA_KEY = "maskcls"
INPUT_NAME = "pixels"
OUTPUT_NAMES = ("probs", "mask", "gender", "age", "fold_probs")


class ExportedModelError(ValueError):
    """An ONNX file this maskcls cannot use as it is; the message says why and what to do."""


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FaceCropSpec(_Part):
    """``data.face_crop`` of the run (``data.framing.FaceCrop``): the runtime crops photos to their face as training
    did."""

    margin: float
    detector: str
    upsample: int
    detect_size: int
    pad: float


class InputSpec(_Part):
    """The graph's input: ``(N, height, width, 3)`` uint8 RGB photos, framed and decoded by ``data.framing.Framer``."""

    name: str = INPUT_NAME
    dtype: Literal["uint8"] = "uint8"
    layout: Literal["NHWC"] = "NHWC"
    height: int
    width: int
    center_crop: float
    face_crop: FaceCropSpec | None
    decode: str = (
        "maskcls.data.framing.Framer: EXIF upright, RGB (alpha on white), the centred center_crop fraction, "
        "the largest face when face_crop is set, bilinear resize to height x width"
    )

    @property
    def framing(self) -> Framing:
        face = FaceCrop(**self.face_crop.model_dump()) if self.face_crop is not None else None
        return Framing(self.center_crop, face)

    @classmethod
    def for_framing(cls, height: int, width: int, framing: Framing) -> InputSpec:
        face = FaceCropSpec(**vars(framing.face)) if framing.face is not None else None
        return cls(height=height, width=width, center_crop=framing.center_crop, face_crop=face)


class PreprocessSpec(_Part):
    """What the graph does to the input before the network (recorded to be read, not to be redone)."""

    image_size: tuple[int, int]
    resize_margin: float
    normalize: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class LabelSpec(_Part):
    age_middle: int
    age_old: int
    mask_names: tuple[str, ...]
    gender_names: tuple[str, ...]
    age_names: tuple[str, str, str]
    class_names: tuple[str, ...]


class TTASpec(_Part):
    name: str
    views: tuple[str, ...]
    merge: str


class ExportMetadata(_Part):
    format: Literal["maskcls-onnx"] = FORMAT
    format_version: int = FORMAT_VERSION
    maskcls_version: str = __version__
    opset: int | None  # None: not exported, the same graph run by PyTorch (``maskcls serve --run``)
    run_id: str
    model_id: str
    architecture: str
    head: str
    folds: tuple[int, ...]
    fallback_class: int
    input: InputSpec
    preprocess: PreprocessSpec
    labels: LabelSpec
    tta: TTASpec
    outputs: tuple[str, ...] = OUTPUT_NAMES
    exported_at: str

    @property
    def cache_hw(self) -> tuple[int, int]:
        return (self.input.height, self.input.width)

    def to_json(self) -> str:
        return self.model_dump_json()


def parse_metadata(props: dict[str, str], source: str) -> ExportMetadata:
    """The metadata of the model at ``source`` (for messages) from its ONNX ``metadata_props``."""
    again = "export the run again with `maskcls export --run RUN --out MODEL.onnx`"
    if METADATA_KEY not in props:
        raise ExportedModelError(
            f"{source} has no maskcls metadata: it was not written by `maskcls export` "
            f"(or its metadata was stripped); {again}"
        )
    try:
        raw = json.loads(props[METADATA_KEY])
    except json.JSONDecodeError as err:
        raise ExportedModelError(f"{source}: its maskcls metadata is not valid JSON ({err}); {again}") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ExportedModelError(f"{source}: its metadata is not in the {FORMAT} format; {again}")
    version, written_by = raw.get("format_version"), raw.get("maskcls_version", "an unknown version")
    if not isinstance(version, int) or version < FORMAT_VERSION:
        raise ExportedModelError(
            f"{source} was exported by maskcls {written_by} in model format {version}; "
            f"this maskcls ({__version__}) reads format {FORMAT_VERSION} only: {again}"
        )
    if version > FORMAT_VERSION:
        raise ExportedModelError(
            f"{source} was exported by maskcls {written_by} in model format {version}, "
            f"newer than this maskcls ({__version__}, format {FORMAT_VERSION}) reads: "
            "upgrade maskcls (pip install -U maskcls)"
        )
    try:
        metadata = ExportMetadata.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        raise ExportedModelError(
            f"{source}: its maskcls metadata is incomplete or damaged (field '{key}': {first['msg']}); {again}"
        ) from None
    if metadata.opset is None:
        raise ExportedModelError(f"{source}: its maskcls metadata is incomplete (no opset); {again}")
    return metadata
