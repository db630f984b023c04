"""The experiments behind README "More data: results": synthesis quality, synthesized 60+ persons, real masks.

    # B1's data: 300 persons of utkmask18/train keep only their normal photo; our tool draws the other six
    python benchmarks/synth_experiments.py make-b1 --train ../shared/data/utkmask18/train --out runs/exp/b1_data
    # B2's extra persons: masks drawn on plain_faces
    maskcls synth masks --faces ../shared/data/plain_faces/labels.csv --out runs/exp/plain_synth --quality 80
    # three runs with one recipe (see benchmarks/run_synth_experiments.sh), then:
    python benchmarks/synth_experiments.py report --b0 runs/exp/B0 --b1 runs/exp/B1 --b2 runs/exp/B2 \\
        --wild runs/exp/wild --replaced runs/exp/b1_data/replaced.csv --b1-train runs/exp/b1_data/train \\
        --realmask ../shared/data/realmask --utk-train ../shared/data/utkmask18/train --out runs/exp/report.json

B1 keeps every person id, label and file name of utkmask18, so both runs get the same person folds;
untouched persons' photos are symbolic links to the originals. ``report`` prints the closing-note
tables: OOF macro F1 on the untouched persons and the F1 of the incorrect-mask classes (B0 vs B1),
B0's mask head on our renders of replaced persons it never saw, OOF macro F1 and the F1 of the six
60+ classes (B0 vs B2), mask-head accuracy on realmask (masked = worn or worn incorrectly), and
``synth label`` accuracy on the normal photos against B0's heads.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from maskcls.analysis.real_masks import real_mask_accuracy
from maskcls.core.io import write_csv, write_json
from maskcls.core.labels import STEM_TO_MASK, AgeThresholds, decode, head_probabilities
from maskcls.core.tables import PROB_COLUMNS
from maskcls.data.layout import read_train
from maskcls.inference.predict import predict_table
from maskcls.synth.masks import SynthOptions, synthesize_masks

INCORRECT_CLASSES = list(range(6, 12))
OLD_CLASSES = [2, 5, 8, 11, 14, 17]


def make_b1(train_dir: Path, out_dir: Path, persons: int, seed: int, quality: int, workers: int) -> None:
    """utkmask18/train with ``persons`` persons' six masked photos drawn by our tool from their normal photo."""
    manifest, problems = read_train(train_dir)
    if problems:
        raise SystemExit(f"{train_dir} has problems: {problems[:3]}")
    table = pd.read_csv(train_dir / "train.csv", dtype=str, keep_default_na=False)
    order = table.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    candidates = order.head(int(persons * 1.15))  # a few spare persons for faces our detector misses
    normal = manifest[manifest["stem"] == "normal"].set_index("person_id")["path"]
    faces_csv = out_dir / "faces.csv"
    write_csv(
        faces_csv,
        pd.DataFrame(
            {
                "id": candidates["id"],
                "path": [normal[i] for i in candidates["id"]],
                "gender": candidates["gender"],
                "age": candidates["age"],
                "race": candidates["race"],
            }
        ),
    )
    started = time.perf_counter()
    options = SynthOptions(
        seed=seed, quality=quality, detector="hog", upsample=1
    )  # the README numbers were made with HOG alone
    summary = synthesize_masks(faces_csv, out_dir / "synth", options=options, workers=workers, force=True)
    synth_seconds = time.perf_counter() - started
    made = pd.read_csv(out_dir / "synth" / "train.csv", dtype=str, keep_default_na=False)
    replaced = made.head(persons)
    by_id = replaced.set_index("id")["path"]
    layout = out_dir / "train"
    (layout / "images").mkdir(parents=True, exist_ok=True)
    table.to_csv(layout / "train.csv", index=False)
    for person in table.itertuples(index=False):
        folder = layout / "images" / person.path
        folder.mkdir(exist_ok=True)
        originals = manifest[manifest["person_id"] == person.id].set_index("stem")["path"]
        for stem in STEM_TO_MASK:
            source = Path(originals[stem])
            if person.id in by_id.index and stem != "normal":
                source = out_dir / "synth" / "images" / by_id[person.id] / f"{stem}.jpg"
            target = folder / f"{stem}{source.suffix}"
            if not target.exists():
                os.symlink(source.resolve(), target)
    write_csv(out_dir / "replaced.csv", pd.DataFrame({"person_id": replaced["id"]}))
    print(
        json.dumps({**summary, "replaced_persons": len(replaced), "synth_seconds": round(synth_seconds, 1)}, indent=2)
    )


