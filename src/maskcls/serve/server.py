"""Run the service with uvicorn: one process, or ``workers`` processes sharing the port.

The model is loaded here first, so a bad model path ends the command with a clear message instead of
a worker crash loop. One worker serves that loaded model; several workers each load their own copy
through ``create_app_from_env``, configured by the environment (``ServeSettings.to_env``).
"""

from __future__ import annotations

import os

from .app import create_app, load_served_model
from .settings import ServeSettings

APP_FACTORY = "maskcls.serve.app:create_app_from_env"


def run_server(
    settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000, workers: int = 1, log_level: str = "info"
) -> None:
    import uvicorn

    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    loaded = load_served_model(settings)
    if workers == 1:
        uvicorn.run(create_app(settings, loaded), host=host, port=port, log_level=log_level)
        return
    del loaded  # checked; each worker loads its own copy, the supervising process keeps none
    os.environ.update(settings.to_env())
    uvicorn.run(APP_FACTORY, factory=True, host=host, port=port, workers=workers, log_level=log_level)
