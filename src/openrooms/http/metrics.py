"""Prometheus metrics: requests by operation and status, latency, store errors (served at GET /metrics).

With several server worker processes each keeps its own counters; `openrooms serve` points every worker at
one directory (PROMETHEUS_MULTIPROC_DIR, prometheus-client's multiprocess mode) so that a scrape of any
worker reports the sum over all of them.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import os
from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from openrooms.config import PROMETHEUS_MULTIPROC_ENV
from openrooms.events.subscriptions import DeliveryState, Outcome
from openrooms.service.clock import TICKS_PER_SECOND

CONTENT_TYPE = CONTENT_TYPE_LATEST
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

REQUESTS = Counter(
    "openrooms_requests", "HTTP requests answered, by operation and status code.", ["operation", "status"]
)
LATENCY = Histogram(
    "openrooms_request_duration_seconds",
    "Time from receiving a request to the start of its response, by operation.",
    ["operation"],
    buckets=_BUCKETS,
)
STORE_ERRORS = Counter("openrooms_store_errors", "Requests that failed because the store was unavailable.")
WEBHOOK_ATTEMPTS = Counter(
    "openrooms_webhook_attempts", "Webhook delivery attempts, by outcome: delivered, retried, dead_lettered.",
    ["outcome"],
)
DELIVERY_RESTARTS = Counter(
    "openrooms_delivery_process_restarts", "Webhook delivery processes started again by `serve` after one exited.",
)
RATE_LIMITED = Counter("openrooms_rate_limited", "Requests refused with 429, by operation.", ["operation"])


FLUSH_SECONDS = 1.0

# Counted here, written to prometheus-client's values in batches (`flush`): each write to one of its values
# takes a lock and, with several workers, the process id (a system call) and a write to a shared file; written
# one request at a time, that is three of each per request.
_counts: collections.Counter[tuple[str, int]] = collections.Counter()
_latencies: dict[str, list[float]] = {}  # by operation: [sum of seconds, count per bucket..., count over the last]
_flush_timer: asyncio.TimerHandle | None = None
_flush_loop: asyncio.AbstractEventLoop | None = None  # the loop the timer runs on (a closed one never fires it)


def observe(operation: str, status: int, seconds: float) -> None:
    global _flush_timer, _flush_loop
    _counts[(operation, status)] += 1
    tally = _latencies.get(operation)
    if tally is None:
        tally = _latencies[operation] = [0.0] * (len(_BUCKETS) + 2)
    tally[0] += seconds
    tally[1 + bisect.bisect_left(_BUCKETS, seconds)] += 1  # the first bucket with seconds <= its bound
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # no event loop: write it out now
        flush()
        return
    if _flush_timer is None or loop is not _flush_loop:
        _flush_timer, _flush_loop = loop.call_later(FLUSH_SECONDS, flush), loop


def flush() -> None:
    """Write what this process counted since the last flush to the metrics."""
    global _flush_timer
    if _flush_timer is not None:
        _flush_timer.cancel()
        _flush_timer = None
    for (operation, status), count in _counts.items():
        REQUESTS.labels(operation, str(status)).inc(count)
    _counts.clear()
    for operation, tally in _latencies.items():
        series = LATENCY.labels(operation)
        # prometheus-client has no call that adds many observations at once; these are the values its
        # Histogram.observe adds to: the sum, and the one bucket an observation falls in (+Inf the last).
        series._sum.inc(tally[0])
        for bucket, observed in zip(series._buckets, tally[1:], strict=True):
            if observed:
                bucket.inc(observed)
    _latencies.clear()


def exposition() -> bytes:
    """The metrics in the Prometheus text format: this process's, or every worker's in multiprocess mode (each
    worker's as of its last flush, at most `FLUSH_SECONDS` ago)."""
    flush()
    if os.environ.get(PROMETHEUS_MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest()


def observe_delivery(subscription_id: str, outcome: Outcome) -> None:
    """Count a webhook delivery attempt by its outcome."""
    name = "delivered" if outcome.delivered else "retried" if outcome.retry_at is not None else "dead_lettered"
    WEBHOOK_ATTEMPTS.labels(name).inc()


class _WebhookStates(Collector):
    def __init__(self, states: dict[str, DeliveryState]) -> None:
        self._states = states

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = {
            "backlog": GaugeMetricFamily("openrooms_webhook_backlog", "Webhook deliveries waiting, per subscription.",
                                         labels=["subscription"]),
            "dead": GaugeMetricFamily("openrooms_webhook_dead_letters", "Dead-lettered webhook deliveries, per "
                                      "subscription.", labels=["subscription"]),
            "failures": GaugeMetricFamily("openrooms_webhook_consecutive_failures", "Failed webhook attempts since "
                                          "the last success, per subscription.", labels=["subscription"]),
            "success": GaugeMetricFamily("openrooms_webhook_last_success_timestamp_seconds", "When a receiver last "
                                         "accepted a delivery (Unix time), per subscription.", labels=["subscription"]),
        }
        for subscription_id, state in sorted(self._states.items()):
            families["backlog"].add_metric([subscription_id], state.backlog)
            families["dead"].add_metric([subscription_id], state.dead_lettered)
            families["failures"].add_metric([subscription_id], state.consecutive_failures)
            if state.last_success_at is not None:
                families["success"].add_metric([subscription_id], state.last_success_at / TICKS_PER_SECOND)
        yield from families.values()


def webhook_exposition(states: dict[str, DeliveryState]) -> bytes:
    """The webhook subscriptions' delivery state as gauges: read from the database at each scrape, so the same
    from every worker and every instance."""
    registry = CollectorRegistry()
    registry.register(_WebhookStates(states))
    return generate_latest(registry)
