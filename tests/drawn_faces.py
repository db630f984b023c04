"""Faces drawn for the synthesis tests: a cartoon face and its 68 landmarks (iBUG 300-W order), no detector needed."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def drawn_landmarks(size: int = 128, yaw: float = 0.0) -> np.ndarray:
    """68 landmarks of a frontal face filling a ``size`` square; ``yaw`` > 0 foreshortens the photo's right half."""
    k = size / 128
    cx, cy, rx, ry = 64, 54, 44, 54
    theta = np.pi - np.arange(17) * np.pi / 16
    jaw = np.stack([cx + rx * np.cos(theta), cy + ry * np.sin(theta)], axis=1)
    brows = np.array(
        [[30 + 7 * i, 40 - 2 * min(i, 4 - i)] for i in range(5)]
        + [[70 + 7 * i, 40 - 2 * min(i, 4 - i)] for i in range(5)],
        dtype=float,
    )
    nose = np.array(
        [[64, 48], [64, 56], [64, 64], [64, 72], [56, 77], [60, 78], [64, 79], [68, 78], [72, 77]], dtype=float
    )
    angles = np.array([180, 135, 45, 0, -45, -135]) * np.pi / 180
    eyes = np.concatenate([np.stack([x + 7 * np.cos(angles), 52 - 3 * np.sin(angles)], axis=1) for x in (46, 82)])
    outer = np.array(
        [
            [48, 91],
            [53, 87],
            [59, 85],
            [64, 86],
            [69, 85],
            [75, 87],
            [80, 91],
            [75, 95],
            [69, 97],
            [64, 98],
            [59, 97],
            [53, 95],
        ],
        dtype=float,
    )
    inner = np.array([[52, 91], [58, 89], [64, 89], [70, 89], [76, 91], [70, 93], [64, 93], [58, 93]], dtype=float)
    points = np.concatenate([jaw, brows, nose, eyes, outer, inner])
    if yaw:
        right = points[:, 0] > cx
        points[right, 0] = cx + (points[right, 0] - cx) * (1 - yaw)
        points[~right, 0] = cx + (points[~right, 0] - cx) * (1 + 0.3 * yaw)
    return points * k


def drawn_face(size: int = 128, yaw: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A cartoon face photo and its landmarks."""
    rng = np.random.default_rng(seed)
    landmarks = drawn_landmarks(size, yaw)
    image = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(60, 200, 3)))
    draw = ImageDraw.Draw(image)
    jaw = [tuple(p) for p in landmarks[:17]]
    top = [(landmarks[16][0], landmarks[16][1] - 50 * size / 128), (landmarks[0][0], landmarks[0][1] - 50 * size / 128)]
    draw.polygon(jaw + top, fill=(205, 160, 130))
    for eye in (landmarks[36:42], landmarks[42:48]):
        draw.polygon([tuple(p) for p in eye], fill=(40, 30, 30))
    draw.polygon([tuple(p) for p in landmarks[48:60]], fill=(170, 70, 70))
    draw.line([tuple(p) for p in landmarks[27:31]], fill=(150, 110, 90), width=2)
    return np.asarray(image), landmarks


def noise_photo(size: int = 96, seed: int = 0) -> np.ndarray:
    """A photo with no face in it."""
    return np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
