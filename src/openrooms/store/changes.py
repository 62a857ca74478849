"""Rooms read once and kept for as long as nothing changes them, in every process that serves one database.

A SQLite read lets go of Python's GIL while SQLite works, twice for a single row. Under load the HTTP server's
threads are waiting for the GIL, so each release hands it over and the read waits to get it back: a get room
costs several times what its query costs. So the SQLite store keeps what it reads of a room (the room, one
participant, a page of its roster) in memory, each with the room's *change counter* as it stood before the query,
and pages of the list of rooms with the counter of the list.

The counters live in a small file next to the database (`openrooms.db-changes`), mapped into every process that
opens the database: 65,536 64-bit counters, a room's counter picked by a CRC of its id, and one more for the
list of rooms as a whole (moved by any change to a room itself, not to its roster). Each write transaction
notes the rooms it touches. After the COMMIT, still holding the writers' lock, the writer adds one to their
counters. A kept read is good while its room's counter still has the value read before the query:

- the counter is read before the query and bumped only after the COMMIT: a read that missed a change was kept
  with a value that the change's bump moves;
- only the writer holding the lock bumps, so bumps never interleave and a counter only grows: once moved, it
  never comes back to the kept value.

Rooms that share a counter only cost each other a read. Rooms are not kept as absent, so creating one needs
no bump, though it gets one. A change made to the file by anything but openrooms while a server runs is not
seen until that server restarts.

Every write transaction of the SQLite store returns what it changed (`Changes`) with its result, and the store
hands it to `KeptReads.note` in the one place that runs write transactions: a transaction cannot be written
without saying what it changed, and none can be run without its changes being noted. `KeptReads` holds what
is kept and does everything that happens after the COMMIT; the store itself only reads and writes rows.

The process that made a change need not read it back: its writer knows what the group commit left. Still
holding the lock, it keeps the rooms the group changed (their rows as written) at their bumped counters, moves a
kept room whose roster alone changed to its bumped counter, and merges the group's rooms into the kept first
pages of the list (`advance_page`). Nothing else can change them between the COMMIT and the bump: the lock
is held. A group whose COMMIT failed only bumps. The rooms a group creates are not kept until they are read:
under a stream of creates they would keep pushing out what reads use, and strew the heap with objects that
no read asks for.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import zlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from openrooms.service.model import Room

SLOTS = 1 << 16
_LISTING = SLOTS  # the counter after the rooms': the list of rooms
_SIZE = (SLOTS + 1) * 8  # bytes
FOREVER = 1 << 63  # ticks: when a page with no rooms on it ends


class Changes(NamedTuple):
    """What one write transaction changed, returned by it with its result: the rooms' rows as written (None:
    deleted), which of those it created, and the rooms whose roster alone changed."""

    rooms: Mapping[str, Room | None] = MappingProxyType({})
    created: Collection[str] = ()
    rosters: Collection[str] = ()


NOTHING = Changes()  # a write that changes no room and no roster (users, keys, settings, idempotency records)


class ChangeCounters:
    """The shared counters: in a file (every process that maps it sees every bump) or, for a database in
    memory, in this process alone."""

    def __init__(self, region: mmap.mmap) -> None:
        self._region = region
        self._counts = memoryview(region).cast("Q")

    @classmethod
    def open(cls, path: Path | None) -> ChangeCounters | None:
        """The counters of the database at `path` (None: in memory); None where the file cannot be had."""
        if path is None:
            return cls(mmap.mmap(-1, _SIZE))
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # one process at a time sets the file up
            # Blocks of its own for every page, not a sparse file: a bump into a page that a full disk cannot
            # back would kill the process (SIGBUS). Extending the file adds zeros; what is there stays.
            os.posix_fallocate(fd, 0, _SIZE)
            return cls(mmap.mmap(fd, _SIZE))
        except OSError:
            return None
        finally:
            # Unlocked by hand: the mapping keeps a duplicate of the descriptor, and with it the flock.
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def read(self, room_id: str) -> int:
        return self._counts[_slot(room_id)]

    def read_listing(self) -> int:
        return self._counts[_LISTING]

    def bump(self, room_ids: Iterable[str], *, listing: bool) -> None:
        """Only under the writers' lock, after the COMMIT of the changes to these rooms (and, with `listing`,
        to the list of rooms)."""
        counts = self._counts
        for slot in {_slot(room_id) for room_id in room_ids}:
            counts[slot] += 1
        if listing:
            counts[_LISTING] += 1

    def close(self) -> None:
        self._counts.release()
        with contextlib.suppress(BufferError):
            self._region.close()


def _slot(room_id: str) -> int:
    return zlib.crc32(room_id.encode()) & (SLOTS - 1)


class Kept:
    """Reads kept with the counter value read before them; emptied whole when full."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._entries: dict[Any, tuple[int, Any]] = {}

    def get(self, key: Any, counter: int | None) -> Any:
        """The value kept for `key` if it was read at `counter` (None: no counters, nothing kept), else None."""
        entry = self._entries.get(key)
        return entry[1] if entry is not None and entry[0] == counter else None

    def put(self, key: Any, counter: int, value: Any) -> None:
        if len(self._entries) >= self._limit:
            self._entries.clear()
        self._entries[key] = (counter, value)

    def at(self, counter: int) -> list[tuple[Any, Any]]:
        """The keys and values kept at `counter` (for entries that all follow one counter, like the list's)."""
        return [(key, entry[1]) for key, entry in self._entries.items() if entry[0] == counter]


