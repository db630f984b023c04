"""``GET /health`` (is a model loaded, which one) and ``GET /metrics`` (Prometheus text format)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from ..schemas import Health
from .deps import get_service

router = APIRouter(tags=["operations"])


@router.get("/health", response_model=Health)
async def health(service=Depends(get_service)) -> Health:
    meta = service.model.metadata
    return Health(
        model_loaded=True,
        model_id=meta.model_id,
        engine=service.engine,
        source=service.model.source,
        architecture=meta.architecture,
        head=meta.head,
        folds=list(meta.folds),
        tta=meta.tta.name,
        input_size=meta.preprocess.image_size,
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics
    return Response(registry.render(), media_type=registry.content_type)
