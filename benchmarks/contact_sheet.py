"""The README's contact sheet: 24 faces from plain_faces with every mask kind and wear mode drawn on.

    python benchmarks/contact_sheet.py --faces ../shared/data/plain_faces --out docs/images/synth_masks.png

The last two cells use a mask template (an image + six anchor points) that this script draws itself.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from PIL import Image, ImageDraw

from maskcls.data.faces import FaceFinder
from maskcls.data.images import read_image
from maskcls.synth.render import COLOURS, MaskStyle, load_templates, render_mask

CELLS = [  # kind, colour, pattern, wear
    ("surgical", "white", "solid", "correct"),
    ("surgical", "blue", "solid", "correct"),
    ("surgical", "green", "solid", "correct"),
    ("surgical", "black", "solid", "correct"),
    ("cloth", "navy", "solid", "correct"),
    ("cloth", "pink", "stripes", "correct"),
    ("cloth", "denim", "dots", "correct"),
    ("cloth", "red", "checks", "correct"),
    ("cloth", "beige", "flowers", "correct"),
    ("kf94", "white", "solid", "correct"),
    ("kf94", "black", "solid", "correct"),
    ("n95", "white", "valve", "correct"),
    ("surgical", "blue", "solid", "nose_exposed"),
    ("cloth", "black", "solid", "nose_exposed"),
    ("kf94", "white", "solid", "nose_exposed"),
    ("surgical", "white", "solid", "chin"),
    ("cloth", "grey", "solid", "chin"),
    ("surgical", "blue", "solid", "chin"),
    ("surgical", "green", "solid", "mouth_only"),
    ("cloth", "olive", "solid", "mouth_only"),
    ("n95", "grey", "solid", "correct"),
    ("none", "", "", "none"),
    ("template", "", "", "correct"),
    ("template", "", "", "nose_exposed"),
]


WEAR_NAMES = {"nose_exposed": "nose out", "chin": "on chin", "mouth_only": "mouth only"}


def draw_template(folder: Path) -> Path:
    """A tie-dye style mask image with its anchor YAML, as a user would provide one."""
    width, height = 300, 200
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((0, 0, width - 1, height - 1), radius=40, fill=(90, 40, 140, 255))
    for k, colour in enumerate([(240, 120, 40), (250, 210, 60), (60, 170, 200)]):
        draw.ellipse((60 + 40 * k, 30 + 20 * k, 240 - 40 * k, 170 - 20 * k), outline=colour + (255,), width=14)
    image.save(folder / "tiedye.png")
    anchors = {
        "top_left": [4, 10],
        "top_middle": [150, 2],
        "top_right": [295, 10],
        "bottom_left": [10, 190],
        "bottom_middle": [150, 197],
        "bottom_right": [290, 190],
    }
    (folder / "tiedye.yaml").write_text(
        yaml.safe_dump({"image": "tiedye.png", "anchors": anchors, "loops": [240, 240, 240]})
    )
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=Path, required=True, help="The plain_faces folder (labels.csv + images/).")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    labels = pd.read_csv(args.faces / "labels.csv")
    finder = FaceFinder()
    with tempfile.TemporaryDirectory() as tmp:
        template = load_templates(draw_template(Path(tmp)))[0]
    size, caption = 128, 14
    sheet = Image.new("RGB", (6 * size, 4 * (size + caption)), "white")
    draw = ImageDraw.Draw(sheet)
    order = rng.permutation(len(labels))
    faces = iter(order)
    for cell, (kind, colour, pattern, wear) in enumerate(CELLS):
        while True:
            image = read_image(args.faces / labels["path"].iloc[next(faces)])
            found = finder.find(image)
            if len(found) == 1:
                break
        if kind == "none":
            out = image
        elif kind == "template":
            out = render_mask(
                image, found[0].landmarks, MaskStyle("template", (0, 0, 0), template.name, template=template), wear, rng
            ).image
        else:
            style = MaskStyle(
                kind,
                COLOURS[kind][colour],
                colour,
                pattern if pattern != "valve" else "solid",
                (236, 200, 70),
                valve=pattern == "valve",
            )
            out = render_mask(image, found[0].landmarks, style, wear, rng).image
        x, y = (cell % 6) * size, (cell // 6) * (size + caption)
        sheet.paste(Image.fromarray(out).resize((size, size)), (x, y))
        label = (
            "no mask"
            if kind == "none"
            else f"{kind} {pattern if kind == 'cloth' and pattern != 'solid' else colour}".strip()
        )
        draw.text(
            (x + 3, y + size + 1), f"{label}, {WEAR_NAMES[wear]}" if wear in WEAR_NAMES else label, fill=(0, 0, 0)
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        args.out, optimize=True
    )  # a few hundred KB
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
