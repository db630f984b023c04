"""Read the competition layout into a manifest, finding every problem before any training starts.

``train/train.csv`` (id, gender, race, age, path) + ``train/images/<path>/{mask1..5,incorrect_mask,normal}``
and ``eval/info.csv`` (ImageID, ans) + ``eval/images/<ImageID>``. The manifest is one row per photo,
keyed by ``image_id``: the single table every later stage reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.artifacts import SKIPPED_FILE
from ..core.labels import GENDER_BY_NAME, STEM_TO_MASK, AgeThresholds, decode, encode

TRAIN_COLUMNS = ("id", "gender", "race", "age", "path")
EVAL_COLUMNS = ("ImageID", "ans")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
MAX_AGE = 120
MANIFEST_COLUMNS = ("image_id", "path", "person_id", "stem", "gender", "race", "age", "mask", "age_group", "label")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: which file, and why."""

    file: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.reason}"


class DataError(ValueError):
    """Input that cannot be used as it is; lists every problem found, not only the first."""

    def __init__(self, summary: str, problems: list[Problem] = (), hint: str = ""):
        self.problems = list(problems)
        lines = [summary]
        lines += [f"  - {p}" for p in self.problems[:30]]
        if len(self.problems) > 30:
            lines.append(f"  ... and {len(self.problems) - 30} more")
        if hint:
            lines.append(hint)
        super().__init__("\n".join(lines))


def skip_hint(listed_in: str = SKIPPED_FILE) -> str:
    """What to do about bad photos, naming the file the skipped ones are listed in."""
    return f"Fix these files, or pass --on-bad-image skip to leave them out (they are then listed in {listed_in})."


SKIP_HINT = skip_hint(SKIPPED_FILE)


def read_train(
    train_dir: str | Path, thresholds: AgeThresholds = AgeThresholds()
) -> tuple[pd.DataFrame, list[Problem]]:
    """Manifest of a labelled ``train/`` folder and the problems found in it.

    Rows with problems are left out of the manifest; the caller decides whether problems stop the run.
    """
    train_dir = Path(train_dir)
    csv_path = train_dir / "train.csv"
    table = read_csv_table(csv_path, TRAIN_COLUMNS)
    problems: list[Problem] = []
    rows = []
    duplicated_ids = set(table["id"][table["id"].duplicated(keep=False)])
    duplicated_paths = set(table["path"][table["path"].duplicated(keep=False)])
    for line_no, person in enumerate(table.itertuples(index=False), start=2):
        where = f"{csv_path}:{line_no}"
        person_problems = _check_person(person, where, duplicated_ids, duplicated_paths)
        if person_problems:
            problems.extend(person_problems)
            continue
        folder = train_dir / "images" / person.path
        if not folder.is_dir():
            problems.append(Problem(str(folder), f"person folder missing (named by {where})"))
            continue
        photos, folder_problems = _scan_person_folder(folder)
        problems.extend(folder_problems)
        gender = GENDER_BY_NAME[person.gender.strip().lower()]
        age = int(person.age)
        age_group = thresholds.group(age)
        for stem, photo in photos.items():
            mask = STEM_TO_MASK[stem]
            rows.append(
                {
                    "image_id": f"{person.path}/{stem}",
                    "path": str(photo),
                    "person_id": person.id,
                    "stem": stem,
                    "gender": int(gender),
                    "race": person.race,
                    "age": age,
                    "mask": int(mask),
                    "age_group": age_group,
                    "label": encode(mask, gender, age_group),
                }
            )
    manifest = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    return manifest.astype(
        {"gender": np.int64, "age": np.int64, "mask": np.int64, "age_group": np.int64, "label": np.int64}
    ), problems


def read_eval(eval_dir: str | Path) -> tuple[pd.DataFrame, list[Problem]]:
    """Rows of ``eval/info.csv`` (order kept) with their image paths, and the problems found."""
    eval_dir = Path(eval_dir)
    csv_path = eval_dir / "info.csv"
    table = read_csv_table(csv_path, EVAL_COLUMNS[:1])
    problems = []
    duplicated = table["ImageID"].duplicated(keep=False)
    for line_no, (image_id, is_duplicate) in enumerate(zip(table["ImageID"], duplicated, strict=False), start=2):
        if is_duplicate:
            problems.append(Problem(f"{csv_path}:{line_no}", f"ImageID '{image_id}' appears more than once"))
        elif not (eval_dir / "images" / image_id).is_file():
            problems.append(
                Problem(str(eval_dir / "images" / image_id), f"image named by {csv_path}:{line_no} is missing")
            )
    manifest = pd.DataFrame(
        {"image_id": table["ImageID"], "path": [str(eval_dir / "images" / i) for i in table["ImageID"]]}
    )
    return manifest, problems


