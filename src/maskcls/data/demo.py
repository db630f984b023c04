"""A procedurally drawn stand-in for the licensed competition data, in its exact layout.

Faces are drawn with Pillow: skin tone, face shape, hair (style by gender, grey and receding with
age), wrinkles with age, and a mask worn properly, below the nose, on the chin, or not at all.
Cues overlap on purpose (some women have short hair, grey hair comes early or late), pose,
lighting, background and JPEG quality vary, so the task is learnable but not trivial. Person counts
per gender x age group follow the original competition. It exists so anyone can run the whole
pipeline in minutes; it says nothing about accuracy on real photos.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter

from ..core.io import atomic_dir
from ..core.labels import STEM_TO_MASK, Mask

# Persons per (gender, age group) in the original competition: male <30, 30-59, 60+, female ...
COMPETITION_PERSONS = {(0, 0): 549, (0, 1): 410, (0, 2): 83, (1, 0): 732, (1, 1): 817, (1, 2): 109}
AGE_RANGES = {0: (18, 29), 1: (30, 59), 2: (60, 82)}
RACES = ("Asian", "White", "Black", "Indian", "Other")
SKIN_TONES = [(255, 224, 196), (241, 194, 160), (224, 172, 130), (198, 134, 96), (160, 102, 66), (110, 70, 46)]
HAIR_COLOURS = [(25, 20, 18), (60, 40, 28), (110, 75, 45), (180, 140, 90), (140, 60, 30)]
MASK_STYLES = [  # any photo's mask, worn well or badly, is one of these: colour is no shortcut to the class
    ((235, 238, 242), None),
    ((140, 185, 225), None),
    ((40, 40, 45), None),
    ((200, 200, 205), "stripes"),
    ((230, 160, 170), "dots"),
    ((120, 150, 110), None),
]
CANVAS = (192, 256)  # drawn at twice the output size, then downsampled: cheap anti-aliasing


@dataclass
class Person:
    gender: int
    age: int
    race: str
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    long_hair: bool
    face_ratio: float
    beard: bool
    bald: float
    wrinkles: float


def generate_demo(
    out_dir: str | Path,
    persons: int = 200,
    eval_persons: int = 40,
    size_hw=(128, 96),
    seed: int = 0,
    force: bool = False,
) -> Path:
    """Write ``out_dir/train`` and ``out_dir/eval`` in the competition layout; returns ``out_dir``.

    ``out_dir/eval_answers.csv`` holds the true classes of the eval photos (the demo knows them), so
    a demo submission can be scored.
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not force:
            raise FileExistsError(f"{out_dir} exists; pass force=True (--force) to replace it")
        shutil.rmtree(out_dir)
    rng = np.random.default_rng(seed)
    with atomic_dir(out_dir) as tmp:
        train_people = [_random_person(rng, g, a) for g, a in _group_plan(persons, rng)]
        eval_people = [_random_person(rng, g, a) for g, a in _group_plan(eval_persons, rng)]
        _write_train(tmp / "train", train_people, rng, size_hw)
        answers = _write_eval(tmp / "eval", eval_people, rng, size_hw, first_id=len(train_people) + 1)
        answers.to_csv(tmp / "eval_answers.csv", index=False)
    return out_dir


def _group_plan(count: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """(gender, age group) of ``count`` persons in the competition's proportions (largest remainder)."""
    total = sum(COMPETITION_PERSONS.values())
    exact = {k: count * v / total for k, v in COMPETITION_PERSONS.items()}
    counts = {k: int(v) for k, v in exact.items()}
    for key in sorted(exact, key=lambda k: exact[k] - counts[k], reverse=True)[: count - sum(counts.values())]:
        counts[key] += 1
    plan = [key for key, n in counts.items() for _ in range(n)]
    rng.shuffle(plan)
    return plan


def _random_person(rng: np.random.Generator, gender: int, age_group: int) -> Person:
    low, high = AGE_RANGES[age_group]
    age = int(rng.integers(low, high + 1))
    oldness = np.clip((age - 18) / 60 + rng.normal(0, 0.12), 0, 1)
    base_hair = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))]
    grey = float(np.clip((age - 38) / 35 + rng.normal(0, 0.15), 0, 0.95))
    hair = tuple(int(c * (1 - grey) + 205 * grey) for c in base_hair)
    male = gender == 0
    return Person(
        gender=gender,
        age=age,
        race=RACES[rng.integers(len(RACES))],
        skin=tuple(int(np.clip(c + rng.normal(0, 8), 0, 255)) for c in SKIN_TONES[rng.integers(len(SKIN_TONES))]),
        hair=hair,
        long_hair=bool(rng.random() < (0.12 if male else 0.82)),
        face_ratio=float(rng.normal(0.86 if male else 0.78, 0.035)),
        beard=bool(male and rng.random() < 0.35),
        bald=float(np.clip((age - 45) / 40 + rng.normal(0, 0.15), 0, 0.8)) if male else 0.0,
        wrinkles=float(oldness),
    )


