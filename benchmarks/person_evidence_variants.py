"""How the face's evidence is weighed and where it comes from, measured on finished solves.

    python benchmarks/person_evidence_variants.py --features runs/second_faces.csv \
        --solves runs/new20 runs/new20s11 runs/new20s13 ... [--out benchmarks/results/person_evidence_variants.json]

For each ``--solves`` folder (output of ``solve_on_persons.py``) the submission is rebuilt as the solve built it
(the face's evidence, the age rule matched again where kept, pooling where kept; as ``face_attribute_sources.py``)
with one thing changed, and scored on the test persons and on solve's own holdout:

- **weight**: the evidence multiplied by w before it is added (solve adds it once: w = 1);
- **holdout persons**: the attribute model fitted on the holdout's persons as well, as a refit after the decisions
  would (the holdout has then been learnt from: only the test persons' score compares);
- **second photo**: each person's incorrectly worn photo read by the face models too (the training persons' from
  their labels, each eval group's the photo the final combination finds most likely incorrectly worn), a second
  attribute model fitted on those, and its evidence (times 0.5 or 1) added to the unmasked photo's. ``--features``
  caches those photos' attributes, by real path, so solves of one split share them.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path

import numpy as np
import pandas as pd

from maskcls.core.labels import AgeThresholds, Mask
from maskcls.core.metrics import macro_f1
from maskcls.core.tables import PROB_COLUMNS, read_test_probs
from maskcls.data.layout import read_eval, read_train
from maskcls.ensemble.person_consistency import person_consistent_probs, read_groups
from maskcls.ensemble.prior_match import label_shares, match_priors
from maskcls.persons.attributes import (
    ATTRIBUTE_COLUMNS,
    GENDER_AGE,
    PersonAttributeModel,
    cached_face_attributes,
    gender_age_of,
    with_evidence,
)
from maskcls.solver.decision_rule import submitted_probs
from maskcls.solver.face_evidence import ATTRIBUTES_FILE, face_photo_rows, training_faces


@dataclass(frozen=True)
class Variant:
    weight: float = 1.0
    holdout_persons: bool = False
    second_photo: float = 0.0  # weight of the incorrectly worn photo's evidence (0: not read)


VARIANTS = {
    "the stage (w = 1)": Variant(),
    "w = 0.5": Variant(weight=0.5),
    "w = 0.75": Variant(weight=0.75),
    "w = 1.25": Variant(weight=1.25),
    "w = 1.5": Variant(weight=1.5),
    "w = 2": Variant(weight=2.0),
    "+ holdout persons": Variant(holdout_persons=True),
    "+ second photo x 0.5": Variant(second_photo=0.5),
    "+ second photo": Variant(second_photo=1.0),
}


def fitted(features: np.ndarray, gender_age: np.ndarray) -> PersonAttributeModel:
    readable = np.all(np.isfinite(features), axis=1)
    return PersonAttributeModel().fit(features[readable], gender_age[readable])


class Solve:
    """One finished solve's saved predictions, groups, answers and face features."""

    def __init__(self, run: Path, second_faces: Path, thresholds: AgeThresholds):
        self.run, self.thresholds = run, thresholds
        self.persons = json.loads((run / "solve" / "summary.json").read_text())["persons"]
        final = read_test_probs(run / "solve" / "final" / "test_probs.csv")
        self.ids = final["image_id"].astype(str)
        self.raw = final[PROB_COLUMNS].to_numpy(np.float64)
        self.groups = read_groups(self.persons["groups"], final["image_id"])
        cache = pd.read_csv(run / "solve" / "persons" / ATTRIBUTES_FILE, dtype={"image_id": str, "path": str})
        self.by_id = cache.drop_duplicates("image_id").set_index("image_id")[ATTRIBUTE_COLUMNS]
        self.train_dirs = self.persons["face_attributes"]["sources"]
        self.faces = training_faces(self.train_dirs, thresholds)
        holdout = pd.read_csv(run / "solve" / "holdout" / "answers.csv", dtype={"image_id": str})
        answers = pd.concat([pd.read_csv(run / "split" / "answers.csv", dtype={"image_id": str}), holdout])
        self.truth = self.ids.map(dict(zip(answers["image_id"], answers["label"], strict=True))).to_numpy()
        self.holdout_faces = holdout[holdout["label"] // GENDER_AGE == int(Mask.NOT_WEAR)].drop_duplicates("person_id")
        self.second_faces = second_faces

    def features(self, image_ids) -> np.ndarray:
        return self.by_id.reindex(pd.Series(image_ids).astype(str)).to_numpy(np.float64)

    @cached_property
    def second_photo_evidence(self) -> np.ndarray:
        """Evidence of each row's group's incorrectly worn photo, from a model fitted on the training persons' own."""
        manifest = pd.concat([read_train(d, self.thresholds)[0] for d in self.train_dirs])
        incorrect = manifest[manifest["mask"] == int(Mask.INCORRECT)]
        model = fitted(self._read(incorrect["path"]), gender_age_of(incorrect["label"].to_numpy()))
        photos, _ = read_eval(self.run / "solve" / "holdout" / "eval")
        paths = photos.set_index("image_id").loc[self.ids, "path"].to_numpy()
        rows = face_photo_rows(self.raw, self.groups, Mask.INCORRECT)
        unique = np.unique(rows)
        evidence = pd.DataFrame(model.evidence(self._read(paths[unique])), index=unique)
        return evidence.loc[rows].to_numpy()

    def _read(self, paths) -> np.ndarray:
        real = [os.path.realpath(p) for p in paths]
        photos = pd.DataFrame({"image_id": real, "path": real})
        return cached_face_attributes(photos, self.second_faces, progress=False)[ATTRIBUTE_COLUMNS].to_numpy(np.float64)

    def rebuild(self, variant: Variant) -> dict:
        features = self.features(self.faces["image_id"])
        labels = gender_age_of(self.faces["label"].to_numpy())
        if variant.holdout_persons:
            features = np.concatenate([features, self.features(self.holdout_faces["image_id"])])
            labels = np.concatenate([labels, gender_age_of(self.holdout_faces["label"].to_numpy())])
        model = fitted(features, labels)
        read = np.where(self.ids.isin(self.by_id.index).to_numpy()[:, None], self.raw, np.nan)
        face_rows = face_photo_rows(read, self.groups)  # the faces solve read
        evidence = variant.weight * model.evidence(self.features(self.ids.iloc[face_rows]))
        if variant.second_photo:
            evidence = evidence + variant.second_photo * self.second_photo_evidence
        added = with_evidence(self.raw, evidence)
        rule = self.persons["rule"]
        if rule["kept"]:
            shares = label_shares(self.faces["label"].to_numpy(), "age")
            rule = {**rule, "offsets": match_priors(added, shares, "age")}
        pool = None
        if self.persons["kept"]:
            pool = partial(person_consistent_probs, groups=self.groups, group_size=self.persons["group_size"])
        predicted = submitted_probs(added, rule, pool).argmax(axis=1)
        scores = {}
        for name in ("test", "holdout"):
            rows = self.ids.str.startswith(f"{name}/").to_numpy()
            scores[name] = round(macro_f1(self.truth[rows].astype(np.int64), predicted[rows]), 4)
        return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=Path, required=True, help="cache CSV of the second photos' attributes")
    parser.add_argument("--solves", type=Path, nargs="+", required=True)
    parser.add_argument("--out", type=Path, help="write the table as JSON here")
    args = parser.parse_args()
    solves = [Solve(run, args.features, AgeThresholds()) for run in args.solves]
    report = {}
    for name, variant in VARIANTS.items():
        report[name] = {solve.run.name: solve.rebuild(variant) for solve in solves}
        print(name, json.dumps(report[name]), flush=True)
    base = report["the stage (w = 1)"]
    for name in VARIANTS:
        for split in ("test", "holdout"):
            gains = np.array([report[name][s.run.name][split] - base[s.run.name][split] for s in solves])
            report[name][f"{split}_gain"] = {"mean": round(float(gains.mean()), 4), "up": int((gains > 0).sum()),
                                             "down": int((gains < 0).sum())}  # fmt: skip
        print(name, {split: report[name][f"{split}_gain"] for split in ("test", "holdout")}, flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
