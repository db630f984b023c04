"""Per-photo statistics for data reports, read in one parallel pass over the files.

Size (from the header), brightness and per-channel colour moments (at ``STATS_SIZE``, near the
training resolution), a SHA-1 of the bytes (exact duplicates), and a perceptual hash and the mean colour of the part of
the face a mask never covers (near-duplicates; see ``duplicates.py`` for why only that part).
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imagehash
import numpy as np
import pandas as pd
from PIL import Image

from ..core.progress import track
from ..data.images import ImageError, ImageLimits, read_resized

STATS_SIZE = (128, 128)
# The top of a face photo (hair, eyes, brows) is what masks never cover: hashing it finds the same
# source photo under different masks, where a whole-photo hash mostly sees the mask.
UPPER_SHARE = 0.44
LUMA = np.array([0.299, 0.587, 0.114])
COLUMNS = [
    "path",
    "width",
    "height",
    "brightness",
    "mean_r",
    "mean_g",
    "mean_b",
    "sq_r",
    "sq_g",
    "sq_b",
    "sha1",
    "upper_hash",
    "upper_r",
    "upper_g",
    "upper_b",
    "error",
]


def photo_stats(
    paths: list[str],
    description: str = "photo statistics",
    workers: int = 0,
    progress: bool = True,
    limits: ImageLimits = ImageLimits(),
) -> pd.DataFrame:
    """One row per path (in order); unreadable photos have their reason in ``error`` and no numbers."""
    workers = workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        rows = list(track(pool.map(lambda path: _one_photo(path, limits), paths), description, len(paths), progress))
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.astype({"upper_hash": np.uint64})


def _one_photo(path: str, limits: ImageLimits) -> dict:
    try:
        pixels = read_resized(path, STATS_SIZE, limits)
        with Image.open(path) as image:
            width, height = image.size
        digest = hashlib.sha1(Path(path).read_bytes()).hexdigest()
    except (ImageError, OSError) as err:
        return {"path": path, "upper_hash": 0, "error": str(err) or type(err).__name__}
    values = pixels.reshape(-1, 3).astype(np.float64) / 255.0
    means, squares = values.mean(axis=0), (values**2).mean(axis=0)
    upper = pixels[: max(8, round(STATS_SIZE[0] * UPPER_SHARE))]
    bits = imagehash.phash(Image.fromarray(upper)).hash.flatten()
    upper_colour = upper.reshape(-1, 3).mean(axis=0) / 255.0
    return {
        "path": path,
        "width": width,
        "height": height,
        "brightness": float((values @ LUMA).mean() * 255.0),
        "mean_r": means[0],
        "mean_g": means[1],
        "mean_b": means[2],
        "sq_r": squares[0],
        "sq_g": squares[1],
        "sq_b": squares[2],
        "sha1": digest,
        "upper_hash": int(np.packbits(bits).view(">u8")[0]),
        "upper_r": upper_colour[0],
        "upper_g": upper_colour[1],
        "upper_b": upper_colour[2],
        "error": "",
    }


def channel_moments(stats: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of R, G, B over every pixel of the readable photos (values in 0..1):
    the normalisation constants the photos imply."""
    readable = stats[stats["error"] == ""]
    means = readable[["mean_r", "mean_g", "mean_b"]].to_numpy(dtype=np.float64).mean(axis=0)
    squares = readable[["sq_r", "sq_g", "sq_b"]].to_numpy(dtype=np.float64).mean(axis=0)
    return means, np.sqrt(np.maximum(squares - means**2, 0.0))
