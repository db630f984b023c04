"""What endpoints receive as dependencies."""

from __future__ import annotations

from fastapi import Request


def get_service(request: Request):
    """The ``app.Service`` the lifespan handler built: the loaded model, its batcher and the metrics."""
    return request.app.state.service
