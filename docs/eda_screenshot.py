"""Draw the demo data, write its EDA page and photograph the whole page with headless Chromium (for the README).

    python docs/eda_screenshot.py [--out docs/images/eda_demo.png]

The page is shot at 1400 px wide, the empty bottom cropped, then scaled to 700 px and reduced to a
palette so the PNG stays a few hundred KB.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from maskcls.analysis.eda import eda_report
from maskcls.data.demo import generate_demo

CHROMIUM = [
    "/usr/bin/chromium",
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "images" / "eda_demo.png")
    parser.add_argument("--width", type=int, default=700)
    args = parser.parse_args()
    args.out = args.out.resolve()
    home = os.getcwd()
    with tempfile.TemporaryDirectory() as work:
        os.chdir(work)  # the page names its folders as `make demo` does: data/demo/train and data/demo/eval
        try:
            demo = generate_demo(Path("data/demo"), persons=200, eval_persons=40, seed=0)
            page = eda_report(demo / "train", Path("reports/eda"), eval_dir=demo / "eval", progress=False)
            subprocess.run(
                [
                    *CHROMIUM,
                    f"--user-data-dir={Path(work) / 'chromium'}",
                    f"--screenshot={Path(work) / 'shot.png'}",
                    "--window-size=1400,14000",
                    page.resolve().as_uri(),
                ],
                check=True,
                capture_output=True,
            )
            image = Image.open(Path(work) / "shot.png").convert("RGB")
        finally:
            os.chdir(home)
    pixels = np.asarray(image)
    used = np.nonzero((pixels < 245).any(axis=(1, 2)))[0]
    image = image.crop((0, 0, image.width, min(image.height, int(used.max()) + 30)))
    image = image.resize((args.width, round(image.height * args.width / image.width)), Image.Resampling.LANCZOS)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(args.out, optimize=True)
    print(f"{args.out}: {image.width}x{image.height}, {args.out.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
