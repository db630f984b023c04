"""data.center_crop and data.face_crop frame every photo a model sees the same way: in the cache of
training and prediction, in the ONNX runtime (recorded in the model's metadata) and in the HTTP service."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from maskcls.core.config import DataConfig
from maskcls.data.cache import build_cache, cache_directory
from maskcls.data.framing import FaceCrop, Framer, Framing
from maskcls.data.images import ImageLimits, decode_resized, read_resized
from maskcls.export.metadata import InputSpec
from maskcls.serve.uploads import Upload, decode_upload

RED, BLUE = (220, 30, 30), (30, 30, 220)


def _target(size=(200, 160)) -> Image.Image:
    """Blue photo with a red centre covering the middle half of its width and height."""
    width, height = size
    image = Image.new("RGB", size, BLUE)
    image.paste(Image.new("RGB", (width // 2, height // 2), RED), (width // 4, height // 4))
    return image


def _encoded(fmt: str) -> bytes:
    buffer = io.BytesIO()
    _target().save(buffer, format=fmt, quality=95)
    return buffer.getvalue()


def _mostly_red(pixels: np.ndarray) -> float:
    red = (pixels[..., 0].astype(int) > 150) & (pixels[..., 2].astype(int) < 100)
    return float(red.mean())


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])  # the libjpeg-turbo fast path and Pillow's
def test_center_crop_keeps_the_middle_of_the_photo(fmt):
    data = _encoded(fmt)
    whole = decode_resized(data, (32, 40))
    middle = decode_resized(data, (32, 40), center_crop=0.5)
    assert middle.shape == whole.shape == (32, 40, 3)
    assert 0.15 < _mostly_red(whole) < 0.35  # a quarter of the photo
    assert _mostly_red(middle) > 0.9


def test_framing_from_config_and_its_cache_key(tmp_path):
    assert Framing.from_config(DataConfig()) == Framing() and Framing().key == ""
    cropped = Framing.from_config(DataConfig(center_crop=0.8, face_crop=True, face_margin=0.3))
    assert cropped == Framing(0.8, FaceCrop(margin=0.3))
    frame = pd.DataFrame({"image_id": ["a"], "path": [str(tmp_path / "a.png")]})
    keys = {
        cache_directory(frame, (32, 32), tmp_path, framing=f)
        for f in (Framing(), Framing(0.8), Framing(0.7), Framing(face=FaceCrop()), cropped)
    }
    assert len(keys) == 5


def test_cache_frames_photos_as_the_config_says(tmp_path):
    _target().save(tmp_path / "photo.png")
    frame = pd.DataFrame({"image_id": ["photo"], "path": [str(tmp_path / "photo.png")]})
    whole = build_cache(frame, (24, 24), tmp_path / "cache", progress=False)
    middle = build_cache(frame, (24, 24), tmp_path / "cache", framing=Framing(0.5), progress=False)
    assert whole.directory != middle.directory and whole.faces is None and middle.faces is None
    assert np.array_equal(middle.array()[0], read_resized(tmp_path / "photo.png", (24, 24), center_crop=0.5))
    assert _mostly_red(middle.array()[0]) > 0.9 > 0.5 > _mostly_red(whole.array()[0])


def test_exported_metadata_carries_the_framing():
    for framing in (
        Framing(),
        Framing(0.75),
        Framing(0.9, FaceCrop(margin=0.2, detector="hog", upsample=0, detect_size=256, pad=0.1)),
    ):
        spec = InputSpec.for_framing(36, 36, framing)
        assert InputSpec.model_validate_json(spec.model_dump_json()).framing == framing


def test_service_frames_uploads_as_the_model_was_trained():
    upload = Upload("photo.jpg", _encoded("JPEG"))
    framed = asyncio.run(decode_upload(upload, (24, 24), ImageLimits(), Framer(Framing(0.5))))
    assert _mostly_red(framed) > 0.9