def oof_scores(run: Path, keep=None) -> dict:
    """OOF macro F1, accuracy and the per-class F1 of a run, on the persons ``keep`` selects (all when None)."""
    oof = pd.read_csv(run / "oof.csv", dtype={"image_id": str, "person_id": str})
    if keep is not None:
        oof = oof[keep(oof)]
    truth, predicted = oof["label"].to_numpy(), oof[PROB_COLUMNS].to_numpy().argmax(axis=1)
    per_class = f1_score(truth, predicted, labels=list(range(18)), average=None, zero_division=0)
    mask_truth, mask_pred = decode(truth)[0], decode(predicted)[0]
    return {
        "photos": int(len(oof)),
        "macro_f1": round(
            float(f1_score(truth, predicted, labels=list(range(18)), average="macro", zero_division=0)), 4
        ),
        "accuracy": round(float((truth == predicted).mean()), 4),
        "incorrect_classes_f1": round(float(per_class[INCORRECT_CLASSES].mean()), 4),
        "incorrect_mask_f1": round(float(f1_score(mask_truth == 1, mask_pred == 1)), 4),
        "old_classes_f1": round(float(per_class[OLD_CLASSES].mean()), 4),
        "per_class_f1": [round(float(v), 4) for v in per_class],
    }


def cross_render_accuracy(b0: Path, b1_train: Path, replaced: set[str]) -> dict:
    """B0's models (trained on MaskTheFace masks only) on our renders of the replaced persons they never saw."""
    manifest, _ = read_train(b1_train)
    folds = pd.read_csv(b0 / "folds.csv", dtype={"image_id": str, "person_id": str}).set_index("image_id")["fold"]
    trained = [entry["fold"] for entry in json.loads((b0 / "summary.json").read_text())["folds"]]
    if len(trained) != 1:  # predict_table averages all fold models; with one model, its own fold is unseen
        raise SystemExit("the cross-render check needs a B0 run that trained a single fold (cv.train_folds=[k])")
    rows = manifest[manifest["person_id"].isin(replaced) & (manifest["image_id"].map(folds) == trained[0])]
    rows = rows[rows["stem"] != "normal"].reset_index(drop=True)  # the drawn photos only
    probs = predict_table(b0, rows[["image_id", "path"]], progress=False).probs
    predicted_mask = head_probabilities(probs)["mask"].argmax(axis=1)
    truth = rows["mask"].to_numpy()
    return {
        "photos": int(len(rows)),
        "mask_accuracy": round(float((predicted_mask == truth).mean()), 4),
        "incorrect_recall": round(float((predicted_mask[truth == 1] == 1).mean()), 4),
        "worn_recall": round(float((predicted_mask[truth == 0] == 0).mean()), 4),
    }


def realmask_accuracy(run: Path, realmask: Path) -> dict:
    """Mask-head accuracy on real photos (``maskcls.analysis.real_masks``), with the seconds it took."""
    started = time.perf_counter()
    scores = real_mask_accuracy(run, realmask)
    return {**scores, "seconds": round(time.perf_counter() - started, 1)}


