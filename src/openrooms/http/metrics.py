"""Prometheus metrics: requests by operation and status, latency, store errors (served at GET /metrics).

With several server worker processes each keeps its own counters; `openrooms serve` points every worker at
one directory (PROMETHEUS_MULTIPROC_DIR, prometheus-client's multiprocess mode) so that a scrape of any
worker reports the sum over all of them.
"""

from __future__ import annotations

import functools
import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from openrooms.config import PROMETHEUS_MULTIPROC_ENV

CONTENT_TYPE = CONTENT_TYPE_LATEST

REQUESTS = Counter(
    "openrooms_requests", "HTTP requests answered, by operation and status code.", ["operation", "status"]
)
LATENCY = Histogram(
    "openrooms_request_duration_seconds",
    "Time from receiving a request to the start of its response, by operation.",
    ["operation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
STORE_ERRORS = Counter("openrooms_store_errors", "Requests that failed because the store was unavailable.")
RATE_LIMITED = Counter("openrooms_rate_limited", "Requests refused with 429, by operation.", ["operation"])


@functools.cache
def _series(operation: str, status: int) -> tuple[Counter, Histogram]:
    # Looking a labelled series up costs more than updating it; there are few (operation, status) pairs.
    return REQUESTS.labels(operation, str(status)), LATENCY.labels(operation)


def observe(operation: str, status: int, seconds: float) -> None:
    requests, latency = _series(operation, status)
    requests.inc()
    latency.observe(seconds)


def exposition() -> bytes:
    """The metrics in the Prometheus text format: this process's, or every worker's in multiprocess mode."""
    if os.environ.get(PROMETHEUS_MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest()
