# maskcls serve, CPU only, on the official Python slim image: an exported ONNX model, no PyTorch in the image.
#   docker build -t maskcls .
#   docker run --rm -p 8000:8000 -v "$PWD/model.onnx:/models/model.onnx:ro" maskcls
# then open http://localhost:8000/ . Serves an ONNX file from `maskcls export`.
#
# To serve a trained run directory with PyTorch instead (`maskcls serve --run`), build the `train` stage:
#   docker build --target train -t maskcls-train .
#   docker run --rm -p 8000:8000 -v "$PWD/runs/NAME:/runs/NAME:ro" maskcls-train \
#     maskcls serve --run /runs/NAME --host 0.0.0.0
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# libgomp: the OpenMP runtime onnxruntime's CPU kernels (and torch's) link against.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN useradd --create-home maskcls
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"

# The PyTorch variant: torch's CPU-only wheels first (pinned; PyPI's Linux wheel is the CUDA build, ~5 GB more),
# then the training stack with the ONNX and serving extras.
FROM base AS train
RUN pip install torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cpu
RUN pip install ".[train,onnx,serve]"
USER maskcls
CMD ["maskcls", "serve", "--onnx", "/models/model.onnx", "--host", "0.0.0.0", "--port", "8000"]

# The default image (last stage): the serve extra only, no torch.
FROM base AS serve
RUN pip install ".[serve]" \
 && if python -c "import torch" 2>/dev/null; then echo "torch must not be in the serving image" >&2; exit 1; fi
USER maskcls
CMD ["maskcls", "serve", "--onnx", "/models/model.onnx", "--host", "0.0.0.0", "--port", "8000"]