def autolabel_vs_model(b0: Path, utk_train: Path) -> dict:
    """``synth label`` on utkmask18/train's normal photos vs the truth, beside B0's OOF gender / age heads on the same
    photos."""
    from maskcls.synth.autolabel import label_photos

    manifest, _ = read_train(utk_train)
    normal = manifest[manifest["stem"] == "normal"].reset_index(drop=True)
    started = time.perf_counter()
    labels = label_photos(normal["path"].tolist(), detector="hog", upsample=1, progress=False)
    seconds = time.perf_counter() - started
    thresholds = AgeThresholds()
    found = (labels["reason"] == "").to_numpy()
    gender_true = np.where(normal["gender"] == 1, "female", "male")
    tool = {
        "photos": int(len(normal)),
        "faces_found": int(found.sum()),
        "gender_accuracy": round(float((labels["gender"].to_numpy()[found] == gender_true[found]).mean()), 4),
        "age_group_accuracy": round(
            float((thresholds.group(labels["age"].to_numpy()[found]) == normal["age_group"].to_numpy()[found]).mean()),
            4,
        ),
        "age_mae": round(float(np.abs(labels["age"].to_numpy()[found] - normal["age"].to_numpy()[found]).mean()), 2),
        "seconds": round(seconds, 1),
    }
    oof = pd.read_csv(b0 / "oof.csv", dtype={"image_id": str, "person_id": str}).set_index("image_id")
    in_oof = normal["image_id"].isin(oof.index).to_numpy()  # runs that trained some folds only: their persons
    heads = head_probabilities(oof.loc[normal["image_id"][in_oof], PROB_COLUMNS].to_numpy())
    truth = normal[in_oof]
    tool_gender_right = labels["gender"].to_numpy() == gender_true
    tool_group_right = thresholds.group(labels["age"].to_numpy()) == normal["age_group"].to_numpy()
    both = found & in_oof
    model = {
        "photos": int(in_oof.sum()),
        "gender_accuracy": round(float((heads["gender"].argmax(1) == truth["gender"].to_numpy()).mean()), 4),
        "age_group_accuracy": round(float((heads["age"].argmax(1) == truth["age_group"].to_numpy()).mean()), 4),
        "same_photos_synth_label_gender_accuracy": round(float(tool_gender_right[both].mean()), 4),
        "same_photos_synth_label_age_group_accuracy": round(float(tool_group_right[both].mean()), 4),
        "same_photos_count": int(both.sum()),
    }
    return {"synth_label": tool, "b0_oof_heads": model}


def report(args) -> None:
    replaced = set(pd.read_csv(args.replaced, dtype=str)["person_id"])
    untouched = lambda oof: ~oof["person_id"].isin(replaced)  # noqa: E731
    result = {
        "b0_vs_b1_untouched": {"B0": oof_scores(args.b0, untouched), "B1": oof_scores(args.b1, untouched)},
        "b0_vs_b2": {"B0": oof_scores(args.b0), "B2": oof_scores(args.b2)},
        "wall_seconds": {
            name: json.loads((run / "summary.json").read_text())["wall_seconds"]
            for name, run in (("B0", args.b0), ("B1", args.b1), ("B2", args.b2))
        },
    }
    result["b0_on_our_renders"] = cross_render_accuracy(args.b0, args.b1_train, replaced)
    runs = {"B0": args.b0, "B1": args.b1, "B2": args.b2, **({"wild": args.wild} if args.wild else {})}
    result["realmask"] = {name: realmask_accuracy(run, args.realmask) for name, run in runs.items()}
    if args.utk_train:
        result["autolabel"] = autolabel_vs_model(args.b0, args.utk_train)
    for part in ("b0_vs_b1_untouched", "b0_vs_b2"):
        for row in result[part].values():
            row.pop("per_class_f1")
    print(json.dumps(result, indent=2))
    write_json(args.out, result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    b1 = commands.add_parser("make-b1")
    b1.add_argument("--train", type=Path, required=True)
    b1.add_argument("--out", type=Path, required=True)
    b1.add_argument("--persons", type=int, default=300)
    b1.add_argument("--seed", type=int, default=0)
    b1.add_argument("--quality", type=int, default=80, help="JPEG quality (utkmask18's photos are q80)")
    b1.add_argument("--workers", type=int, default=1)
    rep = commands.add_parser("report")
    for name in ("b0", "b1", "b2", "replaced", "realmask", "out"):
        rep.add_argument(f"--{name}", type=Path, required=True)
    rep.add_argument("--wild", type=Path)
    rep.add_argument("--b1-train", type=Path, required=True, help="B1's data (make-b1 --out)/train")
    rep.add_argument("--utk-train", type=Path)
    args = parser.parse_args()
    if args.command == "make-b1":
        make_b1(args.train, args.out, args.persons, args.seed, args.quality, args.workers)
    else:
        report(args)


if __name__ == "__main__":
    main()
