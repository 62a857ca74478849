"""Reading the event log: pages after a cursor, filters, long-polling, retention.

A cursor is an event's place in the log, written `<a>.<b>` (two integers; see `EventLog` in store/protocol.py).
It is opaque to clients: they pass back the `cursor` of the last event they read, or a page's `nextLink`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple

from openrooms.events.types import TYPES, StoredEvent
from openrooms.service import errors
from openrooms.service.clock import TICKS_PER_DAY, Clock
from openrooms.service.ports import EventLog
from openrooms.service.stopping import STOPPING

DEFAULT_RETENTION_DAYS = 7
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_WAIT_SECONDS = 60
# How often a long-poll looks at the log again while it waits for a new event (seconds).
POLL_SECONDS = 0.2
_MAX_INT = (1 << 63) - 1


def encode_cursor(position: tuple[int, int]) -> str:
    return f"{position[0]}.{position[1]}"


def decode_cursor(cursor: str) -> tuple[int, int]:
    first, dot, second = cursor.partition(".")
    if not (dot and _integer(first) and _integer(second)):
        raise errors.bad_request(f"The cursor {cursor!r} is not one this server gave out.", "after")
    return int(first), int(second)


def event_id(namespace: uuid.UUID, position: tuple[int, int]) -> str:
    """An event's id: a GUID named by its place in the log, in the namespace of the server's resource id. The same
    event has the same id wherever it is read or delivered (receivers deduplicate by it); events of different
    servers (resource ids) never share one."""
    return str(uuid.uuid5(namespace, encode_cursor(position)))


class LoggedEvent(NamedTuple):
    id: str
    cursor: str
    event: StoredEvent


def _integer(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 18


class EventsService:
    def __init__(self, store: EventLog, clock: Clock, resource_id: Callable[[], Awaitable[str]], *,
                 retention_days: int = DEFAULT_RETENTION_DAYS, poll_seconds: float = POLL_SECONDS) -> None:
        self._store = store
        self._resource_id = resource_id
        self._namespace: uuid.UUID | None = None
        self._clock = clock
        self._retention = retention_days * TICKS_PER_DAY
        self._poll = poll_seconds

    async def read(
        self, after: str | None, types: Sequence[str] | None, room_id: str | None, limit: int | None,
        wait_seconds: int = 0,
    ) -> list[LoggedEvent]:
        """The events after the cursor `after` (None: from the oldest kept), oldest first; with `wait_seconds`, an
        empty answer waits up to that long for the first new one, or until the server begins to stop (then it answers
        at once with what it has, an empty page at worst)."""
        position = None if after is None else decode_cursor(after)
        if limit is None:
            limit = DEFAULT_PAGE_SIZE
        self._check_filters(types, limit)
        if not 0 <= wait_seconds <= MAX_WAIT_SECONDS:
            raise errors.bad_request(f"wait must be between 0 and {MAX_WAIT_SECONDS} seconds.", "wait")
        deadline = time.monotonic() + wait_seconds
        while True:
            page = await self._store.list_events(position, types, room_id, limit)
            remaining = deadline - time.monotonic()
            if page or remaining <= 0 or STOPPING.is_set():
                return await self._logged(page)
            await asyncio.sleep(min(self._poll, remaining))

    async def latest(self, types: Sequence[str] | None, room_id: str | None,
                     limit: int) -> tuple[list[LoggedEvent], str | None]:
        """The last `limit` events with these filters, oldest first, and the cursor to go on from for the events
        that come after them (None when the log is empty)."""
        self._check_filters(types, limit)
        page, end = await self._store.latest_events(types, room_id, limit)
        return await self._logged(page), None if end == (0, 0) else encode_cursor(end)

    async def _logged(self, page: list[StoredEvent]) -> list[LoggedEvent]:
        if self._namespace is None:
            self._namespace = uuid.UUID(await self._resource_id())
        namespace = self._namespace
        return [LoggedEvent(event_id(namespace, e.position), encode_cursor(e.position), e) for e in page]

    @staticmethod
    def _check_filters(types: Sequence[str] | None, limit: int) -> None:
        if types is not None:
            unknown = [name for name in types if name not in TYPES]
            if unknown:
                raise errors.bad_request(
                    f"Unknown event types: {', '.join(unknown)}. Known types: {', '.join(TYPES)}.", "types")
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise errors.bad_request(f"maxpagesize must be between 1 and {MAX_PAGE_SIZE}.", "maxpagesize")

    async def purge(self) -> int:
        """Delete the events older than the retention."""
        return await self._store.purge_events(self._clock.now() - self._retention)
