#!/usr/bin/env bash
# The commands behind the ONNX Runtime and HTTP service tables of BENCHMARKS.md: draw competition-sized demo
# photos, train tf_efficientnet_lite0 (offline ImageNet weights, 128 px) for 2 epochs on one fold, export it,
# then run both benchmarks. Usage: benchmarks/run_serving_bench.sh   (WORK=dir to keep the files elsewhere)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
WORK=${WORK:-runs/serving_bench}
mkdir -p benchmarks/results "$WORK"
"$BIN/maskcls" demo-data "$WORK/demo" --persons 100 --eval-persons 40 --size 512x384 --force
"$BIN/maskcls" train --data "$WORK/demo/train" --out "$WORK/lite0" --force --quiet \
  --set model.name=tf_efficientnet_lite0 --set model.pretrained=offline --set data.image_size=128 \
  --set train.epochs=2 --set "cv.train_folds=[0]"
"$BIN/maskcls" export --run "$WORK/lite0" --out "$WORK/lite0.onnx"
for threads in 2 1; do
  "$BIN/python" benchmarks/onnx_vs_torch.py --run "$WORK/lite0" --photos "$WORK/demo/eval/images" --count 128 --rounds 3 \
    --threads "$threads" --out "benchmarks/results/onnx_cpu_${threads}threads.json"
done
"$BIN/python" benchmarks/serve_load.py --onnx "$WORK/lite0.onnx" --photos "$WORK/demo/eval/images" --out benchmarks/results/serve_cpu.json
# The same model with four TTA views per photo: a server whose time goes to the model, where batching pays.
"$BIN/maskcls" export --run "$WORK/lite0" --out "$WORK/lite0_flip_zoom.onnx" --tta flip_zoom
"$BIN/python" benchmarks/serve_load.py --onnx "$WORK/lite0_flip_zoom.onnx" --photos "$WORK/demo/eval/images" --out benchmarks/results/serve_cpu_flip_zoom.json