def _write_train(train_dir: Path, people: list[Person], rng, size_hw) -> None:
    rows = []
    for number, person in enumerate(people, start=1):
        person_id = f"{number:06d}"
        folder = f"{person_id}_{'male' if person.gender == 0 else 'female'}_{person.race}_{person.age}"
        rows.append(
            {
                "id": person_id,
                "gender": "male" if person.gender == 0 else "female",
                "race": person.race,
                "age": person.age,
                "path": folder,
            }
        )
        target = train_dir / "images" / folder
        target.mkdir(parents=True)
        for stem in STEM_TO_MASK:
            _draw_photo(person, stem, rng, size_hw).save(target / f"{stem}.jpg", quality=int(rng.integers(78, 95)))
    pd.DataFrame(rows).to_csv(train_dir / "train.csv", index=False)


def _write_eval(eval_dir: Path, people: list[Person], rng, size_hw, first_id: int) -> pd.DataFrame:
    from ..core.labels import AgeThresholds, encode

    (eval_dir / "images").mkdir(parents=True)
    rows = []
    for number, person in enumerate(people, start=first_id):
        for stem, mask in STEM_TO_MASK.items():
            name = hashlib.sha1(f"{number}-{stem}-{rng.random()}".encode()).hexdigest() + ".jpg"
            _draw_photo(person, stem, rng, size_hw).save(eval_dir / "images" / name, quality=int(rng.integers(78, 95)))
            rows.append({"ImageID": name, "label": encode(mask, person.gender, AgeThresholds().group(person.age))})
    answers = pd.DataFrame(rows).sample(frac=1.0, random_state=int(rng.integers(1 << 31))).reset_index(drop=True)
    answers.assign(ans=0)[["ImageID", "ans"]].to_csv(eval_dir / "info.csv", index=False)
    return answers


