"""Read one photo safely into an RGB uint8 array, whatever the file holds.

Odd modes (RGBA, palette, CMYK, grayscale, 16-bit) and EXIF rotation are converted; unreadable,
truncated, oversized or decompression-bomb files raise ``ImageError`` with the reason. JPEGs that need
no conversion take the fast path: libjpeg-turbo (simplejpeg) with DCT-domain down-scaling.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import simplejpeg
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never silently grey pixels
_EXIF_ORIENTATION = 0x0112
_IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")


class ImageError(Exception):
    """A photo that cannot be used; ``str(err)`` is the reason, for reports.

    ``kind`` sorts the reasons for callers that answer differently to each (the HTTP service's status
    codes): ``missing``, ``unreadable``, ``empty``, ``too_large``, ``not_image``, ``unsupported``,
    ``corrupt`` or ``bomb``.
    """

    def __init__(self, reason: str, kind: str = "corrupt"):
        super().__init__(reason)
        self.kind = kind


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int = 40_000_000
    max_bytes: int = 50 * 1024 * 1024

    @classmethod
    def from_config(cls, data_cfg) -> ImageLimits:
        return cls(max_pixels=data_cfg.max_image_pixels, max_bytes=int(data_cfg.max_file_mb * 1024 * 1024))


def read_image(path: str | Path, limits: ImageLimits = ImageLimits()) -> np.ndarray:
    """The whole photo as ``(H, W, 3)`` uint8 RGB, upright."""
    return np.asarray(decode_image(read_bytes(path, limits), limits))


def read_resized(
    path: str | Path, size_hw: tuple[int, int], limits: ImageLimits = ImageLimits(), center_crop: float = 1.0
) -> np.ndarray:
    """The photo resized to ``size_hw`` (height, width) as ``(h, w, 3)`` uint8 RGB, upright.

    ``center_crop`` < 1 keeps that centred fraction of the photo's height and width before resizing.
    """
    return decode_resized(read_bytes(path, limits), size_hw, limits, center_crop=center_crop)


def decode_image(
    data: bytes, limits: ImageLimits = ImageLimits(), formats: tuple[str, ...] | None = None
) -> Image.Image:
    """The whole photo in ``data`` as an upright 8-bit RGB image; ``formats`` (Pillow names) limits what is accepted."""
    return _to_rgb(_open_accepted(data, limits, formats))


def decode_resized(
    data: bytes,
    size_hw: tuple[int, int],
    limits: ImageLimits = ImageLimits(),
    formats: tuple[str, ...] | None = None,
    center_crop: float = 1.0,
) -> np.ndarray:
    """``read_resized`` for bytes already in memory (an upload); ``formats`` (Pillow names) limits what is accepted."""
    image = _open_accepted(data, limits, formats)
    height, width = size_hw
    if image.format == "JPEG" and image.mode in ("RGB", "L") and _orientation(image) in (None, 1):
        try:  # libjpeg-turbo scales in the DCT domain down to no less than what the crop and resize need
            pixels = simplejpeg.decode_jpeg(
                data,
                colorspace="RGB",
                min_height=math.ceil(height / center_crop),
                min_width=math.ceil(width / center_crop),
                strict=True,
            )
        except ValueError as err:
            raise ImageError(f"corrupt or truncated JPEG ({err})", "corrupt") from None
        rgb = Image.fromarray(pixels)
    else:
        rgb = _to_rgb(image)
    rgb = crop_center(rgb, center_crop)
    if rgb.size != (width, height):
        rgb = rgb.resize((width, height), Image.Resampling.BILINEAR)
    return np.ascontiguousarray(np.asarray(rgb))


def crop_center(image: Image.Image, fraction: float) -> Image.Image:
    """The centred ``fraction`` of the image's width and height (``data.center_crop``); the image itself at 1."""
    if fraction >= 1.0:
        return image
    width, height = image.size
    keep_w, keep_h = max(1, round(width * fraction)), max(1, round(height * fraction))
    left, top = (width - keep_w) // 2, (height - keep_h) // 2
    return image.crop((left, top, left + keep_w, top + keep_h))


def _open_accepted(data: bytes, limits: ImageLimits, formats: tuple[str, ...] | None) -> Image.Image:
    if not data:
        raise ImageError("empty file (0 bytes)", "empty")
    if len(data) > limits.max_bytes:
        raise ImageError(
            f"file is {len(data) / 2**20:.1f} MB, over the limit of {limits.max_bytes / 2**20:.0f} MB", "too_large"
        )
    image = _open_checked(data, limits)
    if formats is not None and image.format not in formats:
        raise ImageError(f"unsupported image type {image.format}; send one of {', '.join(formats)}", "unsupported")
    return image


def read_bytes(path: str | Path, limits: ImageLimits) -> bytes:
    """The file's bytes, refused with the reason when it is missing, unreadable, empty or over the size limit."""
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise ImageError("file not found", "missing") from None
    except OSError as err:
        raise ImageError(f"cannot read file ({err.strerror})", "unreadable") from None
    if size == 0:
        raise ImageError("empty file (0 bytes)", "empty")
    if size > limits.max_bytes:
        raise ImageError(
            f"file is {size / 2**20:.1f} MB, over the limit of {limits.max_bytes / 2**20:.0f} MB (data.max_file_mb)",
            "too_large",
        )
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise ImageError(f"cannot read file ({err.strerror})", "unreadable") from None


def _open_checked(data: bytes, limits: ImageLimits) -> Image.Image:
    """Open lazily (header only) and refuse sizes that would exhaust memory before decoding them."""
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        if data.startswith(_IMAGE_SIGNATURES):  # a JPEG / PNG whose header was cut short
            raise ImageError("corrupt or truncated image (its header is incomplete)", "corrupt") from None
        raise ImageError("not an image file (format not recognised)", "not_image") from None
    except Image.DecompressionBombError as err:
        raise ImageError(f"decompression bomb refused ({err})", "bomb") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"corrupt or truncated image (cannot read its header: {err})") from None
    width, height = image.size
    if width * height > limits.max_pixels:
        raise ImageError(
            f"decompression bomb refused: {width}x{height} = {width * height:,} pixels is over the limit "
            f"of {limits.max_pixels:,} (data.max_image_pixels)",
            "bomb",
        )
    return image


def _orientation(image: Image.Image) -> int | None:
    try:
        return image.getexif().get(_EXIF_ORIENTATION)
    except Exception:  # a broken EXIF block is not a broken photo
        return None


def _to_rgb(image: Image.Image) -> Image.Image:
    """Decode fully, undo EXIF rotation and convert any mode to 8-bit RGB."""
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
    except Image.DecompressionBombError as err:
        raise ImageError(f"decompression bomb refused ({err})", "bomb") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageError(f"corrupt or truncated image ({err})") from None
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(image, dtype=np.int64)
        scale = 257.0 if values.max(initial=0) > 255 else 1.0
        gray = np.clip(values / scale, 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if mode == "F":
        gray = np.clip(np.asarray(image), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
