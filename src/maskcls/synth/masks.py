"""``maskcls synth masks``: plain face photos in, the competition layout out.

Each usable photo becomes one person: five correctly worn masks of different kinds (mask1..5), one
worn incorrectly (incorrect_mask: nose exposed, on the chin, or only the mouth covered) and the photo
itself (normal). Labels come from the input (a CSV with path, gender, age; UTKFace-style names; or
a labels CSV from ``maskcls synth label``). Every input row is listed in ``synth_log.csv`` with what
was drawn or why it was skipped (no face, several faces, unreadable photo, missing labels).

Each person's draws come from a generator seeded by (``seed``, the person's id), so the output
does not depend on the order or the number of worker processes.
"""

from __future__ import annotations

import multiprocessing
import re
import shutil
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..core.io import atomic_dir, write_csv
from ..core.progress import track
from ..data.faces import DEFAULT_DETECTOR, DEFAULT_UPSAMPLE, FaceFinder
from ..data.images import ImageError, read_image
from ..data.importers import read_photos
from ..data.layout import DataError, read_train
from .render import INCORRECT_MODES, KINDS, Template, load_templates, random_style, render_mask

CORRECT_STEMS = ("mask1", "mask2", "mask3", "mask4", "mask5")
LOG_COLUMNS = ("source", "where", "status", "reason", "person", "drawn")


@dataclass(frozen=True)
class SynthOptions:
    seed: int = 0
    detector: str = DEFAULT_DETECTOR
    upsample: int = DEFAULT_UPSAMPLE
    quality: int = 90
    template_share: float = 0.5
    templates: tuple[Template, ...] = ()


