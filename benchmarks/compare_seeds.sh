#!/usr/bin/env bash
# Paired accuracy check of one recipe change against the default recipe: both on the same person folds,
# at each seed, 4 epochs (the solve's setting at 128 px). Writes OUT/<variant>_seed<S>/ runs and prints
# one line per run (OOF macro F1, per head, wall seconds) into OUT/results.tsv.
#
# Usage: benchmarks/compare_seeds.sh TRAIN_DIR WEIGHTS OUT_DIR "SEEDS" VARIANT=OVERRIDE[,OVERRIDE...] ...
#   e.g. benchmarks/compare_seeds.sh utkmask18/train lite0.safetensors runs/freeze "42 7" base= freeze3=model.freeze_stages=3
#   WEIGHTS  model.pretrained for every run (offline, or a local .safetensors file)
# MASKCLS names the command (default: maskcls; e.g. MASKCLS="python3 -m maskcls").
set -uo pipefail
train=$1 weights=$2 out=$3 seeds=$4
shift 4
read -r -a maskcls <<<"${MASKCLS:-maskcls}"
mkdir -p "$out"
printf 'run\toof_macro_f1\taccuracy\tgender_acc\tage_acc\tage_macro_f1\tseconds\n' >"$out/results.tsv"
for seed in $seeds; do
  for variant in "$@"; do
    name=${variant%%=*}_seed$seed
    overrides=()
    IFS=, read -r -a extra <<<"${variant#*=}"
    for o in "${extra[@]}"; do [ -n "$o" ] && overrides+=(--set "$o"); done
    start=$(date +%s)
    "${maskcls[@]}" train --data "$train" --out "$out/$name" --force --quiet --set train.epochs=4 --set "model.pretrained=$weights" \
      --set "train.seed=$seed" "${overrides[@]}" >"$out/$name.log" 2>&1 || { echo "$name failed, see $out/$name.log" >&2; continue; }
    seconds=$(($(date +%s) - start))
    python3 -c "import json,sys; o=json.load(open(sys.argv[1]))
print('\t'.join([sys.argv[2]] + ['%.4f' % o[k] for k in ('oof_macro_f1','oof_accuracy','gender_accuracy','age_accuracy','age_macro_f1')] + [sys.argv[3]]))" \
      "$out/$name/summary.json" "$name" "$seconds" | tee -a "$out/results.tsv"
  done
done
