"""How the service runs, from ``maskcls serve``'s options or from ``MASKCLS_SERVE_*`` environment variables.

Worker processes started by uvicorn (``--workers N``) or by gunicorn import the app by name
(``maskcls.serve.app:create_app_from_env``), so everything they need travels in the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..core.config import ConfigError

ENV_PREFIX = "MASKCLS_SERVE_"


class ServeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    run: Path | None = None
    onnx: Path | None = None
    max_batch: int = Field(32, ge=1, le=1024)
    max_wait_ms: float = Field(5.0, ge=0.0, le=1000.0)
    queue_size: int = Field(256, ge=1)
    max_upload_mb: float = Field(10.0, gt=0.0)
    max_files: int = Field(32, ge=1)
    max_image_pixels: int = Field(40_000_000, gt=0)
    threads: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _one_model(self):
        if (self.run is None) == (self.onnx is None):
            raise ValueError("serve one model: give either a run (--run DIR) or an ONNX file (--onnx MODEL.onnx)")
        return self

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def to_env(self) -> dict[str, str]:
        return {ENV_PREFIX + key.upper(): str(value) for key, value in self.model_dump().items() if value is not None}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ServeSettings:
        values = {key[len(ENV_PREFIX) :].lower(): value for key, value in environ.items() if key.startswith(ENV_PREFIX)}
        return settings_from(values, "environment (MASKCLS_SERVE_*)")


def settings_from(values: dict, source: str = "options") -> ServeSettings:
    """Validated settings; a bad value is a ConfigError naming it."""
    try:
        return ServeSettings.model_validate(values)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"serve {source}: {key + ': ' if key else ''}{message}") from None
