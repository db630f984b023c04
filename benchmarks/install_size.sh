#!/usr/bin/env bash
# The serving-only installs: build the wheel, install "WHEEL[serve]" and "WHEEL[onnx]" from PyPI into fresh venvs,
# check that torch is not there, that `maskcls serve --help` / `maskcls predict --help` run, that a tiny exported
# ONNX model predicts an eval folder (`maskcls predict --onnx`) and, in the serve venv, answers /health and
# /predict over loopback; then print the size of each venv's site-packages next to the project's full .venv.
#
#   bash benchmarks/install_size.sh            # WORK=/tmp/maskcls-install-size, kept for a look afterwards
#
# Needs the project venv (.venv, `make test` makes it: it builds the wheel and the tiny ONNX model) and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PROJECT_PY=${PROJECT_PY:-$ROOT/.venv/bin/python}
PYTHON=${PYTHON:-python3}
WORK=${WORK:-/tmp/maskcls-install-size}
PORT=${PORT:-8765}
SRC=${SRC:-$ROOT/src}  # the package source to build (another tree: to try a change before it lands)
rm -rf "$WORK" && mkdir -p "$WORK"
export MASKCLS_CACHE_DIR=$WORK/cache
say() { printf '\n== %s\n' "$*"; }
# pip, with this machine's notes about missing local index folders left out (its errors are all shown)
pip_in() { local py=$1; shift; "$py" -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
site_packages() { "$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }

say "wheel (from a clean copy of the checkout, no build isolation)"
mkdir -p "$WORK/tree"
cp pyproject.toml README.md LICENSE "$WORK/tree/"
cp -r "$SRC" "$WORK/tree/src"
find "$WORK/tree" \( -name __pycache__ -o -name '*.egg-info' \) -prune -exec rm -rf {} +
pip_in "$PROJECT_PY" wheel -q --no-deps --no-build-isolation -w "$WORK/dist" "$WORK/tree"
WHEEL=$(ls "$WORK"/dist/maskcls-*.whl)
echo "$WHEEL ($(du -h "$WHEEL" | cut -f1))"

say "a tiny exported model (project venv: demo data, 2-fold run, export)"
"$PROJECT_PY" -m maskcls demo-data "$WORK/demo" --persons 24 --eval-persons 3 --size 64x48
"$PROJECT_PY" -m maskcls train --data "$WORK/demo/train" --config demo --out "$WORK/run" --quiet \
  --set model.name=test_efficientnet --set cv.folds=2 --set train.epochs=1 --set "data.image_size=[32, 24]" \
  --set train.batch_size=32 --set "train.loggers=[csv]"
"$PROJECT_PY" -m maskcls export --run "$WORK/run" --out "$WORK/tiny.onnx" --quiet
PHOTO=$(ls "$WORK"/demo/eval/images/* | head -n 1)

for extra in serve onnx; do
  venv=$WORK/venv-$extra
  say "$extra: $PYTHON -m venv; pip install \"maskcls[$extra]\" (the wheel)"
  "$PYTHON" -m venv "$venv"
  pip_in "$venv/bin/python" install -q --upgrade pip
  pip_in "$venv/bin/python" install -q "$WHEEL[$extra]"
  if "$venv/bin/python" -c "import torch" 2>/dev/null; then
    echo "FAIL: torch is importable in the $extra venv"; exit 1
  fi
  echo "import torch fails there, as it should; installed: $("$venv/bin/python" -m pip list --format=freeze 2>/dev/null | cut -d= -f1 | tr '\n' ' ')"
  for forbidden in torch torchvision lightning timm sklearn scipy matplotlib; do
    if "$venv/bin/python" -c "import $forbidden" 2>/dev/null; then echo "note: $forbidden is installed in the $extra venv"; fi
  done
  (cd "$WORK" && "$venv/bin/maskcls" serve --help >/dev/null && "$venv/bin/maskcls" predict --help >/dev/null)
  echo "maskcls serve --help and maskcls predict --help run"
  (cd "$WORK" && "$venv/bin/maskcls" predict --onnx "$WORK/tiny.onnx" --data "$WORK/demo/eval" \
    --out "$WORK/predict-$extra" --quiet) \
    || { echo "FAIL: maskcls predict --onnx in the $extra venv (a torch-free module imports a train-only package?)"; exit 1; }
  echo "submission: $(($(wc -l < "$WORK/predict-$extra/submission.csv") - 1)) rows"
  if [ "$extra" = serve ]; then
    (cd "$WORK" && exec "$venv/bin/maskcls" serve --onnx "$WORK/tiny.onnx" --port "$PORT") > "$WORK/serve.log" 2>&1 &
    server=$!
    trap 'kill "$server" 2>/dev/null || true' EXIT
    for _ in $(seq 120); do
      "$venv/bin/python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/health', timeout=2)" \
        2>/dev/null && break
      kill -0 "$server" 2>/dev/null || { echo "FAIL: maskcls serve exited"; cat "$WORK/serve.log"; exit 1; }
      sleep 0.5
    done
    "$venv/bin/python" - "$PORT" "$PHOTO" <<'EOF'
import json, sys, urllib.request
port, photo = sys.argv[1], sys.argv[2]
request = urllib.request.Request(f"http://127.0.0.1:{port}/predict", data=open(photo, "rb").read(), method="POST",
                                 headers={"Content-Type": "application/octet-stream"})
answer = json.load(urllib.request.urlopen(request, timeout=30))
print("POST /predict:", {k: answer[k] for k in list(answer)[:4]})
EOF
    kill "$server" && wait "$server" 2>/dev/null || true
    trap - EXIT
  fi
done

say "site-packages sizes"
for venv in "$WORK/venv-serve" "$WORK/venv-onnx" "$ROOT/.venv"; do
  du -sh "$(site_packages "$venv")"
done
