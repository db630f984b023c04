"""The recipe and ensemble tables of the README, on any data set in the competition layout.

Trains the issue-3 rows with one backbone, input size and epoch count (18-way CE; 18-way focal +
balanced sampler; three-head; three-head + age-specific model; multi-sample dropout), then the
issue-4 rows: each run's OOF redone with flip TTA, soft / weighted voting and stacking (honest,
person-grouped CV scores) with and without TTA, and one pseudo-label round. Writes ``table.md`` and
``table.json`` in ``--out`` and prints the table. Wall times are this machine's.

    python benchmarks/recipe_table.py --data ../shared/data/utkmask18 --out runs/table
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from maskcls.core.config import load_config
from maskcls.core.io import write_csv, write_json, write_text
from maskcls.core.tables import read_test_probs
from maskcls.ensemble.build import build_ensemble
from maskcls.ensemble.pseudo import pseudo_label_counts, select_pseudo_labels
from maskcls.inference.predict import predict_eval
from maskcls.training.combine import combine_runs
from maskcls.training.kfold import train_kfold
from maskcls.training.reevaluate import reevaluate

ROWS = {  # name -> recipe overrides on top of the shared protocol
    "ce": [],
    "focal_balanced": ["loss.name=focal", "sampler.name=balanced", "sampler.alpha=0.5"],
    "three_head": ["model.head=three_head", "loss.head_weights={mask: 1.0, gender: 1.0, age: 1.5}"],
    "msd": ["model.head=msd", "model.drop_rate=0.5"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder with train/ and eval/")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="tf_efficientnet_lite0")
    parser.add_argument("--pretrained", default="offline")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    protocol = [
        f"model.name={args.model}",
        f"model.pretrained={args.pretrained}",
        f"data.image_size={args.size}",
        f"train.epochs={args.epochs}",
        f"cv.folds={args.folds}",
        f"train.batch_size={args.batch_size}",
        "scheduler.warmup_epochs=0.5",
        "train.early_stopping_patience=0",
    ]
    train_dir, eval_dir, out = args.data / "train", args.data / "eval", args.out
    rows: list[dict] = []
    runs: dict[str, Path] = {}

    def record(name: str, kind: str, directory: Path, seconds: float, note: str = "") -> None:
        summary = json.loads((directory / "summary.json").read_text())
        rows.append(
            {
                "row": name,
                "kind": kind,
                "oof_macro_f1": summary["oof_macro_f1"],
                "oof_accuracy": summary["oof_accuracy"],
                "mask_accuracy": summary["mask_accuracy"],
                "gender_accuracy": summary["gender_accuracy"],
                "age_accuracy": summary["age_accuracy"],
                "wall_seconds": round(seconds, 1),
                "note": note,
            }
        )
        print(json.dumps(rows[-1]), flush=True)

    for name, overrides in ROWS.items():
        started = time.perf_counter()
        runs[name] = out / name
        train_kfold(train_dir, load_config(None, protocol + overrides), runs[name], force=True, progress=False)
        predict_eval(runs[name], eval_dir, progress=False)
        record(name, "single run", runs[name], time.perf_counter() - started)
        if name == "three_head":
            started = time.perf_counter()
            runs["three_head_age"] = out / "three_head_age"
            age_dir = runs["three_head_age"] / "age"  # same protocol, hence the same folds as the three-head run
            train_kfold(
                train_dir,
                load_config(None, protocol + ["model.head=age_regression"]),
                age_dir,
                force=True,
                progress=False,
            )
            combine_runs({"mask": runs[name], "gender": runs[name], "age": age_dir}, runs["three_head_age"])
            predict_eval(runs["three_head_age"], eval_dir, progress=False)
            cuts = json.loads((runs["three_head_age"] / "summary.json").read_text())["age_cuts"]
            record(
                "three_head_age",
                "single run",
                runs["three_head_age"],
                time.perf_counter() - started,
                f"age cuts {cuts}; wall time of the age model",
            )

    tta_runs = {}
    for name in list(runs):
        if name == "three_head_age":
            continue  # a combination: its members' TTA runs would have to be combined again
        started = time.perf_counter()
        tta_runs[name] = out / f"{name}_flip"
        reevaluate(runs[name], tta_runs[name], "flip", progress=False)
        predict_eval(tta_runs[name], eval_dir, progress=False)
        record(
            f"{name} + flip TTA",
            "single run, TTA",
            tta_runs[name],
            time.perf_counter() - started,
            "OOF and test redone, no retraining",
        )

    best_stack = None
    for label, members in (("no TTA", list(runs.values())), ("flip TTA", list(tta_runs.values()))):
        for method, options in (
            ("soft", {}),
            ("weighted", {}),
            ("stack", {"learner": "logreg"}),
            ("stack", {"learner": "xgboost"}),
            ("stack", {"learner": "rf"}),
        ):
            started = time.perf_counter()
            name = f"{method}{'_' + options['learner'] if options else ''}_{label.replace(' ', '_')}"
            directory = out / "ensembles" / name
            summary = build_ensemble(members, method, directory, cv_splits=5, **options)
            record(
                f"{method} {options.get('learner', '')} ({label})".replace("  ", " "),
                "ensemble",
                directory,
                time.perf_counter() - started,
                f"in-sample {summary['in_sample_macro_f1']:.4f}" if "in_sample_macro_f1" in summary else "",
            )
            if method == "stack" and (best_stack is None or summary["oof_macro_f1"] > best_stack[1]):
                best_stack = (directory, summary["oof_macro_f1"])

    started = time.perf_counter()
    selected = select_pseudo_labels(read_test_probs(best_stack[0] / "test_probs.csv"), threshold=0.9, max_per_class=200)
    selected.insert(1, "path", [str((eval_dir / "images" / i).resolve()) for i in selected["image_id"]])
    write_csv(out / "pseudo.csv", selected)
    write_csv(out / "pseudo_counts.csv", pseudo_label_counts(selected))
    train_kfold(
        train_dir, load_config(None, protocol), out / "ce_pseudo", force=True, progress=False, extra=out / "pseudo.csv"
    )
    record(
        "ce + pseudo-labels",
        "single run",
        out / "ce_pseudo",
        time.perf_counter() - started,
        f"{len(selected)} eval photos from {best_stack[0].name} (p >= 0.9, <= 200 per class)",
    )

    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, " + (
        torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    )
    header = (
        f"Protocol: {args.model} ({args.pretrained} weights), {args.size} px, {args.epochs} epochs, "
        f"{args.folds}-fold person CV, batch {args.batch_size}. Machine: {machine}.\n\n"
    )
    lines = [
        "| row | OOF macro F1 | accuracy | mask acc | gender acc | age acc | wall s | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['row']} | {r['oof_macro_f1']:.4f} | {r['oof_accuracy']:.4f} | {r['mask_accuracy']:.4f} | "
        f"{r['gender_accuracy']:.4f} | {r['age_accuracy']:.4f} | {r['wall_seconds']:.0f} | {r['note']} |"
        for r in rows
    ]
    write_text(out / "table.md", header + "\n".join(lines) + "\n")
    write_json(out / "table.json", {"protocol": protocol, "machine": machine, "rows": rows})
    print(header + "\n".join(lines))


if __name__ == "__main__":
    main()
