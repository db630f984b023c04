"""Which faces the face-attribute model should learn from, measured on finished solves.

    python benchmarks/face_attribute_sources.py ../shared/data/plain_faces/labels.csv --features runs/plain_attr.csv \
        --solves runs/new20 runs/new30 runs/new60 runs/new20s11 runs/new30s11 runs/new60s11

The stage fits its model on the members' training persons only. plain_faces holds 1,548 more labelled faces,
but adding all of them lowered the test persons' score (docs/results.md, "Face attributes"): its 100 faces
per group below 60 are not drawn like utkmask18's (its 30-59 faces are all 30 to 34 years old), so they teach
the age model a wrong picture of that group. Here each source of extra faces is tried per age group. For each
``--solves`` folder (output of ``solve_on_persons.py``), the model is refitted with the solve's own cached
features of its training persons plus the chosen plain faces, each group's face is the one solve chose, and
the submission is rebuilt as the solve built it (evidence, the age rule re-matched where kept, pooling where
kept) and scored on the test persons and on solve's own holdout. ``--features``: a cache of the plain faces'
attributes (read once, about 2 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from maskcls.core.labels import GENDER_BY_NAME, AgeThresholds
from maskcls.core.metrics import macro_f1
from maskcls.core.tables import PROB_COLUMNS, read_test_probs
from maskcls.ensemble.person_consistency import person_consistent_probs, read_groups
from maskcls.ensemble.prior_match import label_shares, match_priors
from maskcls.persons.attributes import (
    ATTRIBUTE_COLUMNS,
    PersonAttributeModel,
    cached_face_attributes,
    gender_age_of,
    with_evidence,
)
from maskcls.solver.decision_rule import submitted_probs
from maskcls.solver.face_evidence import ATTRIBUTES_FILE, face_photo_rows, training_faces

SOURCES = {  # name: age groups (0 <30, 1 30-59, 2 60+) of plain_faces added to the training persons
    "training persons (the stage now)": (),
    "+ plain faces 60+": (2,),
    "+ plain faces <30 and 60+": (0, 2),
    "+ all plain faces": (0, 1, 2),
}
OLD_SAMPLES = (60, 150, 400)  # also: this many plain faces of 60+ drawn at random (utkmask18's 799 hold about 57)
DRAWS = 3


def plain_faces(labels_csv: Path, cache: Path, thresholds: AgeThresholds) -> tuple[np.ndarray, np.ndarray]:
    """Features and gender x age of every readable plain face."""
    table = pd.read_csv(labels_csv)
    photos = pd.DataFrame({"image_id": table["path"], "path": [str(labels_csv.parent / p) for p in table["path"]]})
    features = cached_face_attributes(photos, cache)[ATTRIBUTE_COLUMNS].to_numpy(np.float64)
    gender_age = table["gender"].map(GENDER_BY_NAME).to_numpy(np.int64) * 3 + thresholds.group(table["age"])
    readable = np.all(np.isfinite(features), axis=1)
    return features[readable], gender_age[readable]


def rebuild(run: Path, extra: tuple[np.ndarray, np.ndarray], thresholds: AgeThresholds) -> dict:
    """The solve's submission rebuilt with an attribute model fitted on its training persons plus ``extra``."""
    persons = json.loads((run / "solve" / "summary.json").read_text())["persons"]
    attributes = pd.read_csv(run / "solve" / "persons" / ATTRIBUTES_FILE, dtype={"image_id": str, "path": str})
    by_path = attributes.drop_duplicates("path").set_index("path")[ATTRIBUTE_COLUMNS]
    faces = training_faces(persons["face_attributes"]["sources"], thresholds)
    features = by_path.loc[faces["path"].astype(str)].to_numpy(np.float64)
    readable = np.all(np.isfinite(features), axis=1)
    labels = gender_age_of(faces["label"].to_numpy())[readable]
    model = PersonAttributeModel().fit(
        np.concatenate([features[readable], extra[0]]), np.concatenate([labels, extra[1]])
    )
    final = read_test_probs(run / "solve" / "final" / "test_probs.csv")
    raw = final[PROB_COLUMNS].to_numpy(np.float64)
    groups = read_groups(persons["groups"], final["image_id"])
    by_id = attributes.drop_duplicates("image_id").set_index("image_id")[ATTRIBUTE_COLUMNS]
    read = np.where(final["image_id"].astype(str).isin(by_id.index).to_numpy()[:, None], raw, np.nan)
    face_ids = final["image_id"].iloc[face_photo_rows(read, groups)].astype(str)  # the faces solve read
    added = with_evidence(raw, model.evidence(by_id.loc[face_ids].to_numpy(np.float64)))
    rule = persons["rule"]
    if rule["kept"]:  # matched again on the new evidence, to the training persons' shares, as solve matches it
        rule = {**rule, "offsets": match_priors(added, label_shares(faces["label"].to_numpy(), "age"), "age")}
    pool = None
    if persons["kept"]:
        pool = partial(person_consistent_probs, groups=groups, group_size=persons["group_size"])
    predicted = submitted_probs(added, rule, pool).argmax(axis=1)
    answers = pd.concat([pd.read_csv(run / "split/answers.csv"), pd.read_csv(run / "solve/holdout/answers.csv")])
    truth = final["image_id"].map(dict(zip(answers["image_id"], answers["label"], strict=True))).to_numpy()
    scores = {}
    for name in ("test", "holdout"):
        rows = final["image_id"].str.startswith(f"{name}/").to_numpy()
        scores[name] = round(macro_f1(truth[rows].astype(np.int64), predicted[rows]), 4)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("plain_faces", type=Path, help="plain_faces/labels.csv")
    parser.add_argument("--features", type=Path, required=True, help="cache CSV of the plain faces' attributes")
    parser.add_argument("--solves", type=Path, nargs="+", required=True)
    parser.add_argument("--out", type=Path, help="write the table as JSON here")
    args = parser.parse_args()
    thresholds = AgeThresholds()
    features, gender_age = plain_faces(args.plain_faces, args.features, thresholds)
    sources = {name: [np.flatnonzero(np.isin(gender_age % 3, ages))] for name, ages in SOURCES.items()}
    old = np.flatnonzero(gender_age % 3 == 2)
    for count in OLD_SAMPLES:
        draws = [np.random.default_rng(seed).choice(old, count, replace=False) for seed in range(DRAWS)]
        sources[f"+ {count} plain faces 60+ (mean of {DRAWS} draws)"] = draws
    report = {}
    for name, draws in sources.items():
        report[name] = {"plain_faces": len(draws[0])}
        for run in args.solves:
            scores = [rebuild(run, (features[rows], gender_age[rows]), thresholds) for rows in draws]
            report[name][run.name] = {k: round(float(np.mean([s[k] for s in scores])), 4) for k in scores[0]}
        for split in ("test", "holdout"):
            report[name][f"{split}_mean"] = round(float(np.mean([report[name][r.name][split] for r in args.solves])), 4)
        print(name, json.dumps(report[name]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