def read_csv_table(
    csv_path: Path,
    required: tuple[str, ...],
    see: str = "the competition layout, see README 'Data layout'",
    lowercase: bool = False,
) -> pd.DataFrame:
    """A user's CSV as strings, with stripped column names; a missing file, unreadable CSV or missing column
    is a ``DataError`` naming the file, the columns found and ``see`` (where the format is described)."""
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: file not found (expected {see})")
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
        raise DataError(f"{csv_path}: not a readable CSV file ({err})") from None
    table.columns = [c.strip().lower() if lowercase else c.strip() for c in table.columns]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DataError(
            f"{csv_path}: missing column(s) {', '.join(missing)}; found {', '.join(table.columns) or 'none'}, "
            f"expected {', '.join(required)} ({see})"
        )
    return table


def _check_person(person, where: str, duplicated_ids: set, duplicated_paths: set) -> list[Problem]:
    problems = []
    if not person.id.strip():
        problems.append(Problem(where, "empty id"))
    elif person.id in duplicated_ids:
        problems.append(Problem(where, f"duplicate id '{person.id}'"))
    if person.gender.strip().lower() not in GENDER_BY_NAME:
        problems.append(Problem(where, f"unknown gender '{person.gender}' (expected male or female)"))
    age = person.age.strip()
    if not age.lstrip("-").isdigit():
        problems.append(Problem(where, f"age '{person.age}' is not an integer"))
    elif not 0 <= int(age) <= MAX_AGE:
        problems.append(Problem(where, f"impossible age {age} (expected 0..{MAX_AGE})"))
    if not person.path.strip():
        problems.append(Problem(where, "empty path"))
    elif person.path in duplicated_paths:
        problems.append(Problem(where, f"path '{person.path}' is used by more than one person"))
    return problems


def _scan_person_folder(folder: Path) -> tuple[dict[str, Path], list[Problem]]:
    """The photo per expected stem, and what is missing, duplicated or does not belong."""
    by_stem: dict[str, list[Path]] = {}
    problems = []
    for entry in sorted(folder.iterdir()):
        stem, suffix = entry.stem, entry.suffix.lower()
        if entry.is_dir():
            problems.append(Problem(str(entry), "unexpected folder inside a person folder"))
        elif suffix not in IMAGE_SUFFIXES:
            problems.append(
                Problem(str(entry), f"not an image file (suffix '{entry.suffix}'; expected .jpg, .jpeg or .png)")
            )
        elif stem not in STEM_TO_MASK:
            problems.append(Problem(str(entry), f"unexpected photo name '{stem}' (expected {', '.join(STEM_TO_MASK)})"))
        else:
            by_stem.setdefault(stem, []).append(entry)
    photos = {}
    for stem in STEM_TO_MASK:
        found = by_stem.get(stem, [])
        if not found:
            problems.append(Problem(str(folder), f"missing photo '{stem}' (.jpg/.jpeg/.png)"))
        elif len(found) > 1:
            names = ", ".join(p.name for p in found)
            problems.append(Problem(str(folder), f"photo '{stem}' appears {len(found)} times ({names}); none used"))
        else:
            photos[stem] = found[0]
    return photos, problems


EXTRA_COLUMNS = ("image_id", "path", "label")


def read_extra(csv_path: str | Path) -> tuple[pd.DataFrame, list[Problem]]:
    """Extra labelled photos (e.g. pseudo-labels: image_id, path, label, optional age) as manifest rows.

    They carry a class but no person: each is its own "person" ``extra:<image_id>``, with age -1
    where the CSV has none (unknown), so they can join training folds but never validation.
    """
    csv_path = Path(csv_path)
    table = read_csv_table(csv_path, EXTRA_COLUMNS)
    problems, rows = [], []
    duplicated = set(table["image_id"][table["image_id"].duplicated(keep=False)])
    for line_no, row in enumerate(table.itertuples(index=False), start=2):
        where = f"{csv_path}:{line_no}"
        label = row.label.strip()
        if row.image_id in duplicated:
            problems.append(Problem(where, f"image_id '{row.image_id}' appears more than once"))
        elif not label.isdigit() or not 0 <= int(label) < 18:
            problems.append(Problem(where, f"label '{row.label}' is not a class index 0..17"))
        elif not Path(row.path).is_file():
            problems.append(Problem(row.path, f"photo named by {where} is missing"))
        else:
            mask, gender, age_group = decode(int(label))
            age = int(row.age) if getattr(row, "age", "").strip().isdigit() else -1
            rows.append(
                {
                    "image_id": f"extra:{row.image_id}",
                    "path": row.path,
                    "person_id": f"extra:{row.image_id}",
                    "stem": "",
                    "gender": gender,
                    "race": "",
                    "age": age,
                    "mask": mask,
                    "age_group": age_group,
                    "label": int(label),
                }
            )
    manifest = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    return manifest.astype({c: np.int64 for c in ("gender", "age", "mask", "age_group", "label")}), problems


def union_problems(problem_lists) -> list[Problem]:
    """One problem per file, the first reason found (a missing photo is "missing" in info.csv and "not found" when
    decoded)."""
    merged: dict[str, Problem] = {}
    for problems in problem_lists:
        for problem in problems:
            merged.setdefault(problem.file, problem)
    return list(merged.values())
