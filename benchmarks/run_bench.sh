#!/usr/bin/env bash
# The commands behind BENCHMARKS.md. Each `maskcls bench` call runs the competition-style baseline,
# the device's compute limit and maskcls (cold and warm epochs, inference) in ONE process on the same
# photos, and prints photos/s and the ratios between them. Usage: benchmarks/run_bench.sh cpu|gpu
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
mkdir -p benchmarks/results
case "${1:-cpu}" in
  cpu)  # a 2-core CPU: small models, where the data path matters most
    "$BIN/maskcls" bench --model mobilenetv3_small_100 --size 128x96 --batch 64 --images 2800 --out benchmarks/results/cpu_mobilenetv3_small.json
    "$BIN/maskcls" bench --model tf_efficientnet_lite0 --size 128x96 --batch 64 --images 1400 --out benchmarks/results/cpu_lite0.json
    ;;
  gpu)  # the issue's configurations: tf_efficientnet_b3 at 512x384 and efficientnet_b0 at 384x288, then compiled;
        # 4,004 photos of the competition's size, drawn once and read by all four measurements
    photos=$(mktemp -d)
    "$BIN/maskcls" demo-data "$photos" --persons 572 --eval-persons 1 --size 512x384 --force
    "$BIN/maskcls" bench --data "$photos/train" --out benchmarks/results/gpu.json
    "$BIN/maskcls" bench --data "$photos/train" --compile --out benchmarks/results/gpu_compile.json
    rm -rf "$photos"
    ;;
  *) echo "usage: $0 cpu|gpu" >&2; exit 2 ;;
esac
