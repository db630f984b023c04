"""Decode once: every photo is decoded and resized a single time into a memory-mapped uint8 array.

The cache is keyed by the source files (path, size, mtime), the resolution and the framing
(``data.center_crop``, ``data.face_crop``: see ``framing.py``), so it is rebuilt exactly when one of
them changes. With a face crop, the face boxes are kept in the cache index. Decoding runs in parallel threads
(libjpeg-turbo and Pillow release the GIL). Photos that fail are recorded with their reason in the cache index, so a
rerun reports the same problems without decoding again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.config import DataConfig
from ..core.io import atomic_dir
from ..core.progress import track
from .framing import Framer, Framing
from .images import ImageError, ImageLimits
from .layout import Problem

CACHE_VERSION = 1


class CacheError(RuntimeError):
    """A cache folder that cannot be trusted; the message says how to recover."""


@dataclass
class ImageCache:
    """Decoded photos, one row per manifest row, in the order they were given.

    ``faces`` (face-cropped caches only): per photo the face box used, ``"x0 y0 x1 y1"``, or ``"none"``.
    """

    directory: Path
    image_ids: list[str]
    errors: list[str]
    size_hw: tuple[int, int]
    faces: list[str] | None = None

    def face_found(self) -> np.ndarray | None:
        """Per photo whether a face was found and cropped to (None when the cache is not face-cropped)."""
        return None if self.faces is None else np.array([face not in ("", "none") for face in self.faces])

    @property
    def path(self) -> Path:
        return self.directory / "images.npy"

    def array(self) -> np.ndarray:
        """The ``(N, H, W, 3)`` uint8 pixels, memory-mapped read-only."""
        return np.load(self.path, mmap_mode="r")

    @property
    def nbytes(self) -> int:
        return len(self.image_ids) * self.size_hw[0] * self.size_hw[1] * 3

    def problems(self, paths: list[str]) -> list[Problem]:
        return [Problem(path, error) for path, error in zip(paths, self.errors, strict=False) if error]


def default_cache_root(cache_dir: str | None = None) -> Path:
    """``data.cache_dir``, else ``$MASKCLS_CACHE_DIR``, else ``~/.cache/maskcls``."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    return Path(os.environ.get("MASKCLS_CACHE_DIR", Path.home() / ".cache" / "maskcls")).expanduser()


def cache_directory(
    frame: pd.DataFrame,
    size_hw: tuple[int, int],
    root: str | Path,
    limits: ImageLimits = ImageLimits(),
    framing: Framing = Framing(),
) -> Path:
    """Where the cache of these photos at this size and framing lives (whether or not it is built yet)."""
    size_hw = (int(size_hw[0]), int(size_hw[1]))
    return Path(root) / _cache_key(
        frame["image_id"].astype(str).tolist(), frame["path"].astype(str).tolist(), size_hw, limits, framing
    )


def cache_for(
    frame: pd.DataFrame, data: DataConfig, cache_dir: str | None, progress: bool = True, workers: int = 0
) -> ImageCache:
    """``build_cache`` of ``frame``'s photos as the ``data`` section decodes them: its size, limits and framing,
    under ``cache_dir`` (``default_cache_root``'s default where None)."""
    return build_cache(
        frame[["image_id", "path"]],
        data.cache_hw,
        default_cache_root(cache_dir),
        ImageLimits.from_config(data),
        workers=workers,
        progress=progress,
        framing=Framing.from_config(data),
    )


