#!/usr/bin/env bash
# The closing-note runs of README "More data: results", all with one recipe: the default lite0 recipe
# (offline ImageNet weights) at 96 px, 3 epochs (0.5 warm-up), 3 person folds — the recipe-table protocol —
# of which only fold 0 is trained (the shared VM was too busy for all three), with one torch thread.
# Usage: benchmarks/run_synth_experiments.sh SHARED_DATA_DIR OUT_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
DATA=${1:?shared data folder}; OUT=${2:?output folder}
PROTOCOL=(--set data.image_size=96 --set train.epochs=3 --set scheduler.warmup_epochs=0.5 --set cv.folds=3 --set "cv.train_folds=[0]" --quiet --force)
export OMP_NUM_THREADS=1
timed() { local name=$1; shift; local start=$(date +%s); "$@"; echo "$name wall $(( $(date +%s) - start )) s" | tee -a "$OUT/wall.txt"; }
mkdir -p "$OUT"
# data: B1 (300 persons' masked photos drawn by our tool) and B2's extra persons (plain_faces with masks)
[ -f "$OUT/b1/train/train.csv" ] || timed make-b1 "$BIN/python" benchmarks/synth_experiments.py make-b1 --train "$DATA/utkmask18/train" --out "$OUT/b1"
[ -f "$OUT/plain_synth/train.csv" ] || timed synth-plain "$BIN/maskcls" synth masks --faces "$DATA/plain_faces/labels.csv" --out "$OUT/plain_synth" --quality 80 --detector hog --quiet
# runs
timed B0 "$BIN/maskcls" train --data "$DATA/utkmask18/train" --out "$OUT/B0" "${PROTOCOL[@]}"
timed B1 "$BIN/maskcls" train --data "$OUT/b1/train" --out "$OUT/B1" "${PROTOCOL[@]}"
timed B2 "$BIN/maskcls" train --data "$DATA/utkmask18/train" --extra "$OUT/plain_synth" --out "$OUT/B2" "${PROTOCOL[@]}"
timed wild "$BIN/maskcls" train --config wild --data "$DATA/utkmask18/train" --out "$OUT/wild" "${PROTOCOL[@]}"
"$BIN/python" benchmarks/synth_experiments.py report --b0 "$OUT/B0" --b1 "$OUT/B1" --b2 "$OUT/B2" --wild "$OUT/wild" \
  --replaced "$OUT/b1/replaced.csv" --b1-train "$OUT/b1/train" --realmask "$DATA/realmask" --utk-train "$DATA/utkmask18/train" --out "$OUT/report.json"
