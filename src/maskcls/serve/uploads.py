"""Uploaded photos: read the request body within the size limit, then decode it as the model needs it.

A photo comes as a multipart form upload (a browser form, ``curl -F file=@photo.jpg``) or as the raw
body (``curl --data-binary @photo.jpg -H 'Content-Type: image/jpeg'``). Bad input gets a status that
says what kind of bad it is: 413 over the size limit or a decompression bomb (refused from the header,
before decoding), 415 not an image or not an accepted type, 422 empty, truncated or corrupt.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
from fastapi import HTTPException, Request
from starlette.datastructures import UploadFile

from ..data.framing import Framer
from ..data.images import ImageError, ImageLimits

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP")
STATUS_BY_KIND = {"empty": 422, "too_large": 413, "not_image": 415, "unsupported": 415, "corrupt": 422, "bomb": 413}
RAW_BODY_HELP = (
    "send the photo as a multipart/form-data file field, or as the raw body with Content-Type image/jpeg, "
    "image/png or image/webp"
)


@dataclass
class Upload:
    filename: str
    data: bytes


async def read_uploads(request: Request, max_bytes: int, max_files: int) -> list[Upload]:
    """The photo(s) of a request; at most ``max_files`` form files, at most ``max_bytes`` of body in all."""
    request = _size_capped(request, max_bytes)
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        async with request.form(max_files=max_files, max_fields=max_files) as form:  # closes the spooled files
            files = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
            if not files:
                raise HTTPException(422, f"the form holds no file; {RAW_BODY_HELP}")
            return [
                Upload(upload.filename or f"file{index}", await upload.read()) for index, upload in enumerate(files)
            ]
    if media_type and not (media_type.startswith("image/") or media_type == "application/octet-stream"):
        raise HTTPException(415, f"unsupported content type '{media_type}'; {RAW_BODY_HELP}")
    body = await request.body()
    if not body:
        raise HTTPException(422, f"the request body is empty; {RAW_BODY_HELP}")
    return [Upload("request body", body)]


async def decode_upload(upload: Upload, size_hw: tuple[int, int], limits: ImageLimits, framer: Framer) -> np.ndarray:
    """The photo as uint8 ``(h, w, 3)``, framed as the model was trained, in a worker thread; bad photos raise
    HTTPException."""
    try:
        pixels, _ = await asyncio.to_thread(framer.decode, upload.data, size_hw, limits, ACCEPTED_FORMATS)
        return pixels
    except ImageError as err:
        raise HTTPException(STATUS_BY_KIND.get(err.kind, 422), f"{upload.filename}: {err}") from None


def _size_capped(request: Request, max_bytes: int) -> Request:
    """``request`` whose body may not exceed ``max_bytes``: refused from Content-Length, or while streaming."""
    too_large = f"the request body is over the limit of {max_bytes / 2**20:.1f} MB (maskcls serve --max-upload-mb)"
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise HTTPException(413, too_large)
    received = 0

    async def receive():
        nonlocal received
        message = await request.receive()
        received += len(message.get("body", b""))
        if received > max_bytes:
            raise HTTPException(413, too_large)
        return message

    return Request(request.scope, receive)
