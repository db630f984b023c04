#!/usr/bin/env bash
# `maskcls solve` on one GPU: the command behind the GPU row of the README's "Solve on utkmask18" table.
# Only tf_efficientnet_lite0's ImageNet weights travel to a lent GPU machine (as a local .safetensors file,
# see WEIGHTS below), so lite0 is calibrated at 128 / 192 / 256 px instead of the built-in lite0/1/2 ladder.
#
# Usage: benchmarks/run_solve_gpu.sh DATA_DIR WEIGHTS BUDGET OUT_DIR [LIMIT_SECONDS [SOLVE OPTIONS...]]
#   DATA_DIR  a folder with train/ and eval/ in the competition layout (e.g. utkmask18)
#   WEIGHTS   lite0 ImageNet weights in timm's names; made from the offline pip package with
#             python -c "from maskcls.models.pretrained import create_backbone; from safetensors.torch import save_file; \
#               save_file(create_backbone('tf_efficientnet_lite0', 'offline').state_dict(), 'lite0.safetensors')"
#   LIMIT_SECONDS  stop the solve after this many seconds (a machine whose commands have a hard time limit
#             then still returns plan.json; `maskcls solve --resume OUT_DIR` continues a stopped solve)
#   SOLVE OPTIONS  go to `maskcls solve` last (e.g. `--dry-run --device cpu` to check the script on a CPU)
# MASKCLS names the command (default: maskcls; e.g. MASKCLS="python3 -m maskcls").
set -uo pipefail
data=$1 weights=$2 budget=$3 out=$4 limit=${5:-0}
shift $(($# < 5 ? $# : 5))
read -r -a maskcls <<<"${MASKCLS:-maskcls}"
command=("${maskcls[@]}" solve --train "$data/train" --eval "$data/eval" --budget "$budget" --out "$out" --force --device gpu
         --candidate tf_efficientnet_lite0@128 --candidate tf_efficientnet_lite0@192 --candidate tf_efficientnet_lite0@256
         --set "model.pretrained=$weights" "$@")
if [ "$limit" -gt 0 ]; then timeout "$limit" "${command[@]}"; else "${command[@]}"; fi
