"""Bring outside photos in: UTKFace-style names, a generic CSV, or a folder per mask class.

Every source is read into one table (path, gender, age, race, mask, person, where), and written as
one of three targets:

- ``extra``: an ``--extra`` manifest for ``maskcls train`` (image_id, path, label, age);
- ``faces``: a face list for ``maskcls synth masks`` (id, path, gender, age, race);
- ``layout``: the competition layout (train.csv + images/<person>/mask1..5, incorrect_mask, normal),
  for sources whose persons each have 5 worn, 1 incorrectly worn and 1 unmasked photo.

Rows that cannot be used are reported with their line (or file) and the reason.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.io import atomic_dir, write_csv
from ..core.labels import GENDER_NAMES, STEM_TO_MASK, AgeThresholds, Mask, encode
from .layout import IMAGE_SUFFIXES, MAX_AGE, TRAIN_COLUMNS, DataError, Problem, read_csv_table

FORMATS = ("auto", "utkface", "csv", "folders")
TARGETS = ("extra", "faces", "layout")
PHOTO_COLUMNS = ("path", "gender", "age", "race", "mask", "person", "where")
UTKFACE_RACES = ("White", "Black", "Asian", "Indian", "Other")
GENDER_WORDS = {"male": "male", "m": "male", "man": "male", "female": "female", "f": "female", "woman": "female"}
MASK_WORDS = {
    **dict.fromkeys(
        ("wear", "worn", "mask", "masked", "mask_worn", "with_mask", "mask_weared", "correct", "0"), int(Mask.WEAR)
    ),
    **dict.fromkeys(
        (
            "incorrect",
            "incorrect_mask",
            "mask_incorrect",
            "mask_worn_incorrectly",
            "mask_weared_incorrect",
            "incorrectly",
            "1",
        ),
        int(Mask.INCORRECT),
    ),
    **dict.fromkeys(
        ("not_wear", "no_mask", "without_mask", "nomask", "unmasked", "none", "normal", "2"), int(Mask.NOT_WEAR)
    ),
}
_UTKFACE_NAME = re.compile(r"^(\d+)_(\d+)_(\d+)_")


def parse_utkface_name(name: str) -> tuple[int, str, str]:
    """``(age, gender, race)`` from a UTKFace file name ``age_gender_race_date.jpg`` (gender 0 male / 1 female,
    race 0-4 White, Black, Asian, Indian, Other); ``ValueError`` with the reason otherwise."""
    match = _UTKFACE_NAME.match(Path(name).name)
    if not match:
        raise ValueError("file name is not age_gender_race_date (UTKFace style)")
    age, gender, race = (int(group) for group in match.groups())
    if not 0 <= age <= MAX_AGE:
        raise ValueError(f"impossible age {age} in the file name")
    if gender not in (0, 1):
        raise ValueError(f"gender code {gender} in the file name is not 0 (male) or 1 (female)")
    if race >= len(UTKFACE_RACES):
        raise ValueError(f"race code {race} in the file name is not 0..4")
    return age, GENDER_NAMES[gender], UTKFACE_RACES[race]


def read_photos(
    source: str | Path, fmt: str = "auto", labels: str | Path | None = None, mask: str | None = None
) -> tuple[pd.DataFrame, list[Problem]]:
    """The photos of ``source`` as one table (``PHOTO_COLUMNS``; unknown gender ``""``, age and mask ``-1``).

    ``fmt``: ``csv`` (a file: path plus any of gender, age, race, mask, person / id), ``folders`` (one
    sub-folder per mask class: mask_worn/, incorrect_mask/, no_mask/, ...), ``utkface`` (a folder of
    UTKFace-named photos) or ``auto``. ``labels``: a CSV (path, gender, age), e.g. from ``maskcls synth
    label``, for photos whose names carry none. ``mask``: the mask state of photos that have none.
    """
    source = Path(source)
    if fmt not in FORMATS:
        raise ValueError(f"unknown import format '{fmt}'; choose one of {', '.join(FORMATS)}")
    default_mask = -1
    if mask is not None:
        if mask.strip().lower() not in MASK_WORDS:
            raise ValueError(f"unknown mask state '{mask}'; use wear, incorrect or not_wear")
        default_mask = MASK_WORDS[mask.strip().lower()]
    if fmt == "auto":
        fmt = (
            "csv"
            if source.is_file() or source.suffix.lower() == ".csv"
            else "folders"
            if _class_folders(source)
            else "utkface"
        )
    if fmt == "csv":
        table, problems = _read_csv_source(source)
    elif not source.is_dir():
        raise DataError(f"{source}: folder not found")
    elif fmt == "folders":
        table, problems = _read_class_folders(source)
    else:
        table, problems = _read_named_photos(source, [p for p in _images_under(source)], mask=-1, strict=labels is None)
    if labels is not None:
        table, label_problems = _join_labels(table, Path(labels))
        problems += label_problems
    table.loc[table["mask"] < 0, "mask"] = default_mask
    return table.reset_index(drop=True), problems


def import_photos(
    source: str | Path,
    out: str | Path,
    target: str = "extra",
    fmt: str = "auto",
    labels: str | Path | None = None,
    mask: str | None = None,
    on_bad_row: str = "fail",
    thresholds: AgeThresholds = AgeThresholds(),
    force: bool = False,
) -> dict:
    """Read ``source`` and write it as ``target`` (``extra`` / ``faces``: a CSV file; ``layout``: a folder).

    With ``on_bad_row="fail"`` any problem stops the import before anything is written; with
    ``"skip"`` the bad rows are left out. Either way the problems are returned (and listed in
    ``<out>.problems.csv`` when rows were skipped).
    """
    if target not in TARGETS:
        raise ValueError(f"unknown import target '{target}'; choose one of {', '.join(TARGETS)}")
    out = Path(out)
    if out.exists() and not force and (out.is_file() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists; use --force to replace it")
    table, problems = read_photos(source, fmt, labels, mask)
    needed = {
        "extra": ("gender", "age", "mask"),
        "faces": ("gender", "age"),
        "layout": ("gender", "age", "mask", "person"),
    }[target]
    table, missing = _require(table, needed, target)
    problems += missing
    if target == "layout":
        table, group_problems = _complete_persons(table)
        problems += group_problems
    if problems and on_bad_row == "fail":
        raise DataError(
            f"{len(problems)} problem(s) importing {source}; nothing was written.",
            problems,
            "Fix these rows, or pass --on-bad-row skip to leave them out.",
        )
    if table.empty:
        raise DataError(f"no usable photos in {source}", problems)
    if target == "extra":
        ages = table["age"].to_numpy()
        labels_ = encode(
            table["mask"].to_numpy(), (table["gender"] == "female").astype(int).to_numpy(), thresholds.group(ages)
        )
        write_csv(
            out,
            pd.DataFrame(
                {"image_id": _image_ids(table, Path(source)), "path": table["path"], "label": labels_, "age": ages}
            ),
        )
    elif target == "faces":
        ids = table["person"].where(table["person"] != "", [Path(p).stem for p in table["path"]])
        write_csv(
            out,
            pd.DataFrame(
                {
                    "id": ids,
                    "path": table["path"],
                    "gender": table["gender"],
                    "age": table["age"],
                    "race": table["race"],
                }
            ),
        )
    else:
        _write_layout(table, out)
    if problems:
        write_csv(
            out.with_name(out.name + ".problems.csv"),
            pd.DataFrame([{"where": p.file, "reason": p.reason} for p in problems]),
        )
    persons = int(table["person"].nunique()) if target == "layout" else None
    return {
        "source": str(source),
        "out": str(out),
        "target": target,
        "photos": int(len(table)),
        "persons": persons,
        "problems": problems,
    }


# ----------------------------------------------------------------------------- readers


def _read_csv_source(csv_path: Path) -> tuple[pd.DataFrame, list[Problem]]:
    table = read_csv_table(
        csv_path, ("path",), see="a CSV of path + labels, see README 'Import: maskcls import'", lowercase=True
    )
    rows, problems = [], []
    for line_no, row in enumerate(table.to_dict("records"), start=2):
        where = f"{csv_path}:{line_no}"
        path = _resolve(row["path"], csv_path.parent)
        row_problems = []
        gender, age, mask_state = "", -1, -1
        if row.get("gender", "").strip():
            gender = GENDER_WORDS.get(row["gender"].strip().lower(), "")
            if not gender:
                row_problems.append(f"unknown gender '{row['gender']}' (expected male or female)")
        if row.get("age", "").strip():
            age = _parse_age(row["age"], row_problems)
        if row.get("mask", "").strip():
            mask_state = MASK_WORDS.get(row["mask"].strip().lower(), -1)
            if mask_state < 0:
                row_problems.append(f"unknown mask state '{row['mask']}' (expected wear, incorrect or not_wear)")
        if not row["path"].strip():
            row_problems.append("empty path")
        elif path.suffix.lower() not in IMAGE_SUFFIXES:
            row_problems.append(f"not an image file (suffix '{path.suffix}'; expected .jpg, .jpeg or .png)")
        elif not path.is_file():
            row_problems.append(f"photo {path} is missing")
        if row_problems:
            problems.append(Problem(where, "; ".join(row_problems)))
            continue
        person = (row.get("person") or row.get("id") or "").strip()
        rows.append((str(path), gender, age, row.get("race", "").strip(), mask_state, person, where))
    return _table(rows), problems


def _read_class_folders(folder: Path) -> tuple[pd.DataFrame, list[Problem]]:
    tables, problems = [], []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            if entry.name.lower() not in MASK_WORDS:
                problems.append(
                    Problem(
                        str(entry),
                        f"folder name '{entry.name}' is not a mask class (use mask_worn, incorrect_mask or no_mask)",
                    )
                )
                continue
            table, folder_problems = _read_named_photos(
                entry, _images_under(entry), MASK_WORDS[entry.name.lower()], strict=False
            )
            tables.append(table)
            problems += folder_problems
        elif entry.suffix.lower() in IMAGE_SUFFIXES:
            problems.append(Problem(str(entry), "photo outside the class folders (its mask state is unknown)"))
    return (pd.concat(tables, ignore_index=True) if tables else _table([])), problems


def _read_named_photos(folder: Path, paths: list[Path], mask: int, strict: bool) -> tuple[pd.DataFrame, list[Problem]]:
    """Photos whose labels come from UTKFace names; with ``strict`` a name that does not parse is a problem."""
    rows, problems = [], []
    for path in paths:
        gender, age, race = "", -1, ""
        try:
            age, gender, race = parse_utkface_name(path.name)
        except ValueError as reason:
            if strict:
                problems.append(
                    Problem(str(path), f"{reason}; name it so, or give --labels (e.g. from `maskcls synth label`)")
                )
                continue
        rows.append((str(path.resolve()), gender, age, race, mask, "", str(path)))
    return _table(rows), problems


def _join_labels(table: pd.DataFrame, labels_csv: Path) -> tuple[pd.DataFrame, list[Problem]]:
    """Fill unknown gender / age from a labels CSV (path, gender, age), matched by resolved path."""
    labelled, problems = _read_csv_source(labels_csv)
    by_path = {row.path: row for row in labelled.itertuples(index=False)}
    table = table.copy()
    for index, row in table.iterrows():
        known = by_path.get(row["path"])
        if known is None:
            continue
        if not row["gender"]:
            table.at[index, "gender"] = known.gender
        if row["age"] < 0:
            table.at[index, "age"] = known.age
        if not row["race"]:
            table.at[index, "race"] = known.race
    return table, problems


def _images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _class_folders(folder: Path) -> bool:
    return folder.is_dir() and any(entry.is_dir() and entry.name.lower() in MASK_WORDS for entry in folder.iterdir())


def _resolve(path: str, base: Path) -> Path:
    candidate = Path(path.strip())
    return (candidate if candidate.is_absolute() else base / candidate).resolve()


def _parse_age(text: str, problems: list[str]) -> int:
    value = text.strip()
    try:
        age = int(float(value)) if re.fullmatch(r"\d+(\.0*)?", value) else None
    except ValueError:
        age = None
    if age is None:
        problems.append(f"age '{text}' is not an integer")
        return -1
    if not 0 <= age <= MAX_AGE:
        problems.append(f"impossible age {age} (expected 0..{MAX_AGE})")
        return -1
    return age


def _table(rows: list[tuple]) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=list(PHOTO_COLUMNS))
    return table.astype({"age": np.int64, "mask": np.int64})


# ----------------------------------------------------------------------------- targets


def _require(table: pd.DataFrame, needed: tuple[str, ...], target: str) -> tuple[pd.DataFrame, list[Problem]]:
    missing = pd.DataFrame(
        {
            "gender": table["gender"] == "",
            "age": table["age"] < 0,
            "mask": table["mask"] < 0,
            "person": table["person"] == "",
        }
    )[list(needed)]
    bad = missing.any(axis=1)
    problems = []
    for row, flags in zip(table[bad].itertuples(index=False), missing[bad].itertuples(index=False), strict=False):
        absent = ", ".join(name for name, flag in zip(needed, flags, strict=False) if flag)
        problems.append(Problem(row.where, f"no {absent} for --to {target}"))
    return table[~bad].reset_index(drop=True), problems


def _complete_persons(table: pd.DataFrame) -> tuple[pd.DataFrame, list[Problem]]:
    """Keep persons with exactly 5 worn, 1 incorrect and 1 unmasked photo and one gender and age."""
    keep, problems = [], []
    for person, photos in table.groupby("person", sort=False):
        counts = np.bincount(photos["mask"], minlength=3)
        if tuple(counts) != (5, 1, 1):
            problems.append(
                Problem(
                    photos["where"].iloc[0],
                    f"person '{person}' has {counts[0]} worn, {counts[1]} incorrect and {counts[2]} "
                    "unmasked photos (the layout needs 5, 1 and 1)",
                )
            )
        elif photos["gender"].nunique() > 1 or photos["age"].nunique() > 1:
            problems.append(
                Problem(photos["where"].iloc[0], f"person '{person}' has photos with different genders or ages")
            )
        else:
            keep.append(photos)
    return (pd.concat(keep, ignore_index=True) if keep else table.iloc[:0]), problems


def _image_ids(table: pd.DataFrame, source: Path) -> list[str]:
    root = source.parent if source.is_file() else source
    ids = []
    for path in table["path"]:
        try:
            ids.append(Path(path).relative_to(root.resolve()).as_posix())
        except ValueError:
            ids.append(Path(path).as_posix().lstrip("/"))
    return ids


def _write_layout(table: pd.DataFrame, out: Path) -> None:
    stems_by_mask = {mask: [stem for stem, m in STEM_TO_MASK.items() if m == mask] for mask in range(3)}
    persons = []
    with atomic_dir(out) as tmp:
        for person, photos in table.groupby("person", sort=False):
            first = photos.iloc[0]
            race = first["race"] or "unknown"
            folder = re.sub(r"[^A-Za-z0-9_.-]", "-", f"{person}_{first['gender']}_{race}_{first['age']}")
            (tmp / "images" / folder).mkdir(parents=True)
            for mask, group in photos.sort_values("path").groupby("mask"):
                for stem, path in zip(stems_by_mask[mask], group["path"], strict=False):
                    shutil.copy2(path, tmp / "images" / folder / f"{stem}{Path(path).suffix.lower()}")
            persons.append(
                {"id": person, "gender": first["gender"], "race": race, "age": int(first["age"]), "path": folder}
            )
        pd.DataFrame(persons, columns=list(TRAIN_COLUMNS)).to_csv(tmp / "train.csv", index=False)
