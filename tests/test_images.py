"""Every odd photo kind is converted, every broken one refused with its reason."""

import io

import numpy as np
import pytest
from PIL import Image

from maskcls.data.images import ImageError, ImageLimits, read_image, read_resized


def _photo(width=40, height=30, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, width * height * 3).reshape(height, width, 3)
    return Image.fromarray(np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8))


def _jpeg_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, **kwargs)
    return buffer.getvalue()


def test_plain_jpeg_fast_path_matches_pillow(tmp_path):
    path = tmp_path / "a.jpg"
    _photo(80, 60).save(path, quality=95)
    fast = read_resized(path, (30, 40)).astype(int)
    reference = np.asarray(Image.open(path).convert("RGB").resize((40, 30), Image.Resampling.BILINEAR)).astype(int)
    assert fast.shape == (30, 40, 3)
    assert np.abs(fast - reference).mean() < 4  # JPEG DCT scaling vs full decode: same picture


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"this is not an image", "not an image file"),
        (b"", "empty file"),
    ],
)
def test_unreadable_files_are_refused(tmp_path, content, reason):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=reason):
        read_resized(path, (16, 16))


@pytest.mark.parametrize("fmt, suffix", [("JPEG", ".jpg"), ("PNG", ".png")])
def test_truncated_files_are_refused(tmp_path, fmt, suffix):
    buffer = io.BytesIO()
    _photo(64, 64).save(buffer, format=fmt)
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageError, match="truncated|corrupt"):
        read_resized(path, (16, 16))
    with pytest.raises(ImageError, match="truncated|corrupt"):
        read_image(path)


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        read_image(tmp_path / "nope.jpg")


def test_rgba_is_composited_on_white(tmp_path):
    pixels = np.zeros((10, 10, 4), dtype=np.uint8)
    pixels[..., 0] = 200
    pixels[:5, :, 3] = 255  # top half opaque red, bottom half transparent
    path = tmp_path / "a.png"
    Image.fromarray(pixels, "RGBA").save(path)
    rgb = read_image(path)
    assert rgb.shape == (10, 10, 3)
    assert tuple(rgb[0, 0]) == (200, 0, 0) and tuple(rgb[9, 9]) == (255, 255, 255)


def test_cmyk_jpeg_is_converted(tmp_path):
    path = tmp_path / "cmyk.jpg"
    _photo().convert("CMYK").save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    rgb = read_resized(path, (30, 40))
    assert rgb.shape == (30, 40, 3) and rgb.dtype == np.uint8
    assert np.abs(rgb.astype(int) - np.asarray(_photo()).astype(int)).mean() < 25


def test_grayscale_becomes_three_equal_channels(tmp_path):
    path = tmp_path / "gray.jpg"
    _photo().convert("L").save(path)
    rgb = read_resized(path, (30, 40))
    assert rgb.shape == (30, 40, 3)
    assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])


def test_16_bit_png_is_scaled_to_8_bit(tmp_path):
    path = tmp_path / "deep.png"
    values = np.linspace(0, 65535, 100).astype(np.uint16).reshape(10, 10)
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    rgb = read_image(path)
    assert rgb.shape == (10, 10, 3)
    assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255


def test_exif_rotation_is_applied(tmp_path):
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)  # landscape, bright square at the top-left
    pixels[:6, :6] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    path = tmp_path / "rotated.jpg"
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    rgb = read_image(path)
    assert rgb.shape == (40, 20, 3)  # displayed upright: portrait
    assert rgb[:6, -6:].mean() > 200 and rgb[:6, :6].mean() < 50  # corner moved to the top-right
    assert read_resized(path, (40, 20))[:6, -6:].mean() > 200


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("1", (3000, 3000)).save(path)  # 9 Mpx in a few kB
    with pytest.raises(ImageError, match="decompression bomb"):
        read_resized(path, (16, 16), ImageLimits(max_pixels=1_000_000))


def test_huge_file_is_refused(tmp_path):
    path = tmp_path / "big.jpg"
    _photo(200, 200).save(path)
    with pytest.raises(ImageError, match="over the limit"):
        read_image(path, ImageLimits(max_bytes=1000))
