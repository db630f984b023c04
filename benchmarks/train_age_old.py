"""Paired k-fold runs with the old-age cut at 60 and with training targets cut at 58 (``labels.train_age_old``),
both scored at 60 on their out-of-fold predictions.

    python benchmarks/train_age_old.py ../shared/data/utkmask18/train --out runs/age_old [--cut 58] \
        [--epochs 2] [--folds 3] [--size 96]

Both runs use solve's CE member recipe (``lite0_baseline`` with fixed early stages) and the same folds and
seed, so the only difference is the targets of the 58 and 59 year olds. Printed, and written to
``OUT/age_old.json``: macro F1, age accuracy, and the 60+ group's recall, precision and predicted share.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from maskcls.core.artifacts import OOF_FILE
from maskcls.core.labels import decode
from maskcls.core.metrics import macro_f1
from maskcls.core.tables import PROB_COLUMNS, read_oof


def scores(run: Path) -> dict:
    oof = read_oof(run / OOF_FILE)
    truth, predicted = oof["label"].to_numpy(), oof[PROB_COLUMNS].to_numpy().argmax(axis=1)
    age_truth, age_predicted = decode(truth)[2], decode(predicted)[2]
    old, called_old = age_truth == 2, age_predicted == 2
    return {
        "macro_f1": round(macro_f1(truth, predicted), 4),
        "age_accuracy": round(float((age_truth == age_predicted).mean()), 4),
        "old_recall": round(float(called_old[old].mean()), 4),
        "old_precision": round(float(old[called_old].mean()), 4) if called_old.any() else None,
        "old_predicted_share": round(float(called_old.mean()), 4),
        "old_true_share": round(float(old.mean()), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("train", type=Path, help="a train/ folder in the competition layout")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cut", type=int, default=58, help="labels.train_age_old of the shifted run")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--size", type=int, default=96)
    args = parser.parse_args()
    common = [
        "model.freeze_stages=3",
        f"data.image_size={args.size}",
        f"train.epochs={args.epochs}",
        f"cv.folds={args.folds}",
        "tta.name=none",
        "train.early_stopping_patience=0",
        f"scheduler.warmup_epochs={min(1.0, args.epochs / 6):g}",
    ]
    report = {"command": sys.argv, "settings": common}
    for name, extra in (("age_old_60", []), (f"train_age_old_{args.cut}", [f"labels.train_age_old={args.cut}"])):
        run = args.out / name
        command = [sys.executable, "-m", "maskcls", "train", "--data", str(args.train), "--config", "lite0_baseline"]
        command += ["--out", str(run), "--force", "--quiet"]
        for override in [*common, *extra]:
            command += ["--set", override]
        subprocess.run(command, check=True)
        report[name] = scores(run)
        print(name, json.dumps(report[name]), flush=True)
    shifted, base = report[f"train_age_old_{args.cut}"], report["age_old_60"]
    report["gain"] = {k: round(shifted[k] - base[k], 4) for k in ("macro_f1", "age_accuracy", "old_recall")}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "age_old.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report["gain"]))


if __name__ == "__main__":
    main()
