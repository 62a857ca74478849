"""How both stores find the rooms' window instants that fell due: one watermark, `window_clock.covered`, the
instant up to which every window event was emitted (migration 0010). A claim emits the instants in
(covered, now] and moves the watermark to now, in one transaction; the next instant ahead is found by two index
lookups. Nothing is written when a room is created or updated: a room whose instant moves is simply found at
its new instant (and no longer at the old one), a deleted room is found at none.

An opening is due only for a room whose `validFrom` is after its creation (`valid_from > created_at`, the
predicate of the partial index `rooms_by_valid_from_ahead`): a room open from its creation on says so in its
RoomCreated event.
"""

from __future__ import annotations

from collections.abc import Sequence

from openrooms.service.ports import WindowInstant

# The instants due in (covered, now], in the order they are emitted; `:name` parameters (psycopg: `%(name)s`).
DUE = (
    "SELECT id, valid_from, valid_until, 0 AS closing, valid_from AS instant FROM rooms "
    "WHERE valid_from > created_at AND valid_from > :covered AND valid_from <= :upto "
    "UNION ALL SELECT id, valid_from, valid_until, 1, valid_until FROM rooms "
    "WHERE valid_until > :covered AND valid_until <= :upto "
    "ORDER BY instant, closing, id LIMIT :limit"
)
NEXT = (
    "SELECT min(instant) FROM (SELECT min(valid_from) AS instant FROM rooms "
    "WHERE valid_from > created_at AND valid_from > :after "
    "UNION ALL SELECT min(valid_until) FROM rooms WHERE valid_until > :after) AS ahead"
)


def psycopg(statement: str) -> str:
    for name in ("covered", "upto", "limit", "after"):
        statement = statement.replace(":" + name, f"%({name})s")
    return statement


def instants(rows: Sequence[tuple[str, int, int, int, int]]) -> list[WindowInstant]:
    return [WindowInstant(room_id, bool(closing), instant, valid_from, valid_until)
            for room_id, valid_from, valid_until, closing, instant in rows]


def cut(due: list[WindowInstant], limit: int, now: int) -> tuple[list[WindowInstant], int] | None:
    """The instants to emit of a page of `limit` due ones, and the watermark after them; None when the page is
    full of one instant (the caller reads all of that instant's rooms, then covers it)."""
    if len(due) < limit:
        return due, now
    last = due[-1].instant
    head = [instant for instant in due if instant.instant < last]
    return (head, last - 1) if head else None
