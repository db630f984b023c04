"""``POST /predict`` (one photo) and ``POST /predict/batch`` (several), through the micro-batcher."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Depends, HTTPException, Request

from ..batching import QueueFull
from ..schemas import BatchItem, BatchPrediction, ErrorBody, PhotoPrediction
from ..uploads import decode_upload, read_uploads
from .deps import get_service

router = APIRouter(tags=["predict"])

RETRY_AFTER_S = "1"
_PHOTO_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/webp": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                    "required": ["files"],
                }
            }
        },
    }
}
_ERRORS = {
    413: {
        "model": ErrorBody,
        "description": "Body over the size limit, or a decompression bomb (refused before decoding)",
    },
    415: {"model": ErrorBody, "description": "Not an image, or not JPEG / PNG / WebP"},
    422: {"model": ErrorBody, "description": "Empty body, or a truncated / corrupt image"},
    503: {"model": ErrorBody, "description": "Too many photos waiting; retry after the Retry-After seconds"},
}


@router.post("/predict", response_model=PhotoPrediction, responses=_ERRORS, openapi_extra=_PHOTO_BODY)
async def predict(request: Request, service=Depends(get_service)) -> PhotoPrediction:
    """Classify one photo: a multipart upload (field ``file``) or the raw image bytes as the body."""
    started = time.perf_counter()
    with service.batcher.incoming():
        uploads = await read_uploads(request, service.settings.max_upload_bytes, max_files=1)
        photo = await decode_upload(uploads[0], service.model.metadata.cache_hw, service.limits, service.framer)
    outputs = await _submit(service, photo)
    return PhotoPrediction.from_outputs(
        outputs, service.model.metadata.labels, service.model.metadata.model_id, (time.perf_counter() - started) * 1000
    )


@router.post("/predict/batch", response_model=BatchPrediction, responses=_ERRORS, openapi_extra=_BATCH_BODY)
async def predict_batch(request: Request, service=Depends(get_service)) -> BatchPrediction:
    """Classify several photos (multipart, one file field each); a bad photo gets its own error, the others
    their prediction."""
    started = time.perf_counter()
    with service.batcher.incoming():
        uploads = await read_uploads(request, service.settings.max_upload_bytes, max_files=service.settings.max_files)
    items = await asyncio.gather(*(_one_item(service, upload, started) for upload in uploads))
    return BatchPrediction(
        results=list(items),
        model_id=service.model.metadata.model_id,
        latency_ms=round((time.perf_counter() - started) * 1000, 3),
    )


async def _one_item(service, upload, started: float) -> BatchItem:
    try:
        with service.batcher.incoming():
            photo = await decode_upload(upload, service.model.metadata.cache_hw, service.limits, service.framer)
    except HTTPException as err:
        return BatchItem(filename=upload.filename, status=err.status_code, error=str(err.detail))
    outputs = await _submit(service, photo)
    prediction = PhotoPrediction.from_outputs(
        outputs, service.model.metadata.labels, service.model.metadata.model_id, (time.perf_counter() - started) * 1000
    )
    return BatchItem(filename=upload.filename, prediction=prediction)


async def _submit(service, photo):
    try:
        return await service.batcher.submit(photo)
    except QueueFull as err:
        raise HTTPException(
            503, f"the service is busy ({err}); retry in a moment", headers={"Retry-After": RETRY_AFTER_S}
        ) from None
