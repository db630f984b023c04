"""Face detectors compared on real photos: dlib's HOG detector vs the bundled CNN (MMOD) detector.

Configurations: detector (``hog``, ``cnn``, ``auto`` = HOG then the CNN where HOG finds nothing),
upsampling (0-2 doublings: small faces) and a black border around the photo (``pad``: faces cut
by the frame).
For every photo each configuration (detector x upsampling) runs in turn, so all of them see the same
machine load; per folder it reports the share of photos with at least one face, with exactly one,
and the mean time per photo. Folders: realmask ``mask_worn/`` and ``no_mask/`` (real masks, faces of
any size in photos of at most 128 px) and plain_faces (aligned 128 px crops, the synthesis input).

    python benchmarks/face_detectors.py --data ../shared/data --out benchmarks/results/face_detectors.json
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

from maskcls.core.io import write_json
from maskcls.core.progress import track
from maskcls.data.faces import FaceFinder
from maskcls.data.images import read_image

CONFIGS = [
    ("hog", 0, 0.0),
    ("hog", 1, 0.0),
    ("hog", 2, 0.0),
    ("hog", 1, 0.25),
    ("cnn", 0, 0.0),
    ("cnn", 1, 0.0),
    ("cnn", 0, 0.25),
    ("auto", 0, 0.25),
    ("auto", 1, 0.25),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="The shared data folder (realmask/, plain_faces/).")
    parser.add_argument("--out", type=Path, required=True, help="JSON results file.")
    parser.add_argument("--limit", type=int, default=0, help="Photos per realmask folder (0 = all 400).")
    parser.add_argument(
        "--plain-faces", type=int, default=300, help="Photos of plain_faces (an even spread; 0 = all 1,548)."
    )
    args = parser.parse_args()
    folders = {
        "realmask/mask_worn": sorted((args.data / "realmask" / "mask_worn").glob("*.jpg")),
        "realmask/no_mask": sorted((args.data / "realmask" / "no_mask").glob("*.jpg")),
        "plain_faces": sorted((args.data / "plain_faces" / "images").glob("*.jpg")),
    }
    finders = {
        f"{name} up{up}" + (f" pad{pad:g}" if pad else ""): FaceFinder(name, up, landmarks=False, pad=pad)
        for name, up, pad in CONFIGS
    }
    rows = []
    for folder, paths in folders.items():
        limit = args.plain_faces if folder == "plain_faces" else args.limit
        if limit:
            paths = paths[:: max(1, len(paths) // limit)][:limit]
        counts = {key: [] for key in finders}
        seconds = {key: 0.0 for key in finders}
        for path in track(paths, f"{folder} ({len(paths)} photos)"):
            image = read_image(path)
            for key, finder in finders.items():
                started = time.perf_counter()
                counts[key].append(len(finder.find(image)))
                seconds[key] += time.perf_counter() - started
        for key in finders:
            found = np.asarray(counts[key])
            rows.append(
                {
                    "folder": folder,
                    "detector": key,
                    "photos": len(paths),
                    "found": round(float((found >= 1).mean()), 4),
                    "exactly_one": round(float((found == 1).mean()), 4),
                    "ms_per_photo": round(1000 * seconds[key] / len(paths), 1),
                }
            )
    print("| folder | detector | photos | >= 1 face | exactly 1 | ms / photo |\n|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['folder']} | {r['detector']} | {r['photos']} | {r['found']:.3f} | {r['exactly_one']:.3f} | "
            f"{r['ms_per_photo']:.1f} |"
        )
    write_json(args.out, {"machine": platform.processor() or platform.machine(), "rows": rows})


if __name__ == "__main__":
    main()
