"""Draw a face mask onto a photo, fitted to the face's 68 landmarks (numpy + Pillow only).

The mask is a surface patch with coordinates ``(s, t)`` in [0, 1]^2 (s: the wearer's right to left
as seen in the photo, t: top to bottom). Its four edges are curves built from the landmarks for the
wear mode: the top edge runs from the cheeks over the nose bridge (correct wear) or under the nose,
the bottom edge follows the jaw line below the chin; the inside is a Coons patch between them. Each
half is sampled separately, so the nose and the chin sit at ``s = 0.5`` whatever the head's yaw:
a turned head compresses the far half of the mask, which is the perspective of the real thing.

The patch is rasterised with 2x2 supersampling; every sub-pixel gets its ``(s, t)``, and the look is
a function of them: the kind's outline (pleated rectangle, rounded cloth, KF94 boat, N95 cup),
colour or pattern, pleats, seams, nose clip, edge darkening and wrap-around shading, a fold shadow
along the nose, shading from the yaw estimate, the photo's own lighting, and a little noise. Ear
loops (or N95 head straps) are drawn where that side of the head faces the camera. A user template
(an image + six anchor points, see ``load_templates``) replaces the procedural look.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

KINDS = ("surgical", "cloth", "kf94", "n95")
WEAR_MODES = ("correct", "nose_exposed", "chin", "mouth_only")
INCORRECT_MODES = {"nose_exposed": 0.5, "chin": 0.3, "mouth_only": 0.2}  # how often each wrong wear is drawn
PATTERNS = ("solid", "stripes", "dots", "checks", "flowers")
COLOURS = {
    "surgical": {"white": (232, 236, 238), "blue": (122, 176, 214), "green": (126, 194, 170), "black": (40, 40, 44)},
    "cloth": {
        "black": (34, 34, 38),
        "navy": (38, 52, 92),
        "grey": (128, 130, 134),
        "red": (170, 40, 48),
        "pink": (226, 150, 170),
        "beige": (214, 196, 168),
        "denim": (78, 104, 140),
        "olive": (104, 110, 62),
        "white": (236, 234, 228),
    },
    "kf94": {"white": (238, 238, 236), "black": (36, 36, 40), "grey": (150, 152, 156), "beige": (222, 206, 182)},
    "n95": {"white": (236, 234, 226), "grey": (206, 206, 200)},
}
ANCHOR_NAMES = ("top_left", "top_middle", "top_right", "bottom_left", "bottom_middle", "bottom_right")
SUPERSAMPLE = 2


class TemplateError(ValueError):
    """A mask template folder or YAML that cannot be used; the message names the file."""


@dataclass(frozen=True)
class Template:
    """A user's mask image with the pixel positions of the mask's six anchor points (see ``load_templates``)."""

    name: str
    rgba: np.ndarray  # (H, W, 4) float in [0, 1]
    anchors: dict[str, tuple[float, float]]
    loop_colour: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class MaskStyle:
    kind: str
    colour: tuple[int, int, int]
    colour_name: str = ""
    pattern: str = "solid"
    accent: tuple[int, int, int] = (255, 255, 255)
    valve: bool = False
    template: Template | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        if self.template is not None:
            return f"template:{self.template.name}"
        detail = self.pattern if self.kind == "cloth" and self.pattern != "solid" else self.colour_name
        return f"{self.kind}/{detail}" + ("+valve" if self.valve else "")


@dataclass
class Rendered:
    image: np.ndarray  # (H, W, 3) uint8
    alpha: np.ndarray  # (H, W) float: how much of each pixel the mask (loops included) covers
    yaw: float


def random_style(
    rng: np.random.Generator, kind: str | None = None, templates: tuple[Template, ...] = (), template_share: float = 0.0
) -> MaskStyle:
    """A mask look drawn at random (a template with probability ``template_share`` when templates are given)."""
    if templates and rng.random() < template_share:
        template = templates[rng.integers(len(templates))]
        return MaskStyle("template", (200, 200, 200), template.name, template=template)
    kind = kind or KINDS[rng.choice(len(KINDS), p=[0.4, 0.3, 0.15, 0.15])]
    names = list(COLOURS[kind])
    colour_name = names[rng.integers(len(names))]
    pattern, accent = "solid", (255, 255, 255)
    if kind == "cloth" and rng.random() < 0.5:
        pattern = PATTERNS[1 + rng.integers(len(PATTERNS) - 1)]
        accent_name = names[rng.integers(len(names))]
        while accent_name == colour_name:
            accent_name = names[rng.integers(len(names))]
        accent = COLOURS[kind][accent_name]
    return MaskStyle(
        kind, COLOURS[kind][colour_name], colour_name, pattern, accent, valve=bool(kind == "n95" and rng.random() < 0.3)
    )


def estimate_yaw(landmarks: np.ndarray) -> float:
    """Head yaw from landmark asymmetry, in [-1, 1]: < 0 when the photo's left half of the face is foreshortened."""
    left = np.linalg.norm(landmarks[30] - landmarks[2])
    right = np.linalg.norm(landmarks[30] - landmarks[14])
    return float((left - right) / max(left + right, 1e-6))


