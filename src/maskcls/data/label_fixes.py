"""Reviewed label fixes, applied as an overlay on a training folder's manifest: ``train.csv`` is never modified.

A fixes file is a CSV with one fix per row (extra columns, such as a reviewer's ``note``, are kept but ignored)::

    person_id,image_id,field,value
    000417,,gender,male                                   the person's gender (all 7 photos)
    000936,,age,29                                        the person's age in years
    000852,,age_group,<30                                 age group only (0/1/2 or its name); age becomes unknown (-1)
    000259,000259_female_Asian_18/normal,mask,incorrect   one photo's mask state (wear, incorrect, not_wear or 0/1/2)

Swapped ``normal`` / ``incorrect_mask`` photos are two ``mask`` rows. ``maskcls noise`` writes suggested fixes in
this format. Every row is checked against the training folder before anything is used: unknown persons or photos,
unknown fields, bad values and contradicting rows are all reported at once, with the file and line.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.labels import GENDER_BY_NAME, MASK_NAMES, STEM_TO_MASK, AgeThresholds, encode
from .layout import MAX_AGE, DataError, Problem, read_csv_table, read_train

FIX_COLUMNS = ("person_id", "image_id", "field", "value")
PERSON_FIELDS = ("gender", "age", "age_group")
PHOTO_FIELDS = ("mask",)
UNKNOWN_AGE = -1


@dataclass(frozen=True)
class LabelFixes:
    """Validated fixes: person-level values by person id, mask states by image id, and where they came from."""

    path: Path
    sha256: str
    rows: int
    person_values: dict[str, dict[str, int]]  # person_id -> {"gender": 0/1, "age": years, "age_group": 0..2}
    photo_masks: dict[str, int]  # image_id -> mask state

    def record(self) -> dict:
        """What a run writes into ``run.json`` about the fixes it trained with."""
        return {
            "path": str(self.path.resolve()),
            "sha256": self.sha256,
            "rows": self.rows,
            "persons": len(self.person_values),
            "photos": len(self.photo_masks),
        }


def read_label_fixes(
    fixes_csv: str | Path, train_dir: str | Path, thresholds: AgeThresholds = AgeThresholds()
) -> LabelFixes:
    """Read and validate ``fixes_csv`` against the persons and photo names of ``train_dir``'s ``train.csv``."""
    fixes_csv, train_dir = Path(fixes_csv), Path(train_dir)
    table = read_csv_table(fixes_csv, FIX_COLUMNS, see="a label fixes file, see README 'Label fixes'")
    persons = _persons_of(train_dir)
    owners = {folder: person_id for person_id, folder in persons.items()}
    problems: list[Problem] = []
    person_values: dict[str, dict[str, int]] = {}
    photo_masks: dict[str, int] = {}
    seen: dict[tuple[str, str], tuple[str, str]] = {}
    for line_no, row in enumerate(table.itertuples(index=False), start=2):
        where = f"{fixes_csv}:{line_no}"
        person_id, image_id, field, raw = (str(getattr(row, c)).strip() for c in FIX_COLUMNS)
        field = field.lower()
        if field not in PERSON_FIELDS + PHOTO_FIELDS:
            problems.append(
                Problem(where, f"unknown field '{field}' (expected {', '.join(PERSON_FIELDS + PHOTO_FIELDS)})")
            )
            continue
        if field in PHOTO_FIELDS:
            folder, _, stem = image_id.rpartition("/")
            if not image_id:
                problems.append(
                    Problem(
                        where,
                        f"a '{field}' fix needs the photo's image_id "
                        "(person folder/stem, e.g. 000001_male_Asian_45/normal)",
                    )
                )
                continue
            owner = owners.get(folder)
            if owner is None or stem not in STEM_TO_MASK:
                problems.append(
                    Problem(
                        where,
                        f"unknown photo '{image_id}' "
                        f"(expected <person folder in train.csv>/<{'|'.join(STEM_TO_MASK)}>)",
                    )
                )
                continue
            if person_id and person_id != owner:
                problems.append(Problem(where, f"photo '{image_id}' belongs to person '{owner}', not '{person_id}'"))
                continue
            target = image_id
        else:
            if person_id not in persons:
                problems.append(
                    Problem(where, f"unknown person '{person_id}' (not an id in {train_dir / 'train.csv'})")
                )
                continue
            if image_id:
                problems.append(
                    Problem(where, f"'{field}' belongs to the person: leave image_id empty (got '{image_id}')")
                )
                continue
            target = person_id
        value, reason = _parse(field, raw, thresholds)
        if reason:
            problems.append(Problem(where, reason))
            continue
        key = (target, "age" if field == "age_group" else field)
        if key in seen and seen[key] != (field, raw):
            problems.append(
                Problem(
                    where,
                    f"contradicts an earlier row for {target}: {seen[key][0]}={seen[key][1]!r} vs {field}={raw!r}",
                )
            )
            continue
        seen[key] = (field, raw)
        if field in PHOTO_FIELDS:
            photo_masks[target] = value
        else:
            person_values.setdefault(target, {})[field] = value
    if problems:
        raise DataError(f"{len(problems)} problem(s) in the label fixes {fixes_csv}; nothing was used.", problems)
    return LabelFixes(
        fixes_csv, hashlib.sha256(fixes_csv.read_bytes()).hexdigest(), len(table), person_values, photo_masks
    )


