"""How a photo is framed before it is resized: a centred part of it (``data.center_crop``), then, with
``data.face_crop``, its largest face grown by a margin.

Everything that shows photos to a model frames them through ``Framer`` — the decode-once cache of
training and prediction, the ONNX runtime, the HTTP service — so a model always sees photos framed
the way it was trained. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .images import ImageLimits, crop_center, decode_image, decode_resized, read_bytes

NO_FACE = "none"


@dataclass(frozen=True)
class FaceCrop:
    """Cut each photo to its largest face, grown by ``margin`` x the face size on every side, before resizing.

    Faces are looked for in a copy of at most ``detect_size`` pixels on its longer side, with a black
    border of ``pad`` x its longer side (faces cut by the frame are found more often; see README
    "Face detection" for the detectors); where none is found the whole photo is used.
    """

    margin: float = 0.4
    detector: str = "auto"
    upsample: int = 1
    detect_size: int = 320
    pad: float = 0.25

    @classmethod
    def from_config(cls, data_cfg) -> FaceCrop | None:
        if not data_cfg.face_crop:
            return None
        return cls(
            data_cfg.face_margin,
            data_cfg.face_detector,
            data_cfg.face_upsample,
            data_cfg.face_detect_size,
            data_cfg.face_pad,
        )


@dataclass(frozen=True)
class Framing:
    """The centred fraction of the photo kept (1 = all of it), then the face crop (None = none)."""

    center_crop: float = 1.0
    face: FaceCrop | None = None

    @classmethod
    def from_config(cls, data_cfg) -> Framing:
        return cls(float(data_cfg.center_crop), FaceCrop.from_config(data_cfg))

    @property
    def key(self) -> str:
        """This framing in a cache key; empty for whole photos, so caches made before framing existed keep their
        keys."""
        face = f"|{self.face}" if self.face is not None else ""
        centre = f"|center_crop={self.center_crop}" if self.center_crop < 1.0 else ""
        return face + centre


class Framer:
    """Decodes photos framed as ``framing`` says; thread-safe (the face detector serialises itself)."""

    def __init__(self, framing: Framing = Framing()):
        self.framing = framing
        self.finder = None
        if framing.face is not None:
            from .faces import FaceFinder  # dlib: the synth extra

            self.finder = FaceFinder(
                framing.face.detector, framing.face.upsample, landmarks=False, pad=framing.face.pad
            )

    def read(
        self, path: str | Path, size_hw: tuple[int, int], limits: ImageLimits = ImageLimits()
    ) -> tuple[np.ndarray, str]:
        return self.decode(read_bytes(path, limits), size_hw, limits)

    def decode(
        self,
        data: bytes,
        size_hw: tuple[int, int],
        limits: ImageLimits = ImageLimits(),
        formats: tuple[str, ...] | None = None,
    ) -> tuple[np.ndarray, str]:
        """``(h, w, 3)`` uint8 pixels and the face box used: ``"x0 y0 x1 y1"`` in the centre-cropped photo,
        ``"none"`` where no face was found (the whole photo is used), ``""`` without face crop."""
        if self.finder is None:
            return decode_resized(data, size_hw, limits, formats, self.framing.center_crop), ""
        image = crop_center(decode_image(data, limits, formats), self.framing.center_crop)
        return _face_cropped(image, size_hw, self.framing.face, self.finder)


def _face_cropped(image: Image.Image, size_hw: tuple[int, int], crop: FaceCrop, finder) -> tuple[np.ndarray, str]:
    """The image cut to its largest face (grown by the margin, widened to the output's aspect) and resized; and the
    box."""
    scale = min(1.0, crop.detect_size / max(image.size))
    small = (
        image
        if scale == 1.0
        else image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.BILINEAR
        )
    )
    found = finder.find(np.asarray(small))
    height, width = size_hw
    if not found:
        return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR)), NO_FACE
    x0, y0, x1, y1 = (value / scale for value in found[0].box)
    centre_x, centre_y = (x0 + x1) / 2, (y0 + y1) / 2
    half_w, half_h = (x1 - x0) * (0.5 + crop.margin), (y1 - y0) * (0.5 + crop.margin)
    if half_h / half_w < height / width:
        half_h = half_w * height / width
    else:
        half_w = half_h * width / height
    # keep the box inside the photo where it fits; a box larger than the photo is padded with black
    centre_x = min(max(centre_x, half_w), image.width - half_w) if 2 * half_w <= image.width else image.width / 2
    centre_y = min(max(centre_y, half_h), image.height - half_h) if 2 * half_h <= image.height else image.height / 2
    box = tuple(round(v) for v in (centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h))
    face = image.crop(box).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(face), " ".join(str(round(v)) for v in (x0, y0, x1, y1))
