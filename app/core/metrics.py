"""Prometheus metrics of the API process and the middleware that records request latency.

Job durations are recorded by the workers (``workers.metrics``, same registry in the
embedded server); queue depth is read from the jobs table when ``/metrics`` is scraped.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "REQUEST_LATENCY",
    "QUEUE_DEPTH",
    "EXPLAIN_CACHE",
    "EXPLAIN_BATCH_SIZE",
    "EXPLAIN_QUEUE_DEPTH",
    "EXPLAIN_QUEUE_WAIT",
    "EXPLAIN_REJECTED",
    "EXPLAIN_ENGINE_SECONDS",
    "EXPLAIN_PASS_SECONDS",
    "MetricsMiddleware",
]

REQUEST_LATENCY = Histogram(
    "rps_http_request_duration_seconds",
    "Latency of HTTP requests by route template, method and status.",
    ["route", "method", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
QUEUE_DEPTH = Gauge("rps_jobs", "Precompute jobs by status (from the jobs table).", ["status"])
EXPLAIN_CACHE = Gauge("rps_loaded_models", "Models held open in this process's LRU cache.")
# Aggregated over models on purpose: /metrics needs no key, so it names no model.
EXPLAIN_BATCH_SIZE = Histogram(
    "rps_explain_batch_size",
    "Requests scored together in one engine pass.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
EXPLAIN_QUEUE_DEPTH = Gauge("rps_explain_queue_depth", "Explain requests waiting for a pass.")
EXPLAIN_QUEUE_WAIT = Histogram(
    "rps_explain_queue_wait_seconds",
    "Time an explain request waited before its pass started.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EXPLAIN_ENGINE_SECONDS = Histogram(
    "rps_explain_engine_seconds",
    "Seconds of each engine pass (shared by the requests of its batch).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
EXPLAIN_PASS_SECONDS = Histogram(
    "rps_explain_pass_seconds",
    "Seconds of the pass each explain request was scored in (a shared pass counts once for "
    "each of its requests), so request - queue wait - this is a request's own time.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
EXPLAIN_REJECTED = Counter(
    "rps_explain_rejected_total", "Explain requests refused with 429 because the queue was full."
)


class MetricsMiddleware:
    """Pure ASGI middleware: observe each HTTP request's latency under its route template."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            REQUEST_LATENCY.labels(template, scope["method"], str(status)).observe(
                time.perf_counter() - started
            )
