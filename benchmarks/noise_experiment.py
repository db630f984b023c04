"""The label-noise experiment of the README: plant known errors in a copy of a training folder, then score
``maskcls noise`` against them.

``plant`` writes a noisy copy (unchanged photos are symlinked, changed ones copied) with a share of persons'
gender flipped, a share with their ``normal`` / ``incorrect_mask`` photos swapped, and a share with their age
moved into the neighbouring age group, and lists every planted error in ``planted.csv``::

    # writes /tmp/noisy/train and /tmp/noisy/planted.csv
    python benchmarks/noise_experiment.py plant --train ../shared/data/utkmask18/train --out /tmp/noisy

``score`` reads the finder's ``noise.csv`` and ``planted.csv``: precision and recall at the top K per kind of
noise (K = the number planted, and twice that), and writes the top-K fixes as a ``fixes.csv`` for
``maskcls train --label-fixes``::

    python benchmarks/noise_experiment.py score --noise reports/noise/noise.csv --planted /tmp/noisy/planted.csv \\
        --fixes fixes.csv

``f1`` scores runs' OOF predictions against the labels they trained on and against the clean truth::

    python benchmarks/noise_experiment.py f1 --clean ../shared/data/utkmask18/train --planted /tmp/noisy/planted.csv \
        --runs runs/noisy runs/fixed runs/clean
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from maskcls.core.io import write_csv, write_json
from maskcls.core.labels import AgeThresholds, Mask, encode
from maskcls.core.metrics import classification_metrics
from maskcls.core.tables import probs_of, read_oof
from maskcls.data.layout import read_train

# Neighbouring-group ages drawn for a moved person: close to the cut, as a careless labeller would be.
_NEIGHBOUR_AGES = {(0, 1): (30, 40), (1, 0): (20, 29), (1, 2): (60, 70), (2, 1): (50, 59)}


def plant(
    train_dir: Path, out_dir: Path, gender_share: float, swap_share: float, age_share: float, seed: int
) -> pd.DataFrame:
    """Write the noisy copy to ``out_dir/train`` and ``out_dir/planted.csv`` (kind, person_id, path, field, clean,
    noisy), outside the copy so the finder cannot see it; returns the planted table."""
    if out_dir.exists():
        raise SystemExit(f"{out_dir} exists; remove it first")
    table = pd.read_csv(train_dir / "train.csv", dtype=str, keep_default_na=False)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(table))
    counts = [round(share * len(table)) for share in (gender_share, swap_share, age_share)]
    chosen = np.split(order[: sum(counts)], np.cumsum(counts)[:-1])
    thresholds = AgeThresholds()
    planted, swapped = [], set()
    noisy = table.copy()
    for row in chosen[0]:
        old = noisy.at[row, "gender"]
        noisy.at[row, "gender"] = "female" if old.strip().lower() == "male" else "male"
        planted.append(
            {
                "kind": "gender",
                "person_id": noisy.at[row, "id"],
                "path": noisy.at[row, "path"],
                "field": "gender",
                "clean": old,
                "noisy": noisy.at[row, "gender"],
            }
        )
    for row in chosen[1]:
        swapped.add(noisy.at[row, "path"])
        planted.append(
            {
                "kind": "swap",
                "person_id": noisy.at[row, "id"],
                "path": noisy.at[row, "path"],
                "field": "normal<->incorrect_mask",
                "clean": "",
                "noisy": "",
            }
        )
    for row in chosen[2]:
        age = int(noisy.at[row, "age"])
        group = thresholds.group(age)
        target = group + 1 if group == 0 else group - 1 if group == 2 else int(rng.choice([0, 2]))
        low, high = _NEIGHBOUR_AGES[(group, target)]
        noisy.at[row, "age"] = str(int(rng.integers(low, high + 1)))
        planted.append(
            {
                "kind": "age",
                "person_id": noisy.at[row, "id"],
                "path": noisy.at[row, "path"],
                "field": "age",
                "clean": str(age),
                "noisy": noisy.at[row, "age"],
            }
        )

    images = out_dir / "train" / "images"
    for folder in sorted((train_dir / "images").iterdir()):
        target = images / folder.name
        target.mkdir(parents=True)
        files = {f.stem: f for f in folder.iterdir()}
        for stem, source in files.items():
            if folder.name in swapped and stem in ("normal", "incorrect_mask"):
                other = files["incorrect_mask" if stem == "normal" else "normal"]
                shutil.copyfile(other, target / (stem + other.suffix))
            else:
                os.symlink(source.resolve(), target / source.name)
    write_csv(out_dir / "train" / "train.csv", noisy)
    planted = pd.DataFrame(planted)
    write_csv(out_dir / "planted.csv", planted)
    write_json(
        out_dir / "planted.json",
        {
            "source": str(train_dir.resolve()),
            "seed": seed,
            "persons": len(table),
            "counts": planted["kind"].value_counts().to_dict(),
        },
    )
    return planted


def score(noise_csv: Path, planted_csv: Path, fixes_csv: Path | None) -> pd.DataFrame:
    """Precision and recall at K per kind of noise (the finder's person-level suspects against the planted persons)."""
    from maskcls.analysis.noise import fixes_from_suspects

    suspects = pd.read_csv(noise_csv, dtype={"person_id": str, "image_id": str})
    planted = pd.read_csv(planted_csv, dtype={"person_id": str})
    rows = []
    for kind, finder_kind in (("gender", "person_gender"), ("swap", "swapped_pair"), ("age", "person_age")):
        truth = set(planted.loc[planted["kind"] == kind, "person_id"])
        ranked = (
            suspects.loc[suspects["kind"] == finder_kind]
            .sort_values("score", ascending=False)["person_id"]
            .drop_duplicates()
        )
        for k in (len(truth), 2 * len(truth)):
            top = set(ranked.head(k))
            hits = len(top & truth)
            rows.append(
                {
                    "noise": kind,
                    "finder kind": finder_kind,
                    "planted": len(truth),
                    "K": k,
                    "flagged": len(top),
                    "hits": hits,
                    "precision": hits / max(len(top), 1),
                    "recall": hits / max(len(truth), 1),
                }
            )
    result = pd.DataFrame(rows)
    if fixes_csv is not None:
        top = pd.concat(
            [
                suspects.loc[suspects["kind"] == finder]
                .sort_values("score", ascending=False)
                .drop_duplicates("person_id")
                .head(n)
                for finder, n in (
                    ("person_gender", _planted(planted, "gender")),
                    ("swapped_pair", _planted(planted, "swap")),
                    ("person_age", _planted(planted, "age")),
                )
            ]
        )
        write_csv(fixes_csv, fixes_from_suspects(top))
    return result


def _planted(planted: pd.DataFrame, kind: str) -> int:
    return int((planted["kind"] == kind).sum())


def oof_f1(clean_dir: Path, planted_csv: Path, run_dirs: list[Path]) -> pd.DataFrame:
    """OOF macro F1 of each run against the labels it trained on (its oof.csv) and against the clean truth.

    The clean truth of a photo of the noisy copy is the clean label of the picture it holds: for a planted swap,
    ``normal`` holds the incorrectly worn photo and ``incorrect_mask`` the plain one, so their mask labels exchange.
    """
    clean, _ = read_train(clean_dir)
    planted = pd.read_csv(planted_csv, dtype=str, keep_default_na=False)
    truth_of_copy = clean.copy()
    swapped = truth_of_copy["image_id"].str.rsplit("/", n=1).str[0].isin(planted.loc[planted["kind"] == "swap", "path"])
    stems = truth_of_copy["stem"]
    truth_of_copy.loc[swapped & (stems == "normal"), "mask"] = int(Mask.INCORRECT)
    truth_of_copy.loc[swapped & (stems == "incorrect_mask"), "mask"] = int(Mask.NOT_WEAR)
    truth_of_copy["label"] = encode(
        truth_of_copy["mask"].to_numpy(), truth_of_copy["gender"].to_numpy(), truth_of_copy["age_group"].to_numpy()
    )
    rows = []
    for run in run_dirs:
        oof = read_oof(run / "oof.csv")
        on_clean = Path(json.loads((run / "run.json").read_text())["data"]).resolve() == clean_dir.resolve()
        truth = (clean if on_clean else truth_of_copy).set_index("image_id")["label"].loc[oof["image_id"]].to_numpy()
        probs = probs_of(oof)
        trained = classification_metrics(oof["label"].to_numpy(), probs)
        scores = classification_metrics(truth, probs)
        rows.append(
            {
                "run": run.name,
                "photos": "clean" if on_clean else "noisy copy",
                "trained labels wrong": int((oof["label"].to_numpy() != truth).sum()),
                "macro F1 vs trained labels": trained["macro_f1"],
                "macro F1 vs clean truth": scores["macro_f1"],
                "accuracy vs clean truth": scores["accuracy"],
                "mask acc": scores["mask_accuracy"],
                "gender acc": scores["gender_accuracy"],
                "age acc": scores["age_accuracy"],
            }
        )
    return pd.DataFrame(rows)


def markdown(frame: pd.DataFrame, digits: int) -> str:
    """A README table (pandas' own needs the tabulate package)."""
    cells = [
        [f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in row] for row in frame.itertuples(index=False)
    ]
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("plant")
    p.add_argument("--train", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--gender", type=float, default=0.02)
    p.add_argument("--swap", type=float, default=0.01)
    p.add_argument("--age", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    s = commands.add_parser("score")
    s.add_argument("--noise", type=Path, required=True)
    s.add_argument("--planted", type=Path, required=True)
    s.add_argument(
        "--fixes", type=Path, help="write the top-K (K = planted) person suspects of each kind as a fixes.csv"
    )
    f = commands.add_parser("f1")
    f.add_argument("--clean", type=Path, required=True)
    f.add_argument("--planted", type=Path, required=True)
    f.add_argument("--runs", type=Path, nargs="+", required=True)
    args = parser.parse_args()
    if args.command == "plant":
        planted = plant(args.train, args.out, args.gender, args.swap, args.age, args.seed)
        print(planted["kind"].value_counts().to_string())
    elif args.command == "score":
        print(markdown(score(args.noise, args.planted, args.fixes), 3))
    else:
        print(markdown(oof_f1(args.clean, args.planted, args.runs), 4))


if __name__ == "__main__":
    main()
