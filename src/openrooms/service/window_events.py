"""Time-driven events: a room's window opened (`OpenRooms.RoomWindowOpened`, at `validFrom`) and closed
(`OpenRooms.RoomWindowClosed`, at `validUntil`), once per room and instant.

Each server runs one `WindowScheduler`. It claims the instants that fell due from the store (which appends their
events in the claim's transaction, see store/windows.py: on PostgreSQL one instance's claim at a time, the
others skip it), then sleeps until the next instant ahead, at most `MAX_SLEEP_SECONDS`, or until a room created
or updated here brings an earlier one (`note`). An instant that passed while no server ran is emitted on start,
marked `late`, with the instant it was due. Only instants still ahead when the room is created or updated are
events: a room open from its creation says so in its RoomCreated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from openrooms.events import types as t
from openrooms.service import timestamps
from openrooms.service.clock import TICKS_PER_SECOND, Clock
from openrooms.service.ports import StoreUnavailable, WindowInstant, WindowStore

log = logging.getLogger("openrooms.windows")

LATE_AFTER = TICKS_PER_SECOND  # an event emitted later than this after its instant is marked `late`
MAX_SLEEP_SECONDS = 5.0  # also how soon an instant set through another instance is found if that one stops
RETRY_SECONDS = 0.05  # another instance's claim held the watermark: look again
FAILED_SECONDS = 1.0  # the store failed: try again
CLAIM_LIMIT = 1000


def window_events(now: int) -> WindowEventsBuilder:
    return WindowEventsBuilder(now)


class WindowEventsBuilder:
    """The events of the instants a claim at `now` found due (called by the store inside the claim)."""

    def __init__(self, now: int) -> None:
        self._now = now

    def __call__(self, due: Sequence[WindowInstant]) -> list[t.NewEvent]:
        return [self.event(instant) for instant in due]

    def event(self, due: WindowInstant) -> t.NewEvent:
        data = t.RoomWindowData(due.room_id, timestamps.format(due.valid_from), timestamps.format(due.valid_until),
                                timestamps.format(due.instant), self._now - due.instant > LATE_AFTER)
        return t.NewEvent(t.ROOM_WINDOW_CLOSED if due.closing else t.ROOM_WINDOW_OPENED, "rooms/" + due.room_id,
                          due.room_id, self._now, data)


class WindowScheduler:
    def __init__(self, store: WindowStore, clock: Clock, *, max_sleep_seconds: float = MAX_SLEEP_SECONDS) -> None:
        self._store = store
        self._clock = clock
        self._max_sleep_ticks = int(max_sleep_seconds * TICKS_PER_SECOND)
        self._wake = asyncio.Event()
        self._planned: int | None = None  # the instant the scheduler sleeps until (None: not sleeping)
        self._claimed: int | None = None  # up to when the last claim emitted what fell due

    def note(self, valid_from: int, valid_until: int, now: int) -> None:
        """A room was created or updated here at `now` with this window: wake the scheduler if that brings an
        instant earlier than the one it sleeps until (a comparison: a create pays nothing more). While it claims
        (nothing planned), any instant within the longest sleep wakes it again after the claim."""
        earliest = valid_from if valid_from > now else valid_until
        planned = self._planned
        if earliest < (planned if planned is not None else now + self._max_sleep_ticks):
            self._wake.set()

    @property
    def woken(self) -> bool:
        """Whether a note woke the sleep (or will wake the next one)."""
        return self._wake.is_set()

    async def claim(self) -> int | None:
        """Emit what fell due up to now; how many, or None if another instance's claim held the watermark."""
        total = 0
        while True:
            now = self._clock.now()
            claimed = await self._store.claim_window_instants(now, window_events(now), CLAIM_LIMIT)
            if claimed is None:
                return None if total == 0 else total
            self._claimed = now
            total += claimed
            if claimed < CLAIM_LIMIT:
                return total

    async def sleep_seconds(self) -> float:
        """How long to sleep until the next instant after what the last claim covered (at most the longest
        sleep): an instant that fell due since that claim is not skipped, it is claimed at once."""
        now = self._clock.now()
        ahead = await self._store.next_window_instant(now if self._claimed is None else min(self._claimed, now))
        latest = now + self._max_sleep_ticks
        self._planned = latest if ahead is None else min(ahead, latest)
        self._wake.clear()  # what was noted before is in the answer
        return max(0.0, (self._planned - now) / TICKS_PER_SECOND)

    async def run(self) -> None:
        """Claim, sleep, claim, ... until cancelled."""
        while True:
            self._planned = None  # while it claims, a note of an instant within the longest sleep wakes it after
            try:
                if await self.claim() is None:  # another instance claims now: a fixed pause, not cut short
                    self._wake.clear()
                    delay = RETRY_SECONDS
                else:
                    delay = await self.sleep_seconds()
            except asyncio.CancelledError:
                raise
            except StoreUnavailable as exc:  # the store is away for a moment
                log.warning("window events: the claim failed, trying again: %s", exc)
                self._wake.clear()
                delay = FAILED_SECONDS
            except Exception:  # a defect, not the store: said with its traceback; the scheduler goes on
                log.exception("window events: the claim failed, trying again")
                self._wake.clear()
                delay = FAILED_SECONDS
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