def mask_grid(
    landmarks: np.ndarray,
    wear: str,
    rng: np.random.Generator | None = None,
    kind: str = "surgical",
    ns: int = 16,
    nt: int = 8,
) -> np.ndarray:
    """Photo coordinates ``(nt + 1, ns + 1, 2)`` of the mask patch for a wear mode (a Coons patch of its four edges).

    ``rng`` jitters the fit a little (how high the nose wire sits, how far below the chin), so
    several masks on one face differ the way real ones do. An N95 cup is narrower and rounder.
    """
    if wear not in WEAR_MODES:
        raise ValueError(f"unknown wear mode '{wear}'; choose one of {', '.join(WEAR_MODES)}")
    lm = np.asarray(landmarks, dtype=np.float64)
    jitter = (lambda scale: rng.uniform(-scale, scale)) if rng is not None else (lambda scale: 0.0)
    across = _unit(lm[16] - lm[0])
    down = np.array([-across[1], across[0]])
    if np.dot(down, lm[8] - lm[27]) < 0:
        down = -down
    height = np.linalg.norm(lm[8] - lm[27])
    centre = lm[27:36].mean(axis=0)

    def out(index: int, margin: float) -> np.ndarray:  # a jaw point pushed away from the face centre
        return lm[index] + margin * height * _unit(lm[index] - centre)

    def widen(point: np.ndarray, side: int, amount: float = 0.02) -> np.ndarray:
        return point + side * amount * height * across

    chin_margin = {"correct": 0.07, "nose_exposed": 0.1, "chin": 0.16, "mouth_only": 0.0}[wear] + jitter(0.02)
    if wear == "correct" and kind == "n95":
        top_left, top_right = _lerp(lm[1], lm[2], 0.6), _lerp(lm[15], lm[14], 0.6)
        top_middle = _lerp(lm[27], lm[30], 0.3 + jitter(0.05))
        sag, side_left, side_right = -0.04, [3, 4], [13, 12]
    elif wear == "correct":
        top_left, top_right = widen(lm[1], -1), widen(lm[15], 1)
        top_middle = _lerp(lm[27], lm[30], 0.42 + jitter(0.06))
        sag, side_left, side_right = 0.06 + jitter(0.015), [2, 3, 4], [14, 13, 12]
    elif wear in ("nose_exposed", "mouth_only"):
        top_left, top_right = widen(_lerp(lm[2], lm[3], 0.6), -1), widen(_lerp(lm[14], lm[13], 0.6), 1)
        top_middle = _lerp(lm[33], lm[51], 0.4 + jitter(0.08))
        sag, side_left, side_right = 0.015, [4, 5], [12, 11]
    else:  # chin: the mask sits below the lower lip
        top_left, top_right = widen(lm[5], -1), widen(lm[11], 1)
        top_middle = _lerp(lm[57], lm[8], 0.25 + jitter(0.04))
        sag, side_left, side_right = 0.0, [6], [10]
    top = np.concatenate(
        [
            _bezier(top_left, _sagging(top_left, top_middle, sag * height, down), top_middle, ns // 2 + 1)[:-1],
            _bezier(top_middle, _sagging(top_middle, top_right, sag * height, down), top_right, ns // 2 + 1),
        ]
    )
    side_margin = 0.04 + jitter(0.01)
    left = _resample(np.array([top_left] + [out(i, side_margin) for i in side_left]), nt + 1)
    right = _resample(np.array([top_right] + [out(i, side_margin) for i in side_right]), nt + 1)
    if wear == "mouth_only":  # the bottom edge crosses the chin above the jaw line
        bottom_middle = _lerp(lm[57], lm[8], 0.45 + jitter(0.08))
        bottom = np.concatenate(
            [
                _bezier(
                    left[-1], _lerp(left[-1], bottom_middle, 0.5) + 0.04 * height * down, bottom_middle, ns // 2 + 1
                )[:-1],
                _bezier(
                    bottom_middle, _lerp(bottom_middle, right[-1], 0.5) + 0.04 * height * down, right[-1], ns // 2 + 1
                ),
            ]
        )
    else:
        first, last = side_left[-1], side_right[-1]
        jaw = {
            i: out(i, side_margin + (chin_margin - side_margin) * (1 - abs(i - 8) / max(8 - first, 1)))
            for i in range(first, last + 1)
        }
        bottom = np.concatenate(
            [
                _resample(np.array([left[-1]] + [jaw[i] for i in range(first + 1, 9)]), ns // 2 + 1)[:-1],
                _resample(np.array([jaw[i] for i in range(8, last)] + [right[-1]]), ns // 2 + 1),
            ]
        )
    return _coons(top, bottom, left, right)


def mask_outline(landmarks: np.ndarray, wear: str, kind: str = "surgical") -> np.ndarray:
    """The patch's boundary as a closed polygon ``(K, 2)`` (before a kind's outline trims it)."""
    grid = mask_grid(landmarks, wear, kind=kind)
    return np.concatenate([grid[0], grid[1:, -1], grid[-1, ::-1][1:], grid[::-1, 0][1:-1]])


def render_mask(
    image: np.ndarray, landmarks: np.ndarray, style: MaskStyle, wear: str, rng: np.random.Generator
) -> Rendered:
    """``image`` with ``style`` worn as ``wear`` (see ``WEAR_MODES``); the face's 68 landmarks place it."""
    image = np.asarray(image, dtype=np.uint8)
    height, width = image.shape[:2]
    landmarks = np.asarray(landmarks, dtype=np.float64)
    grid = mask_grid(landmarks, wear, rng, style.kind)
    yaw = estimate_yaw(landmarks)
    face_width = np.linalg.norm(landmarks[16] - landmarks[0])
    loops = _loop_paths(landmarks, grid, yaw, style)
    points = np.concatenate([grid.reshape(-1, 2)] + [path for path, _ in loops])
    x0, y0 = np.floor(points.min(axis=0) - 2).astype(int)
    x1, y1 = np.ceil(points.max(axis=0) + 3).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if x1 <= x0 or y1 <= y0:
        return Rendered(image.copy(), np.zeros((height, width)), yaw)
    box = (x0, y0, x1, y1)
    s_map, t_map = _rasterise(grid, box, SUPERSAMPLE)
    inside = np.isfinite(s_map)
    rgb = np.zeros((*s_map.shape, 3))
    alpha = np.zeros(s_map.shape)
    colour, coverage = _look(style, wear, s_map[inside], t_map[inside], yaw, rng, face_width)
    rgb[inside], alpha[inside] = colour, coverage
    loop_layer = _draw_loops(loops, box, SUPERSAMPLE, face_width)
    # loops lie under the mask: composite the mask over them, premultiplied
    premultiplied = rgb * alpha[..., None] + loop_layer[..., :3] * loop_layer[..., 3:] * (1 - alpha[..., None])
    alpha = alpha + loop_layer[..., 3] * (1 - alpha)
    premultiplied, alpha = _downsample(premultiplied, SUPERSAMPLE), _downsample(alpha, SUPERSAMPLE)
    photo = image[y0:y1, x0:x1].astype(np.float64) / 255.0
    blur = _photo_blur(photo, face_width)  # a blurry photo gets an equally blurry mask
    premultiplied = np.stack([_blur(premultiplied[..., c], blur) for c in range(3)], axis=-1)
    alpha = np.clip(_blur(alpha, blur), 0.0, 1.0)
    if _saturation(photo) < 0.015:  # a black-and-white photo gets a grey mask
        premultiplied = np.repeat(premultiplied @ np.array([[0.299], [0.587], [0.114]]), 3, axis=-1)
    lit = premultiplied * _lighting(image, box, alpha, face_width)[..., None]
    lit += rng.normal(0.0, 0.012, lit.shape) * alpha[..., None]
    out_patch = np.clip(photo * (1 - alpha[..., None]) + lit, 0.0, 1.0)
    result = image.copy()
    result[y0:y1, x0:x1] = np.round(out_patch * 255).astype(np.uint8)
    full_alpha = np.zeros((height, width))
    full_alpha[y0:y1, x0:x1] = alpha
    return Rendered(result, full_alpha, yaw)


# ----------------------------------------------------------------------------- the look, in (s, t)


def _look(
    style: MaskStyle, wear: str, s: np.ndarray, t: np.ndarray, yaw: float, rng: np.random.Generator, face_width: float
):
    """Colour (N, 3) in [0, 1] and coverage (N,) of sub-pixels at patch coordinates ``(s, t)``."""
    u, v = 2 * s - 1, 2 * t - 1  # centred: u in [-1, 1] across, v in [-1, 1] down
    shade = np.ones_like(s)
    if style.template is not None:
        colour, coverage = _sample_template(style.template, s, t)
    else:
        colour = np.broadcast_to(np.asarray(style.colour, dtype=np.float64) / 255, (len(s), 3)).copy()
        coverage = _outline(style.kind, u, v, face_width)
        if style.kind == "surgical":
            shade *= _pleats(s, t, rng)
            shade *= 1 - 0.1 * ((s < 0.035) | (s > 0.965))  # side binding
            shade *= 1 + 0.05 * (t < 0.05)  # nose wire hem
        elif style.kind == "cloth":
            colour = _pattern(style, s, t, colour, rng)
            shade *= 1 - 0.12 * np.exp(-(((s - 0.5) / 0.012) ** 2))  # centre seam
            shade *= 1 + 0.04 * np.sin(2 * np.pi * (s * 70 + t * 40)) * np.sin(2 * np.pi * (s * 70 - t * 40))  # weave
        elif style.kind == "kf94":
            seam = 0.5 + 0.06 * u**2
            shade *= 1 - 0.35 * np.exp(-(t - seam) / 0.05) * (t > seam)  # shadow under the horizontal fold
            shade *= 1 - 0.3 * np.exp(-(((t - seam) / 0.012) ** 2))  # the seam itself
            shade *= 1 + 0.08 * (t < seam)
        elif style.kind == "n95":
            r2 = u**2 + v**2
            shade *= 1 + 0.12 * (1 - r2) - 0.18 * r2**2  # the cup bulges towards the camera
            clip = (np.abs(u) < 0.28) & (t < 0.1)
            colour[clip] = colour[clip] * 0.75 + 0.1
            if style.valve:  # exhalation valve: a round cap with a darker rim and slits
                r_valve = np.hypot((u - 0.42) * 1.7, v - 0.2)
                body = (0.55, 0.58, 0.62) if style.colour_name == "white" else (0.9, 0.55, 0.2)
                colour[r_valve < 0.26] = body
                colour[(r_valve >= 0.21) & (r_valve < 0.26)] *= 0.6
                slits = (r_valve < 0.17) & ((v * 28) % 2 < 0.7)
                colour[slits] *= 0.55
    if style.kind in ("surgical", "cloth", "kf94", "template") and wear == "correct":
        side = 1.0 if yaw >= 0 else -1.0  # the shadow falls on the side the head turns from
        ridge = np.exp(-(((s - 0.5 - 0.035 * side) / 0.035) ** 2)) * np.clip(1 - t / 0.45, 0, 1)
        shade *= 1 - 0.28 * ridge
        shade *= 1 + 0.08 * np.exp(-(((s - 0.5 + 0.03 * side) / 0.03) ** 2)) * np.clip(1 - t / 0.45, 0, 1)
    edge = np.minimum(np.minimum(s, 1 - s), np.minimum(t, 1 - t))
    shade *= 1 - 0.22 * np.exp(-edge / 0.035)  # edges curl away from the light
    shade *= 1 - 0.28 * np.abs(u) ** 3  # wraps around the cheeks
    shade *= np.clip(1 - 0.5 * yaw * u, 0.6, 1.2)  # the foreshortened half faces away from the camera
    return np.clip(colour * shade[:, None], 0, 1), coverage


def _outline(kind: str, u: np.ndarray, v: np.ndarray, face_width: float) -> np.ndarray:
    """Coverage of each sub-pixel by the kind's shape, softened over about half a photo pixel."""
    soft = 2.0 / max(face_width, 20.0)
    if kind == "n95":
        inside = 1 - np.sqrt(u**2 + v**2)
    elif kind == "kf94":
        half_height = (1 - np.abs(u) ** 2.2).clip(0) ** 0.6
        inside = half_height - np.abs(v)
    elif kind == "cloth":
        inside = 1 - (u**4 + v**4) ** 0.25
    else:
        inside = 1 - (u**10 + v**10) ** 0.1
    return np.clip(inside / soft + 0.5, 0.0, 1.0)


def _pleats(s: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Three horizontal pleats that fan out in the middle and meet at the stitched sides."""
    spread = 0.55 + 0.45 * np.sin(np.pi * s)
    shade = np.ones_like(s)
    for base in (0.3, 0.5, 0.7) + rng.uniform(-0.03, 0.03, 3):
        line = 0.5 + (base - 0.5) * spread
        below = t - line
        shade *= 1 - 0.28 * np.exp(-np.clip(below, 0, None) / 0.035) * (below > 0)  # shadow under the fold
        shade *= 1 + 0.07 * np.exp(-np.clip(-below, 0, None) / 0.05) * (below <= 0)  # lit top of the fold
    return shade


def _pattern(
    style: MaskStyle, s: np.ndarray, t: np.ndarray, colour: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    x, y = s * 1.7, t  # the patch is about 1.7 times as wide as it is high
    accent = np.asarray(style.accent, dtype=np.float64) / 255
    if style.pattern == "stripes":
        angle = rng.choice([0.0, np.pi / 4, -np.pi / 4, np.pi / 2])
        frequency = rng.uniform(5, 9)
        on = ((x * np.sin(angle) + y * np.cos(angle)) * frequency) % 1 < 0.45
    elif style.pattern == "dots":
        frequency = rng.uniform(6, 10)
        row = np.floor(y * frequency)
        on = (((x * frequency + 0.5 * row) % 1 - 0.5) ** 2 + ((y * frequency) % 1 - 0.5) ** 2) < 0.06
    elif style.pattern == "checks":
        frequency = rng.uniform(4, 7)
        bands = ((x * frequency) % 1 < 0.35).astype(float) + ((y * frequency) % 1 < 0.35)
        return colour * (1 - 0.4 * bands[:, None]) + accent * 0.4 * bands[:, None]
    elif style.pattern == "flowers":
        on = np.zeros_like(s, dtype=bool)
        for cx, cy in rng.uniform((0, 0), (1.7, 1), (14, 2)):
            radius = rng.uniform(0.06, 0.11)
            dx, dy = x - cx, y - cy
            r, theta = np.hypot(dx, dy), np.arctan2(dy, dx)
            on |= r < radius * (0.55 + 0.45 * np.abs(np.cos(2.5 * theta)))
    else:
        return colour
    colour[on] = accent
    return colour


def _sample_template(template: Template, s: np.ndarray, t: np.ndarray):
    """Template colour and alpha at ``(s, t)``: its six anchors span the patch (bilinear between the rows)."""
    anchors = {name: np.asarray(point, dtype=np.float64) for name, point in template.anchors.items()}

    def row(prefix: str) -> np.ndarray:
        left, middle, right = anchors[f"{prefix}_left"], anchors[f"{prefix}_middle"], anchors[f"{prefix}_right"]
        first = np.clip(s * 2, 0, 1)[:, None]
        second = np.clip(s * 2 - 1, 0, 1)[:, None]
        return np.where((s < 0.5)[:, None], left + (middle - left) * first, middle + (right - middle) * second)

    xy = row("top") * (1 - t[:, None]) + row("bottom") * t[:, None]
    rgba = _bilinear(template.rgba, xy[:, 0], xy[:, 1])
    return rgba[:, :3], rgba[:, 3]


def _bilinear(pixels: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    height, width = pixels.shape[:2]
    x = np.clip(x, 0, width - 1)
    y = np.clip(y, 0, height - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    top = pixels[y0, x0] * (1 - fx) + pixels[y0, x1] * fx
    bottom = pixels[y1, x0] * (1 - fx) + pixels[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


# ----------------------------------------------------------------------------- loops, light, raster


def _loop_paths(
    landmarks: np.ndarray, grid: np.ndarray, yaw: float, style: MaskStyle
) -> list[tuple[np.ndarray, tuple[int, int, int]]]:
    """Ear loops (N95: head straps) from the mask's sides to the ears, on the sides that face the camera."""
    across = _unit(landmarks[16] - landmarks[0])
    face_width = np.linalg.norm(landmarks[16] - landmarks[0])
    if style.template is not None:
        colour = style.template.loop_colour or tuple(
            int(c) for c in (style.template.rgba[..., :3].mean(axis=(0, 1)) * 255)
        )
    elif style.kind == "surgical" and style.colour_name != "black":
        colour = (244, 244, 242)
    else:
        colour = tuple(int(c * 0.9) for c in style.colour)
    paths = []
    nt = grid.shape[0] - 1
    for side, column, ear_top, ear_low in ((-1, 0, 0, 2), (1, -1, 16, 14)):
        if side * yaw < -0.2:  # this side turns away: the ear and its loop are hidden
            continue
        for row, ear in ((round(0.12 * nt), ear_top), (round(0.85 * nt), ear_low)):
            start = grid[row, column]
            end = landmarks[ear] + side * 0.05 * face_width * across
            bulge = _lerp(start, end, 0.5) + side * 0.03 * face_width * across
            paths.append((_bezier(start, bulge, end, 12), colour))
    return paths


def _draw_loops(loops, box, scale: int, face_width: float) -> np.ndarray:
    x0, y0, x1, y1 = box
    layer = Image.new("RGBA", ((x1 - x0) * scale, (y1 - y0) * scale), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    line_width = max(1, round(0.014 * face_width * scale))
    for path, colour in loops:
        points = [((x - x0 + 0.5) * scale - 0.5, (y - y0 + 0.5) * scale - 0.5) for x, y in path]
        draw.line(points, fill=(*colour, 235), width=line_width, joint="curve")
    return np.asarray(layer, dtype=np.float64) / 255


def _lighting(image: np.ndarray, box, alpha: np.ndarray, face_width: float) -> np.ndarray:
    """The photo's light on the mask: its exposure times the smooth light and shade of the skin underneath."""
    x0, y0, x1, y1 = box
    luma = (image[..., :3].astype(np.float64) @ (0.299, 0.587, 0.114)) / 255
    smooth = _blur(luma, max(2.0, 0.08 * face_width))[y0:y1, x0:x1]
    covered = alpha > 0.5
    reference = np.median(smooth[covered]) if covered.any() else smooth.mean()
    local = np.clip(smooth / max(reference, 1e-3), 0.6, 1.3) ** 0.7
    patch = luma[y0:y1, x0:x1]
    exposure = np.clip(np.percentile(patch, 97) / 0.85, 0.45, 1.1)
    return local * exposure


def _photo_blur(photo: np.ndarray, face_width: float) -> float:
    """Gaussian sigma (pixels) that makes the mask about as sharp as the photo, from its mean gradient."""
    luma = photo @ np.array([0.299, 0.587, 0.114])
    sharpness = (np.abs(np.diff(luma, axis=0)).mean() + np.abs(np.diff(luma, axis=1)).mean()) / 2
    base = max(0.35, 0.004 * face_width)
    return float(np.clip(base + (0.03 - sharpness) * 40, base, 1.6 * base + 0.6))


def _saturation(photo: np.ndarray) -> float:
    return float(np.abs(photo - photo.mean(axis=-1, keepdims=True)).mean())


def _rasterise(grid: np.ndarray, box, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """``(s, t)`` of every sub-pixel of ``box`` that the patch covers (NaN elsewhere).

    Two triangles per grid cell; Pillow fills each with its number, and each triangle's affine map
    from sub-pixel to patch coordinates gives ``(s, t)`` for all covered sub-pixels at once.
    """
    x0, y0, x1, y1 = box
    rows, cols = (y1 - y0) * scale, (x1 - x0) * scale
    nt, ns = grid.shape[0] - 1, grid.shape[1] - 1
    # sub-pixel k of photo pixel x has its centre at x - 0.5 + (k + 0.5) / scale
    sub = (grid - np.array([x0, y0]) + 0.5) * scale - 0.5
    st = np.stack(np.meshgrid(np.linspace(0, 1, ns + 1), np.linspace(0, 1, nt + 1)), axis=-1)
    corners = []
    for i in range(nt):
        for j in range(ns):
            corners += [((i, j), (i, j + 1), (i + 1, j + 1)), ((i, j), (i + 1, j + 1), (i + 1, j))]
    index = np.array(corners)  # (T, 3, 2) grid indices
    xy = sub[index[..., 0], index[..., 1]]
    uv = st[index[..., 0], index[..., 1]]
    matrices = np.concatenate([xy, np.ones((*xy.shape[:2], 1))], axis=-1)
    usable = np.abs(np.linalg.det(matrices)) > 1e-6
    maps = np.zeros((len(index), 3, 2))
    maps[usable] = np.linalg.solve(matrices[usable], uv[usable])
    canvas = Image.new("I", (cols, rows), 0)
    draw = ImageDraw.Draw(canvas)
    for number in np.flatnonzero(usable):
        draw.polygon([tuple(point) for point in xy[number]], fill=int(number) + 1)
    ids = np.asarray(canvas) - 1
    ys, xs = np.nonzero(ids >= 0)
    chosen = maps[ids[ys, xs]]
    s_map = np.full((rows, cols), np.nan)
    t_map = np.full((rows, cols), np.nan)
    s_map[ys, xs] = np.clip(chosen[:, 0, 0] * xs + chosen[:, 1, 0] * ys + chosen[:, 2, 0], 0, 1)
    t_map[ys, xs] = np.clip(chosen[:, 0, 1] * xs + chosen[:, 1, 1] * ys + chosen[:, 2, 1], 0, 1)
    return s_map, t_map


def _downsample(values: np.ndarray, scale: int) -> np.ndarray:
    rows, cols = values.shape[0] // scale, values.shape[1] // scale
    return values.reshape(rows, scale, cols, scale, *values.shape[2:]).mean(axis=(1, 3))


def _blur(values: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a 2-D float map (edges repeated)."""
    radius = max(1, int(np.ceil(3 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    for axis in (0, 1):
        padded = np.pad(values, [(radius, radius) if a == axis else (0, 0) for a in (0, 1)], mode="edge")
        length = values.shape[axis]
        values = sum(w * np.take(padded, np.arange(k, k + length), axis=axis) for k, w in enumerate(taps))
    return values


# ----------------------------------------------------------------------------- geometry helpers


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-9)


def _lerp(a: np.ndarray, b: np.ndarray, amount: float) -> np.ndarray:
    return a + (b - a) * amount


def _sagging(a: np.ndarray, b: np.ndarray, sag: float, down: np.ndarray) -> np.ndarray:
    """Control point of a quadratic curve from ``a`` to ``b`` that dips by ``sag`` (half of it at mid-curve)."""
    return _lerp(a, b, 0.5) + 2 * sag * down


def _bezier(a: np.ndarray, control: np.ndarray, b: np.ndarray, count: int) -> np.ndarray:
    t = np.linspace(0, 1, count)[:, None]
    return (1 - t) ** 2 * a + 2 * (1 - t) * t * control + t**2 * b


def _resample(points: np.ndarray, count: int) -> np.ndarray:
    """``count`` points evenly spaced along a polyline."""
    lengths = np.r_[0, np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))]
    if lengths[-1] == 0:
        return np.repeat(points[:1], count, axis=0)
    targets = np.linspace(0, lengths[-1], count)
    return np.stack([np.interp(targets, lengths, points[:, k]) for k in range(2)], axis=1)


def _coons(top: np.ndarray, bottom: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Bilinearly blended Coons patch through four boundary curves (top/bottom: s, left/right: t)."""
    s = np.linspace(0, 1, len(top))[None, :, None]
    t = np.linspace(0, 1, len(left))[:, None, None]
    corners = (1 - s) * (1 - t) * top[0] + s * (1 - t) * top[-1] + (1 - s) * t * bottom[0] + s * t * bottom[-1]
    return (1 - t) * top[None] + t * bottom[None] + (1 - s) * left[:, None] + s * right[:, None] - corners


# ----------------------------------------------------------------------------- user templates


def load_templates(folder: str | Path) -> tuple[Template, ...]:
    """Every ``*.yaml`` in ``folder``: a mask image and where its six anchor points are in it.

    ::

        image: flowers.png            # RGBA (transparent outside the mask) or RGB, beside the YAML
        anchors:                      # pixel x, y in the image
          top_left: [12, 40]          # upper corner on the wearer's right (the photo's left)
          top_middle: [200, 4]        # where the mask sits on the nose bridge
          top_right: [388, 40]
          bottom_left: [40, 230]      # lower corners, along the jaw
          bottom_middle: [200, 300]   # under the chin
          bottom_right: [360, 230]
        loops: [250, 250, 250]        # optional ear-loop colour (default: the image's mean colour)
    """
    from ..core.config import read_yaml

    folder = Path(folder)
    if not folder.is_dir():
        raise TemplateError(f"mask template folder not found: {folder}")
    templates = []
    for spec_path in sorted(folder.glob("*.y*ml")):
        spec = read_yaml(spec_path, "mask template")
        if not isinstance(spec, dict) or "image" not in spec or not isinstance(spec.get("anchors"), dict):
            raise TemplateError(f"{spec_path}: a template needs 'image' and 'anchors' (see README 'Mask templates')")
        missing = [name for name in ANCHOR_NAMES if name not in spec["anchors"]]
        if missing:
            raise TemplateError(f"{spec_path}: missing anchor(s) {', '.join(missing)}")
        try:
            anchors = {
                name: (float(spec["anchors"][name][0]), float(spec["anchors"][name][1])) for name in ANCHOR_NAMES
            }
            loops = tuple(int(c) for c in spec["loops"])[:3] if spec.get("loops") is not None else None
        except (TypeError, ValueError, IndexError):
            raise TemplateError(
                f"{spec_path}: anchors must be [x, y] pixel pairs and loops an [r, g, b] colour"
            ) from None
        image_path = spec_path.parent / str(spec["image"])
        try:
            with Image.open(image_path) as opened:
                rgba = np.asarray(opened.convert("RGBA"), dtype=np.float64) / 255
        except (OSError, ValueError) as err:
            raise TemplateError(f"{spec_path}: cannot read its image {image_path} ({err})") from None
        height, width = rgba.shape[:2]
        outside = [name for name, (x, y) in anchors.items() if not (0 <= x < width and 0 <= y < height)]
        if outside:
            raise TemplateError(f"{spec_path}: anchor(s) {', '.join(outside)} lie outside the {width}x{height} image")
        templates.append(Template(spec_path.stem, rgba, anchors, loops))
    if not templates:
        raise TemplateError(f"{folder}: no template YAML files (*.yaml) found")
    return tuple(templates)