def synthesize_masks(
    faces: str | Path,
    out_dir: str | Path,
    labels: str | Path | None = None,
    options: SynthOptions = SynthOptions(),
    templates_dir: str | Path | None = None,
    workers: int = 1,
    force: bool = False,
    progress: bool = True,
) -> dict:
    """Write ``out_dir/train.csv``, ``out_dir/images/<person>/`` and ``out_dir/synth_log.csv``; returns counts."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        if not force:
            raise FileExistsError(f"{out_dir} is not empty; use --force to replace it")
        shutil.rmtree(out_dir)
    if templates_dir is not None:
        options = SynthOptions(**{**options.__dict__, "templates": load_templates(templates_dir)})
    FaceFinder(options.detector, options.upsample)  # a missing extra or a bad option fails before any work
    table, problems = read_photos(faces, labels=labels)
    log = [
        {"source": p.file, "where": p.file, "status": "skipped", "reason": p.reason, "person": "", "drawn": ""}
        for p in problems
    ]
    tasks = _person_tasks(table, out_dir / "images", options)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    results = []
    if workers > 1:  # spawned, not forked: a fork of a process whose thread pools (BLAS, OpenMP) ran can hang
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for result in track(
                pool.map(_make_person, tasks, chunksize=4), f"synthesizing {len(tasks)} persons", len(tasks), progress
            ):
                results.append(result)
    else:
        results = [
            _make_person(task) for task in track(tasks, f"synthesizing {len(tasks)} persons", len(tasks), progress)
        ]
    persons = []
    for task, result in zip(tasks, results, strict=False):
        log.append(
            {
                "source": task["path"],
                "where": task["where"],
                "status": "ok" if result["ok"] else "skipped",
                "reason": result["reason"],
                "person": task["folder"] if result["ok"] else "",
                "drawn": result["drawn"],
            }
        )
        if result["ok"]:
            persons.append(
                {
                    "id": task["id"],
                    "gender": task["gender"],
                    "race": task["race"],
                    "age": task["age"],
                    "path": task["folder"],
                }
            )
    write_csv(out_dir / "synth_log.csv", pd.DataFrame(log, columns=list(LOG_COLUMNS)))
    write_csv(out_dir / "train.csv", pd.DataFrame(persons, columns=["id", "gender", "race", "age", "path"]))
    _, layout_problems = read_train(out_dir)
    if layout_problems:  # our own output must pass our own checks
        raise DataError(f"{out_dir}: the synthesized layout has problems", layout_problems)
    skipped = [row for row in log if row["status"] == "skipped"]
    reasons = pd.Series([_reason_kind(row["reason"]) for row in skipped], dtype=str).value_counts().to_dict()
    return {
        "out": str(out_dir),
        "inputs": len(log),
        "persons": len(persons),
        "photos": 7 * len(persons),
        "skipped": len(skipped),
        "skipped_by_reason": reasons,
    }


def _person_tasks(table: pd.DataFrame, images_dir: Path, options: SynthOptions) -> list[dict]:
    tasks, used = [], set()
    for row in table.itertuples(index=False):
        person = row.person or Path(row.path).stem
        person_id = re.sub(r"[^A-Za-z0-9_.-]", "-", person)
        while person_id in used:  # two photos named alike in different folders
            person_id += "_"
        used.add(person_id)
        race = row.race or "unknown"
        folder = f"{person_id}_{row.gender or 'unknown'}_{race}_{row.age}"
        tasks.append(
            {
                "path": row.path,
                "where": row.where,
                "id": person_id,
                "gender": row.gender,
                "age": int(row.age),
                "race": race,
                "folder": folder,
                "target": str(images_dir / folder),
                "seed": [options.seed, zlib.crc32(person_id.encode())],
                "options": options,
            }
        )
    return tasks


_FINDERS: dict[tuple[str, int], FaceFinder] = {}


def _make_person(task: dict) -> dict:
    """Draw and write one person's seven photos; never raises for a bad photo (the reason is returned)."""
    options: SynthOptions = task["options"]
    if not task["gender"] or task["age"] < 0:
        return {
            "ok": False,
            "reason": "no gender / age for this photo (give them in the CSV, a UTKFace-style name or --labels)",
            "drawn": "",
        }
    try:
        image = read_image(task["path"])
    except ImageError as err:
        return {"ok": False, "reason": f"unreadable image: {err}", "drawn": ""}
    key = (options.detector, options.upsample)
    finder = _FINDERS.setdefault(key, FaceFinder(*key))
    faces = finder.find(image)
    if len(faces) != 1:
        reason = "no face found" if not faces else f"{len(faces)} faces found (one face per photo is needed)"
        return {
            "ok": False,
            "reason": f"{reason} ({options.detector} detector, upsample {options.upsample})",
            "drawn": "",
        }
    rng = np.random.default_rng(task["seed"])
    landmarks = faces[0].landmarks
    kinds = list(rng.permutation(["surgical", "surgical", "cloth", "cloth", "kf94", "n95"])[:5])
    photos, drawn = {}, []
    for stem, kind in zip(CORRECT_STEMS, kinds, strict=False):
        style = random_style(rng, kind, options.templates, options.template_share)
        photos[stem] = render_mask(image, landmarks, style, "correct", rng).image
        drawn.append(f"{stem}={style.name}")
    wear = rng.choice(list(INCORRECT_MODES), p=list(INCORRECT_MODES.values()))
    style = random_style(
        rng, KINDS[rng.choice(len(KINDS), p=[0.5, 0.3, 0.1, 0.1])], options.templates, options.template_share
    )
    photos["incorrect_mask"] = render_mask(image, landmarks, style, str(wear), rng).image
    drawn.append(f"incorrect_mask={style.name}:{wear}")
    _write_person(Path(task["target"]), photos, task["path"], options.quality)
    return {"ok": True, "reason": "", "drawn": " ".join(drawn)}


def _write_person(folder: Path, photos: dict[str, np.ndarray], normal_source: str, quality: int) -> None:
    """The seven photos appear at once (a temp folder renamed): a killed job leaves no half person."""
    with atomic_dir(folder) as tmp:
        for stem, pixels in photos.items():
            Image.fromarray(pixels).save(tmp / f"{stem}.jpg", quality=quality)
        if Path(normal_source).suffix.lower() in (".jpg", ".jpeg"):
            shutil.copyfile(normal_source, tmp / "normal.jpg")  # the unmasked photo stays byte for byte the original
        else:
            Image.fromarray(read_image(normal_source)).save(tmp / "normal.jpg", quality=quality)


def _reason_kind(reason: str) -> str:
    return reason.split(" (")[0].split(":")[0]
