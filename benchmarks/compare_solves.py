"""Two solves of `solve_on_persons.py` on the same split, compared on its test persons: the difference in macro F1
with its paired bootstrap over persons, and where each stands before and after the face's evidence.

    python benchmarks/compare_solves.py runs/new20s11 runs/new60s11 [--resamples 1000]

Bootstrap: the test persons are resampled with replacement (all photos of a person together) and both
submissions are scored on each resample; printed are the difference's standard deviation and the share of
resamples where the second solve wins. Experts, per person (each person's photos pooled by their mean
log-probability, as person consistency does): the gender x age accuracy of the members alone, of the face's
evidence alone, and of the two added, as the submission adds them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from maskcls.core.metrics import macro_f1
from maskcls.core.tables import PROB_COLUMNS, SUBMITTED_COLUMNS
from maskcls.persons.attributes import GENDER_AGE
from maskcls.solver.face_evidence import read_evidence


def submitted(run: Path) -> pd.DataFrame:
    """The test persons' rows of the solve's submission: image_id, person_id, label, predicted."""
    answers = pd.read_csv(run / "split" / "answers.csv", dtype={"image_id": str, "person_id": str})
    probs = pd.read_csv(run / "solve" / "test_probs.csv", dtype={"image_id": str})
    table = answers.merge(probs, on="image_id", validate="one_to_one")
    return table.assign(predicted=table[SUBMITTED_COLUMNS].to_numpy().argmax(axis=1))


def experts(run: Path) -> dict:
    """Per-person gender x age accuracy of the members, the face and both (test persons)."""
    persons = json.loads((run / "solve" / "summary.json").read_text())["persons"]
    final = pd.read_csv(run / "solve" / "final" / "test_probs.csv", dtype={"image_id": str})
    answers = pd.read_csv(run / "split" / "answers.csv", dtype={"image_id": str, "person_id": str})
    table = answers.merge(final, on="image_id", validate="one_to_one")
    members = np.log(np.clip(table[PROB_COLUMNS].to_numpy().reshape(-1, 3, GENDER_AGE).sum(axis=1), 1e-6, 1))
    evidence = read_evidence(persons["face_attributes"]["evidence"], table["image_id"])
    frame = pd.DataFrame(np.concatenate([members, evidence], axis=1)).assign(person=table["person_id"].to_numpy())
    by_person = frame.groupby("person")
    pooled, face = by_person.mean().to_numpy()[:, :GENDER_AGE], by_person.first().to_numpy()[:, GENDER_AGE:]
    truth = (table.groupby("person_id")["label"].first() % GENDER_AGE).loc[by_person.mean().index].to_numpy()
    return {
        name: round(float((scores.argmax(axis=1) == truth).mean()), 4)
        for name, scores in (("members", pooled), ("face", face), ("members + face", pooled + face))
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    first, second = submitted(args.first), submitted(args.second)
    if not first["image_id"].equals(second["image_id"]):
        raise SystemExit("the two solves were not scored on the same test persons (same --seed?)")
    truth, persons = first["label"].to_numpy(), first["person_id"].to_numpy()
    rows_of = {person: np.flatnonzero(persons == person) for person in np.unique(persons)}
    names = np.array(list(rows_of))
    rng = np.random.default_rng(0)
    differences = []
    for _ in range(args.resamples):
        rows = np.concatenate([rows_of[p] for p in rng.choice(names, len(names))])
        differences.append(
            macro_f1(truth[rows], second["predicted"].to_numpy()[rows])
            - macro_f1(truth[rows], first["predicted"].to_numpy()[rows])
        )
    report = {}
    for run, table in ((args.first, first), (args.second, second)):
        predicted = table["predicted"].to_numpy()
        report[str(run)] = {
            "macro_f1": round(macro_f1(truth, predicted), 4),
            "accuracy": round(float((predicted == truth).mean()), 4),
            "person_gender_age_accuracy": experts(run),
        }
    report["difference"] = round(report[str(args.second)]["macro_f1"] - report[str(args.first)]["macro_f1"], 4)
    report["bootstrap_sd"] = round(float(np.std(differences)), 4)
    report["second_wins"] = round(float(np.mean(np.array(differences) > 0)), 3)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