def _draw_photo(person: Person, stem: str, rng: np.random.Generator, size_hw) -> Image.Image:
    width, height = CANVAS
    top, bottom = _random_colour(rng), _random_colour(rng)
    ramp = np.linspace(0, 1, height)[:, None, None]
    background = (np.array(top) * (1 - ramp) + np.array(bottom) * ramp) * np.ones((1, width, 1))
    photo = Image.fromarray(background.astype(np.uint8))

    layer = Image.new("RGBA", CANVAS, (0, 0, 0, 0))
    _draw_person(ImageDraw.Draw(layer), person, STEM_TO_MASK[stem], rng)
    angle = rng.normal(0, 6)
    scale = rng.uniform(0.88, 1.08)
    layer = layer.rotate(angle, resample=Image.Resampling.BILINEAR, translate=tuple(rng.normal(0, 7, 2)))
    layer = layer.resize((int(width * scale), int(height * scale)), Image.Resampling.BILINEAR)
    photo.paste(layer, ((width - layer.width) // 2, (height - layer.height) // 2 + 10), layer)

    pixels = np.asarray(photo, dtype=np.float32)
    light = rng.uniform(0.7, 1.25) * (1 + rng.uniform(-0.25, 0.25) * np.linspace(-1, 1, width)[None, :, None])
    pixels = pixels * light + rng.normal(0, 5, pixels.shape)
    photo = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    if rng.random() < 0.3:
        photo = photo.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
    return photo.resize((size_hw[1], size_hw[0]), Image.Resampling.LANCZOS)


def _draw_person(draw: ImageDraw.ImageDraw, p: Person, mask: Mask, rng) -> None:
    cx, cy = 96, 112
    face_h = 118
    face_w = face_h * p.face_ratio
    left, right, top, bottom = cx - face_w / 2, cx + face_w / 2, cy - face_h / 2, cy + face_h / 2
    shade = tuple(int(c * 0.85) for c in p.skin)
    draw.ellipse((cx - 95, bottom + 8, cx + 95, bottom + 150), fill=_random_colour(rng) + (255,))  # shoulders
    draw.rectangle((cx - 18, bottom - 15, cx + 18, bottom + 20), fill=shade + (255,))  # neck
    if p.long_hair:
        draw.rounded_rectangle((left - 14, top + 5, right + 14, bottom + 45), radius=28, fill=p.hair + (255,))
    draw.ellipse((left - 8, cy - 12, left + 8, cy + 14), fill=shade + (255,))  # ears
    draw.ellipse((right - 8, cy - 12, right + 8, cy + 14), fill=shade + (255,))
    if p.gender == 0:  # squarer jaw
        draw.rounded_rectangle((left + 4, cy, right - 4, bottom - 2), radius=22, fill=p.skin + (255,))
    draw.ellipse((left, top, right, bottom), fill=p.skin + (255,))

    hair_drop = 22 if p.long_hair else 14
    draw.chord((left - 4, top - 10, right + 4, top + 2 * hair_drop + 30 * (1 - p.bald)), 180, 360, fill=p.hair + (255,))
    if p.long_hair:
        draw.rectangle((left - 4, top + 20, left + 9, cy + 30), fill=p.hair + (255,))
        draw.rectangle((right - 9, top + 20, right + 4, cy + 30), fill=p.hair + (255,))

    eye_y = cy - 8
    brow = 4 if p.gender == 0 else 2
    for ex in (cx - 19, cx + 19):
        draw.ellipse((ex - 8, eye_y - 4, ex + 8, eye_y + 4), fill=(250, 250, 250, 255))
        draw.ellipse((ex - 3, eye_y - 3, ex + 3, eye_y + 3), fill=(40, 30, 25, 255))
        draw.line(
            (ex - 10, eye_y - 11, ex + 10, eye_y - 12), fill=tuple(int(c * 0.6) for c in p.hair) + (255,), width=brow
        )
        if p.gender == 1:
            draw.line((ex - 8, eye_y - 5, ex + 8, eye_y - 5), fill=(20, 15, 15, 255), width=2)  # lashes
    wrinkle = tuple(int(c * 0.72) for c in p.skin) + (255,)
    for i in range(int(p.wrinkles * 5)):  # forehead lines
        y = top + 26 + 6 * i
        draw.arc((cx - 26, y - 4, cx + 26, y + 4), 200, 340, fill=wrinkle, width=1 + int(p.wrinkles > 0.7))
    if p.wrinkles > 0.5:  # crow's feet
        for ex, sign in ((cx - 19, -1), (cx + 19, 1)):
            for dy in (-3, 0, 3):
                draw.line((ex + sign * 11, eye_y + dy, ex + sign * 17, eye_y + dy * 2), fill=wrinkle, width=1)
    nose_y = cy + 14
    draw.polygon([(cx, eye_y + 4), (cx - 6, nose_y), (cx + 6, nose_y)], fill=shade + (255,))
    mouth_y = cy + 31
    lips = (190, 70, 80) if p.gender == 1 else (160, 90, 85)
    draw.ellipse((cx - 13, mouth_y - 4, cx + 13, mouth_y + 4), fill=lips + (255,))
    if p.wrinkles > 0.6:
        draw.arc((cx - 30, nose_y - 6, cx - 8, mouth_y + 12), 100, 200, fill=wrinkle, width=1)
        draw.arc((cx + 8, nose_y - 6, cx + 30, mouth_y + 12), 340, 80, fill=wrinkle, width=1)
    if p.beard:
        stubble = tuple(int(c * 0.55) for c in p.hair) + (255,)
        for _ in range(140):
            x, y = rng.uniform(left + 10, right - 10), rng.uniform(mouth_y - 6, bottom - 4)
            draw.point((x, y), fill=stubble)

    if mask is Mask.NOT_WEAR:
        return
    colour, pattern = MASK_STYLES[rng.integers(len(MASK_STYLES))]
    colour = tuple(int(np.clip(c + rng.normal(0, 12), 0, 255)) for c in colour)
    if mask is Mask.WEAR:
        mask_top = eye_y + 9
    elif rng.random() < 0.6:  # pulled below the nose
        mask_top = nose_y + 2
    else:  # on the chin
        mask_top = mouth_y + 6
    outline = [
        (left + 2, mask_top),
        (right - 2, mask_top),
        (right - 6, bottom - 20),
        (cx + 20, bottom + 2),
        (cx - 20, bottom + 2),
        (left + 6, bottom - 20),
    ]
    draw.polygon(outline, fill=colour + (255,))
    for side in (left, right):
        draw.line((side + (3 if side == left else -3), mask_top + 3, side, cy - 2), fill=(230, 230, 230, 255), width=2)
    if pattern == "stripes":
        for y in range(int(mask_top) + 6, int(bottom), 8):
            draw.line((left + 6, y, right - 6, y), fill=(120, 120, 200, 255), width=2)
    elif pattern == "dots":
        for _ in range(25):
            x, y = rng.uniform(left + 8, right - 8), rng.uniform(mask_top + 4, bottom - 8)
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=(255, 255, 255, 255))
    draw.line((left + 2, mask_top, right - 2, mask_top), fill=tuple(int(c * 0.7) for c in colour) + (255,), width=2)


def _random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(30, 230, 3))
