"""Prometheus metrics of the service: requests by status, request latency, photos per forward pass.

Each app has its own registry (tests start several apps in one process). With several worker
processes, set ``PROMETHEUS_MULTIPROC_DIR`` to an empty folder before starting them: every worker then
writes its numbers there and ``/metrics`` on any worker reports the sum (prometheus-client's
multiprocess mode).
"""

from __future__ import annotations

import os
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from starlette.routing import Match

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServiceMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "maskcls_http_requests",
            "HTTP requests by method, route and status code",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "maskcls_http_request_seconds",
            "Time from request to response, by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "maskcls_batch_size", "Photos per forward pass of the model", buckets=BATCH_BUCKETS, registry=self.registry
        )
        self.photos = Counter("maskcls_photos_predicted", "Photos the model predicted", registry=self.registry)

    def observe_batch(self, size: int) -> None:
        self.batch_size.observe(size)
        self.photos.inc(size)

    def render(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


def route_label(scope, original: dict) -> str:
    """The route template a request matched: FastAPI's route, else the app's route or mount that matches the
    request as it came in (``/docs``, ``/openapi.json``, the page's ``/static`` files); ``unmatched`` when none does."""
    path = getattr(scope.get("route"), "path", None)
    if path:
        return path
    for route in getattr(scope.get("app"), "routes", ()):
        if route.matches(original)[0] is Match.FULL:
            return route.path
    return "unmatched"


class MetricsMiddleware:
    """Counts every response by route template and status, and times it (errors and 404s included)."""

    def __init__(self, app, metrics: ServiceMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = {"code": 500}
        original = dict(scope)  # routing adds to the scope (a mount's root_path); match against it as it came

        async def send_and_record(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = route_label(scope, original)
            self.metrics.requests.labels(scope["method"], route, str(status["code"])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