def apply_label_fixes(
    manifest: pd.DataFrame, fixes: LabelFixes, thresholds: AgeThresholds = AgeThresholds()
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A copy of ``manifest`` with the fixes applied (labels recomputed), and one row per changed photo
    (image_id, person_id, field, old, new)."""
    fixed = manifest.copy()
    changes = []
    for person_id, values in fixes.person_values.items():
        rows = np.flatnonzero((fixed["person_id"] == person_id).to_numpy())
        for field, value in values.items():
            column = "age_group" if field == "age_group" else field
            for row in rows:
                old = int(fixed.at[row, column])
                if field == "age":
                    fixed.at[row, "age_group"] = thresholds.group(value)
                elif field == "age_group":
                    fixed.at[row, "age"] = UNKNOWN_AGE
                fixed.at[row, column] = value
                if old != value:
                    changes.append(
                        {
                            "image_id": fixed.at[row, "image_id"],
                            "person_id": person_id,
                            "field": field,
                            "old": old,
                            "new": value,
                        }
                    )
    row_of = {image_id: row for row, image_id in enumerate(fixed["image_id"])}
    for image_id, mask in fixes.photo_masks.items():
        row = row_of.get(image_id)
        if row is None:  # the photo was left out (a problem photo): nothing to fix
            continue
        old = int(fixed.at[row, "mask"])
        fixed.at[row, "mask"] = mask
        if old != mask:
            changes.append(
                {
                    "image_id": image_id,
                    "person_id": fixed.at[row, "person_id"],
                    "field": "mask",
                    "old": old,
                    "new": mask,
                }
            )
    fixed["label"] = encode(fixed["mask"].to_numpy(), fixed["gender"].to_numpy(), fixed["age_group"].to_numpy()).astype(
        np.int64
    )
    return fixed, pd.DataFrame(changes, columns=["image_id", "person_id", "field", "old", "new"])


def read_train_with_fixes(
    train_dir: str | Path, thresholds: AgeThresholds = AgeThresholds(), fixes_csv: str | Path | None = None
) -> tuple[pd.DataFrame, list[Problem], LabelFixes | None]:
    """``read_train`` with an optional fixes overlay: the manifest every command that reads labels should use."""
    manifest, problems = read_train(train_dir, thresholds)
    if fixes_csv is None:
        return manifest, problems, None
    fixes = read_label_fixes(fixes_csv, train_dir, thresholds)
    manifest, _ = apply_label_fixes(manifest, fixes, thresholds)
    return manifest, problems, fixes


def _persons_of(train_dir: Path) -> dict[str, str]:
    """person id -> person folder, from ``train.csv`` (the same file ``read_train`` reads, never written)."""
    csv_path = train_dir / "train.csv"
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: file not found (label fixes are checked against the training folder)")
    table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    if not {"id", "path"} <= set(table.columns):
        raise DataError(f"{csv_path}: missing column(s) id / path")
    return dict(zip(table["id"].str.strip(), table["path"].str.strip(), strict=False))


def _parse(field: str, raw: str, thresholds: AgeThresholds) -> tuple[int, str]:
    """``(value, "")`` or ``(0, reason)``."""
    text = raw.strip().lower()
    if field == "gender":
        if text in GENDER_BY_NAME:
            return int(GENDER_BY_NAME[text]), ""
        return 0, f"gender '{raw}' is not male or female"
    if field == "age":
        if text.isdigit() and 0 <= int(text) <= MAX_AGE:
            return int(text), ""
        return 0, f"age '{raw}' is not an integer 0..{MAX_AGE}"
    if field == "age_group":
        names = [name.lower() for name in thresholds.names()]
        if text in ("0", "1", "2"):
            return int(text), ""
        if text in names:
            return names.index(text), ""
        return 0, f"age_group '{raw}' is not 0, 1, 2 or one of {', '.join(thresholds.names())}"
    if text in ("0", "1", "2"):
        return int(text), ""
    if text in MASK_NAMES:
        return MASK_NAMES.index(text), ""
    return 0, f"mask '{raw}' is not one of {', '.join(MASK_NAMES)} (or 0, 1, 2)"
