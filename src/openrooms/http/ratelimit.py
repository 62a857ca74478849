"""Per-instance rate limits: a token bucket per (access key, operation).

Per instance on purpose: counting across instances would put a shared-store round trip on every request,
and a limit that protects one instance's capacity is what a limit is for here. With N instances behind a
balancer, a client gets up to N times the rate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """`rate` requests per second, in bursts of up to `rate`, for each key."""

    def __init__(self, rate: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = float(rate)
        self._clock = clock
        self._buckets: dict[tuple[object, str], _Bucket] = {}

    def retry_after(self, key: object, operation: str) -> int:
        """0 if the request may go ahead (and it is counted), else whole seconds until it may."""
        now = self._clock()
        bucket = self._buckets.get((key, operation))
        if bucket is None:
            bucket = self._buckets[(key, operation)] = _Bucket(self._rate, now)
        bucket.tokens = min(self._rate, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0
        return max(1, math.ceil((1 - bucket.tokens) / self._rate))
