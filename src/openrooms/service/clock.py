"""Time as the service sees it: integer ticks of 100 ns since the Unix epoch (UTC).

ACS timestamps carry up to seven fractional digits; ticks keep exactly that precision, so what a client sends
is what it reads back. The clock is injected: tests use `FixedClock` and never sleep.
"""

from __future__ import annotations

import time
from typing import Protocol

TICKS_PER_SECOND = 10_000_000
TICKS_PER_DAY = 86_400 * TICKS_PER_SECOND


class Clock(Protocol):
    def now(self) -> int: ...


class SystemClock:
    def now(self) -> int:
        return time.time_ns() // 100


class FixedClock:
    """A clock that moves only when told to."""

    def __init__(self, now: int) -> None:
        self._now = now

    def now(self) -> int:
        return self._now

    def advance(self, ticks: int) -> None:
        self._now += ticks
