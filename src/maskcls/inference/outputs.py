"""What a prediction is and the files it becomes, without torch: shared by the PyTorch and the ONNX paths.

Both ``maskcls predict --run`` and ``maskcls predict --onnx`` end here, so ``test_probs.csv``,
``submission.csv`` and the loose-photo table come out the same whichever engine made the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.artifacts import PREDICT_FILE, PREDICT_SKIPPED_FILE, SUBMISSION_FILE, TEST_PROBS_FILE
from ..core.io import write_csv, write_json
from ..core.labels import GENDER_NAMES, MASK_NAMES, decode
from ..core.metrics import predictive_entropy
from ..core.tables import PROB_COLUMNS
from ..data.layout import DataError, Problem, skip_hint, union_problems
from ..ensemble.person_consistency import person_consistent_table


@dataclass
class Prediction:
    """Probabilities of a table of photos (NaN rows: photos that could not be read) and per-row extras."""

    probs: np.ndarray
    answers: np.ndarray
    columns: dict[str, np.ndarray]
    problems: list[Problem]


def write_eval_predictions(
    eval_dir: str | Path,
    out_dir: str | Path,
    info: pd.DataFrame,
    prediction: Prediction,
    problems: list[Problem],
    on_bad_image: str,
    record: dict,
    groups: np.ndarray | None = None,
    group_size: int | None = None,
) -> pd.DataFrame:
    """Write ``test_probs.csv``, ``submission.csv`` (``info.csv``'s rows and order) and ``predict.json`` (``record``).

    ``problems`` are those found before predicting; with ``on_bad_image="fail"`` any problem stops here,
    before a file is written. With ``"skip"`` unreadable photos keep their row (the fallback class) and
    are listed, one row per photo, in ``predict_skipped.csv``; ``predict.json`` records how many.
    ``groups`` (one per row of ``info``, see ``persons.consistent.read_groups``) adds the person-consistent
    ``group`` and ``person_p0..17`` columns, and the submission takes their argmax.
    Returns the submission.
    """
    out_dir = Path(out_dir)
    problems = union_problems([problems, prediction.problems])
    if problems and on_bad_image == "fail":
        raise DataError(
            f"{len(problems)} problem(s) found in {eval_dir}; nothing was predicted.",
            problems,
            skip_hint(PREDICT_SKIPPED_FILE),
        )
    test_probs = pd.concat([info[["image_id"]], pd.DataFrame(prediction.probs, columns=PROB_COLUMNS)], axis=1)
    test_probs["entropy"] = predictive_entropy(prediction.probs)
    for name, values in prediction.columns.items():
        test_probs[name] = values
    submission = pd.read_csv(Path(eval_dir) / "info.csv", dtype=str, keep_default_na=False)
    submission["ans"] = prediction.answers.astype(int)
    if groups is not None:
        test_probs, submission["ans"] = person_consistent_table(
            test_probs, submission["ans"].to_numpy(), groups, group_size
        )
    write_csv(out_dir / TEST_PROBS_FILE, test_probs)
    write_csv(out_dir / SUBMISSION_FILE, submission)
    skipped = out_dir / PREDICT_SKIPPED_FILE
    if problems:
        write_csv(skipped, pd.DataFrame([{"file": p.file, "reason": p.reason} for p in problems]))
    else:
        skipped.unlink(missing_ok=True)  # from an earlier prediction into the same folder
    face_crop = None
    if "face_found" in test_probs:
        face_crop = {
            "photos": int(np.isfinite(test_probs["face_found"]).sum()),
            "no_face": int((test_probs["face_found"] == 0).sum()),
        }
    write_json(
        out_dir / PREDICT_FILE,
        {
            "data": str(Path(eval_dir).resolve()),
            **record,
            "skipped": len(problems),
            "skipped_list": str(skipped) if problems else None,
            "face_crop": face_crop,
        },
    )
    return submission


def file_rows(
    paths: list[str], prediction: Prediction, age_names: tuple[str, str, str], out_dir: str | Path | None = None
) -> pd.DataFrame:
    """One row per loose photo: its shortest distinct name, class, mask, gender, age group and probability,
    or (``error``) why it could not be read; failed rows have no class. ``out_dir``: also write
    ``predictions.csv`` there."""
    errors = {problem.file: problem.reason for problem in prediction.problems}
    rows = []
    for path, name, p, label in zip(paths, distinct_tails(paths), prediction.probs, prediction.answers, strict=False):
        if path in errors:
            rows.append(
                {
                    "file": path,
                    "name": name,
                    "class": None,
                    "mask": "",
                    "gender": "",
                    "age": "",
                    "probability": np.nan,
                    "error": errors[path],
                }
            )
            continue
        mask, gender, age = decode(int(label))
        rows.append(
            {
                "file": path,
                "name": name,
                "class": int(label),
                "mask": MASK_NAMES[mask],
                "gender": GENDER_NAMES[gender],
                "age": age_names[age],
                "probability": float(p[label]),
                "error": "",
            }
        )
    table = pd.DataFrame(
        rows, columns=["file", "name", "class", "mask", "gender", "age", "probability", "error"]
    ).astype({"class": "Int64"})
    if out_dir is not None:
        write_csv(Path(out_dir) / "predictions.csv", table)
    return table


def distinct_tails(paths: list[str]) -> list[str]:
    """The fewest trailing path parts that tell each path from the others (``a/normal.jpg``, ``b/normal.jpg``)."""
    parts = [Path(path).parts or (path,) for path in paths]
    tails = []
    for own in parts:
        for depth in range(1, len(own) + 1):
            tail = own[-depth:]
            if all(other == own or other[-depth:] != tail for other in parts):
                break
        tails.append(str(Path(*tail)))
    return tails


def argmax_or(probs: np.ndarray, fallback: int) -> np.ndarray:
    """The most probable class of each row, ``fallback`` where the row has no probabilities (an unreadable photo)."""
    readable = np.all(np.isfinite(probs), axis=1)
    return np.where(readable, np.nan_to_num(probs, nan=-1.0).argmax(axis=1), fallback).astype(np.int64)


def fill_rows(length: int, rows: np.ndarray, values) -> np.ndarray:
    """A column of ``length`` NaNs with ``values`` at ``rows``."""
    column = np.full(length, np.nan)
    column[rows] = values
    return column