def _order(room: Room) -> tuple[int, str]:
    return room.created_at, room.id


def advance_page(
    page: Sequence[Room], limit: int, valid_after: int, written: Mapping[str, Room | None]
) -> list[Room] | None:
    """A first page of the list of rooms (newest first, at most `limit` of those valid after `valid_after`) as
    it is once the rooms in `written` are as given there (None: deleted); None where that cannot be told without
    reading the database.

    The rooms after a full page are not known here, but they rank below its last room, and the rooms written
    are known: if at least `limit` of the known rooms rank with the page's last room or above it, none of the
    unknown ones can be among the first `limit`."""
    known = [room for room in page if room.id not in written]  # still newest first
    last = _order(page[-1]) if page and len(page) >= limit else None  # a full page's last room
    for room in written.values():
        if room is None or room.valid_until <= valid_after:
            continue
        order = _order(room)
        if last is not None and order < last:
            continue  # it could only fill a gap, and rooms that are not known here might come first
        at = 0  # new rooms come first: look for the place from the front
        while at < len(known) and _order(known[at]) > order:
            at += 1
        known.insert(at, room)
    if last is not None and len(known) < limit:
        return None
    return known[:limit]


class KeptReads:
    """What one store keeps of its reads, and what the group commit in progress has changed so far.

    `note` takes each write transaction's `Changes` as its last step (a transaction that fails is rolled back and
    changes nothing); `after_commit` is the writer's after-commit step, under the write lock. Without counters
    nothing is kept and nothing is bumped."""

    def __init__(self, counters: ChangeCounters | None) -> None:
        self.counters = counters
        self.rooms = Kept(1 << 15)
        self.participants = Kept(1 << 15)
        self.pages = Kept(1 << 8)
        self.listings = Kept(1 << 8)
        self._written: dict[str, Room | None] = {}
        self._roster_only: set[str] = set()
        self._created: set[str] = set()  # of the rooms written, those the group made: kept once they are read

    def note(self, changes: Changes) -> None:
        self._written.update(changes.rooms)
        self._created.update(changes.created)
        self._roster_only.update(changes.rosters)

    def after_commit(self, committed: bool) -> None:
        """Move the counters of the rooms the group commit touched and, where it committed, keep what it wrote at
        the new counters."""
        counters = self.counters
        if counters is not None and (self._written or self._roster_only):
            rooms, pages = self._kept_after_commit(counters) if committed else ([], [])
            counters.bump(self._written.keys() | self._roster_only, listing=bool(self._written))
            for room in rooms:
                self.rooms.put(room.id, counters.read(room.id), room)
            listing = counters.read_listing()
            for key, page in pages:
                self.listings.put(key, listing, page)
        self._written.clear()
        self._roster_only.clear()
        self._created.clear()

    def _kept_after_commit(self, counters: ChangeCounters) -> tuple[list[Room], list[tuple[Any, Any]]]:
        """Before the bump: the rooms, and the first pages of the list (key, kept value), to keep once it is done."""
        rooms = [room for room in self._written.values() if room is not None and room.id not in self._created]
        for room_id in self._roster_only - self._written.keys():
            room = self.rooms.get(room_id, counters.read(room_id))
            if room is not None:
                rooms.append(room)
        pages: list[tuple[Any, Any]] = []
        if self._written:  # the list changes only with the rooms themselves, not with their rosters
            for key, (valid_after, _, page) in self.listings.at(counters.read_listing()):
                after, limit = key
                advanced = None if after is not None else advance_page(page, limit, valid_after, self._written)
                if advanced is not None:
                    ends = min((room.valid_until for room in advanced), default=FOREVER)
                    pages.append((key, (valid_after, ends, advanced)))
        return rooms, pages
