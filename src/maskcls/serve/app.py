"""The FastAPI application: one model loaded in the lifespan handler, routers per concern, JSON errors.

``create_app(settings)`` builds it; ``create_app_from_env`` is the factory worker processes import
(``uvicorn --factory maskcls.serve.app:create_app_from_env``, settings from ``MASKCLS_SERVE_*``). The
model is either an exported ONNX file (onnxruntime, no torch) or a run (PyTorch, the same graph);
both answer ``predict(uint8 photos) -> outputs`` and carry the export metadata (labels, input size).
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..core.version import __version__
from ..data.framing import Framer
from ..data.images import ImageLimits
from .batching import MicroBatcher
from .metrics import MetricsMiddleware, ServiceMetrics
from .routes import health, page, predict
from .settings import ServeSettings

log = logging.getLogger("maskcls.serve")


@dataclass
class Service:
    """What every endpoint needs, built once per process by the lifespan handler."""

    model: Any  # export.runtime.OnnxModel or export.graph.TorchModel
    engine: str
    batcher: MicroBatcher
    metrics: ServiceMetrics
    settings: ServeSettings
    limits: ImageLimits
    framer: Framer  # photos framed as the model was trained (centre crop, face crop)


def load_served_model(settings: ServeSettings):
    """The model ``settings`` name, and its engine's name; ``--onnx`` never imports torch."""
    if settings.onnx is not None:
        from ..export.runtime import OnnxModel

        return OnnxModel(settings.onnx, settings.threads), "onnxruntime"
    from ..export.graph import TorchModel

    return TorchModel(settings.run, threads=settings.threads), "pytorch"


def create_app(settings: ServeSettings, loaded: tuple | None = None) -> FastAPI:
    """The service for ``settings``; ``loaded`` is a ``load_served_model`` result already in hand
    (the CLI checks the model first)."""
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        model, engine = loaded or await asyncio.to_thread(load_served_model, settings)
        height, width = model.metadata.cache_hw
        await asyncio.to_thread(
            model.predict, np.zeros((1, height, width, 3), np.uint8)
        )  # warm-up: the first pass allocates
        batcher = MicroBatcher(
            model.predict, settings.max_batch, settings.max_wait_ms / 1000, settings.queue_size, metrics.observe_batch
        )
        await batcher.start()
        limits = ImageLimits(max_pixels=settings.max_image_pixels, max_bytes=settings.max_upload_bytes)
        framer = await asyncio.to_thread(
            Framer, model.metadata.input.framing
        )  # loads the face detector when the run crops faces
        app.state.service = Service(model, engine, batcher, metrics, settings, limits, framer)
        log.info("serving %s (%s) from %s", model.metadata.model_id, engine, model.source)
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(
        title="maskcls",
        version=__version__,
        description="Mask / gender / age classification of a photo of a person "
        "(the 18 classes of the Mask Classification competition).",
        lifespan=lifespan,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.state.metrics = metrics
    app.include_router(predict.router)
    app.include_router(health.router)
    app.include_router(page.router)
    page.mount_static(app)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _internal_error)
    return app


def create_app_from_env() -> FastAPI:
    """The app of a worker process, configured by ``MASKCLS_SERVE_*`` (see ``ServeSettings.to_env``)."""
    return create_app(ServeSettings.from_env())


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(part) for part in first.get("loc", ()))
    return JSONResponse({"detail": f"{where}: {first['msg']}" if where else first["msg"]}, status_code=422)


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.error(
        "%s %s failed", request.method, request.url.path, exc_info=exc
    )  # the traceback goes to the log, never to the client
    return JSONResponse(
        {"detail": "internal error while handling the request; the server log has the details"}, status_code=500
    )
