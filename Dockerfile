# maskcls serve, CPU only, on the official Python slim image.
#   docker build -t maskcls .
#   docker run --rm -p 8000:8000 -v "$PWD/model.onnx:/models/model.onnx:ro" maskcls
# then open http://localhost:8000/ . Serves an ONNX file from `maskcls export` by default;
# `docker run ... maskcls maskcls serve --run /runs/NAME --host 0.0.0.0` serves a run with PyTorch.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# libgomp: the OpenMP runtime onnxruntime's CPU kernels link against.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# torch is a dependency of maskcls: take the CPU-only wheels first, so pip does not pull the CUDA ones (~5 GB).
RUN pip install torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install ".[serve,onnx]"

RUN useradd --create-home maskcls
USER maskcls
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"
CMD ["maskcls", "serve", "--onnx", "/models/model.onnx", "--host", "0.0.0.0", "--port", "8000"]