def build_cache(
    frame: pd.DataFrame,
    size_hw: tuple[int, int],
    root: str | Path,
    limits: ImageLimits = ImageLimits(),
    workers: int = 0,
    progress: bool = True,
    framing: Framing = Framing(),
) -> ImageCache:
    """Cache for the ``image_id``/``path`` rows of ``frame``: reused when valid, otherwise (re)built."""
    size_hw = (int(size_hw[0]), int(size_hw[1]))
    image_ids = frame["image_id"].astype(str).tolist()
    paths = frame["path"].astype(str).tolist()
    directory = cache_directory(frame, size_hw, root, limits, framing)
    if os.environ.get("LOCAL_RANK", "0") != "0":
        _wait_for(directory / "meta.json")  # under DDP, local rank 0 decodes and the other ranks read its cache
    if (directory / "meta.json").exists():
        return _load(directory, image_ids, size_hw)
    workers = workers or os.cpu_count() or 1
    framer = Framer(framing)
    with atomic_dir(directory) as tmp:
        pixels = np.lib.format.open_memmap(
            tmp / "images.npy", mode="w+", dtype=np.uint8, shape=(len(paths), *size_hw, 3)
        )
        errors = [""] * len(paths)
        faces = [""] * len(paths)

        def decode(row: int) -> None:
            try:
                pixels[row], faces[row] = framer.read(paths[row], size_hw, limits)
            except ImageError as err:
                errors[row] = str(err)

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in track(pool.map(decode, range(len(paths))), f"decoding {len(paths)} photos", len(paths), progress):
                pass
        pixels.flush()
        index = pd.DataFrame({"image_id": image_ids, "path": paths, "error": errors})
        if framing.face is not None:
            index["face"] = faces
        index.to_csv(tmp / "index.csv", index=False)
        meta = {
            "version": CACHE_VERSION,
            "size_hw": list(size_hw),
            "count": len(paths),
            "nbytes": len(paths) * size_hw[0] * size_hw[1] * 3,
            "crc32": _crc32(tmp / "images.npy"),
            "decode_seconds": round(time.perf_counter() - started, 2),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    return ImageCache(directory, image_ids, errors, size_hw, faces if framing.face is not None else None)


def _load(directory: Path, image_ids: list[str], size_hw: tuple[int, int]) -> ImageCache:
    recover = f"Delete {directory} (or run `maskcls cache --rebuild`) to decode the photos again."
    try:
        meta = json.loads((directory / "meta.json").read_text())
        index = pd.read_csv(directory / "index.csv", dtype=str, keep_default_na=False)
        array = np.load(directory / "images.npy", mmap_mode="r")
    except (OSError, ValueError, json.JSONDecodeError, pd.errors.ParserError) as err:
        raise CacheError(f"image cache {directory} is unreadable ({err}). {recover}") from None
    expected_shape = (len(image_ids), *size_hw, 3)
    if meta.get("version") != CACHE_VERSION or array.shape != expected_shape or array.dtype != np.uint8:
        raise CacheError(
            f"image cache {directory} does not match its index "
            f"(shape {array.shape}, expected {expected_shape}). {recover}"
        )
    if index["image_id"].tolist() != image_ids:
        raise CacheError(f"image cache {directory} lists other photos than the data set. {recover}")
    if _crc32(directory / "images.npy") != meta.get("crc32"):
        raise CacheError(f"image cache {directory} is corrupt (checksum mismatch). {recover}")
    return ImageCache(
        directory, image_ids, index["error"].tolist(), size_hw, index["face"].tolist() if "face" in index else None
    )


def _wait_for(path: Path, timeout_s: float = 3600.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise CacheError(
                f"waited {timeout_s:.0f} s for local rank 0 to build {path.parent}; run `maskcls cache` first"
            )
        time.sleep(1.0)


def _cache_key(
    image_ids: list[str], paths: list[str], size_hw: tuple[int, int], limits: ImageLimits, framing: Framing
) -> str:
    digest = hashlib.sha256(f"v{CACHE_VERSION}|{size_hw}|{limits}{framing.key}".encode())
    for image_id, path in zip(image_ids, paths, strict=False):
        try:
            stat = os.stat(path)
            signature = f"{stat.st_size}:{stat.st_mtime_ns}"
        except OSError:
            signature = "missing"
        digest.update(f"{image_id}|{os.path.abspath(path)}|{signature}\n".encode())
    return f"{size_hw[0]}x{size_hw[1]}-{digest.hexdigest()[:20]}"


def _crc32(path: Path, chunk: int = 1 << 24) -> int:
    value = 0
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            value = zlib.crc32(block, value)
    return value
