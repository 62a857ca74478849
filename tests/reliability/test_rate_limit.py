"""Rate limits: per access key and operation, 429 with Retry-After in the ACS envelope."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from openrooms.config import DEV_SECONDARY_KEY
from openrooms.http.ratelimit import RateLimiter
from tests.support import running_server

V = "api-version=2025-03-13"


def test_bursts_over_the_limit_get_429_per_key_and_operation(tmp_path: Path) -> None:
    with running_server(tmp_path, "--rate-limit", "3", tls=False) as server:
        statuses = Counter(server.request("GET", f"/rooms?{V}").status_code for _ in range(12))
        assert statuses[429] >= 1 and statuses[200] >= 3, statuses
        refused = server.request("GET", f"/rooms?{V}")
        while refused.status_code != 429:  # the bucket may have refilled a little meanwhile
            refused = server.request("GET", f"/rooms?{V}")
        error = refused.json()["error"]
        assert error["code"] == "TooManyRequests" and "rooms_list" in error["message"]
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.headers["x-ms-error-code"] == "TooManyRequests"
        # Another operation, and the other key, have buckets of their own.
        assert server.request("GET", f"/rooms/1234567890123456?{V}").status_code == 404
        assert server.request("GET", f"/rooms?{V}", key=DEV_SECONDARY_KEY).status_code == 200
        # Unsigned requests are refused before they count, and health checks are never limited.
        assert all(server.request("GET", "/healthz", sign=False).status_code == 200 for _ in range(10))


def test_the_bucket_refills_at_the_configured_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(2, clock=lambda: now[0])
    assert [limiter.retry_after("k", "op") for _ in range(3)] == [0, 0, 1]
    now[0] += 0.5  # one token back
    assert limiter.retry_after("k", "op") == 0
    assert limiter.retry_after("k", "op") == 1
    assert limiter.retry_after("k", "other") == 0
