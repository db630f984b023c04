"""How unsure the ensemble is about each photo, and a contact sheet to look at the most uncertain ones.

Entropy and margin read one probability table; disagreement (mutual information) needs every member's
probabilities and separates "the members disagree" from "every member is unsure".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from ..core.io import atomic_path
from ..core.metrics import margin, predictive_entropy
from ..core.tables import PROB_COLUMNS
from ..data.images import ImageError, read_resized

RANKINGS = ("entropy", "margin", "disagreement")
_CAPTION_HEIGHT = 14
_UNREADABLE_GREY = (128, 128, 128)


def rank_uncertain(table: pd.DataFrame, k: int, by: str = "entropy") -> pd.DataFrame:
    """The ``k`` most uncertain rows of a probability table, most uncertain first, with a ``by`` column.

    ``entropy`` (highest first) and ``margin`` (lowest first) are computed from p0..p17 when the table
    lacks the column; ``disagreement`` needs the members, so the table must carry it. Rows without
    probabilities (NaN) are left out. Ties keep table order.
    """
    if by not in RANKINGS:
        raise ValueError(f"unknown uncertainty ranking '{by}'; choose one of {', '.join(RANKINGS)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    missing = [c for c in PROB_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"probability table is missing column(s) {', '.join(missing)}")
    probs = table[PROB_COLUMNS].to_numpy(dtype=np.float64)
    readable = np.all(np.isfinite(probs), axis=1)
    table = table[readable].reset_index(drop=True)
    if by not in table.columns:
        if by == "disagreement":
            raise ValueError("the table has no 'disagreement' column; compute it with disagreement(member_probs) first")
        table[by] = (predictive_entropy if by == "entropy" else margin)(probs[readable])
    return table.sort_values(by, ascending=by == "margin", kind="stable").head(k).reset_index(drop=True)


def contact_sheet(
    paths: Sequence[str | Path],
    captions: Sequence[str],
    out_png: str | Path,
    thumb_hw: tuple[int, int] = (96, 72),
    columns: int = 10,
) -> Path:
    """A PNG grid of thumbnails ``thumb_hw`` (height, width), a caption under each, written atomically.

    Photos that cannot be read become grey tiles marked "unreadable", so one bad file never hides the rest.
    """
    if len(paths) == 0:
        raise ValueError("contact sheet needs at least one photo")
    if len(captions) != len(paths):
        raise ValueError(f"{len(captions)} captions for {len(paths)} photos")
    height, width = thumb_hw
    if height < 1 or width < 1 or columns < 1:
        raise ValueError(f"thumb_hw and columns must be positive, got thumb_hw={thumb_hw}, columns={columns}")
    columns = min(columns, len(paths))
    rows = math.ceil(len(paths) / columns)
    cell_height = height + _CAPTION_HEIGHT
    sheet = Image.new("RGB", (columns * width, rows * cell_height), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for index, (path, caption) in enumerate(zip(paths, captions, strict=False)):
        left, top = (index % columns) * width, (index // columns) * cell_height
        try:
            sheet.paste(Image.fromarray(read_resized(path, (height, width))), (left, top))
        except ImageError:
            draw.rectangle([left, top, left + width - 1, top + height - 1], fill=_UNREADABLE_GREY)
            draw.text((left + 2, top + height // 2 - 6), "unreadable", fill="white", font=font)
        draw.text((left + 1, top + height + 1), _fit_text(draw, str(caption), font, width - 2), fill="black", font=font)
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        sheet.save(tmp, format="PNG")
    return out_png


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """``text`` cut (with a trailing '..') to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "..", font=font) > width:
        text = text[:-1]
    return text + ".."
