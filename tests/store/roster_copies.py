"""Each roster entry's copy of its room (migration 0014), read straight from a database: the tests that write
through a store check that every copy equals its room."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg

# Every roster entry, with its copy of the room and the room's own values (NULL: no such room).
_ENTRIES = (
    "SELECT entry.room_id, entry.raw_id, entry.created_at, entry.valid_from, entry.valid_until, "
    "entry.pstn_dial_out_enabled, room.created_at, room.valid_from, room.valid_until, room.pstn_dial_out_enabled "
    "FROM participants entry LEFT JOIN rooms room ON room.id = entry.room_id ORDER BY entry.room_id, entry.raw_id"
)
Copy = tuple[int, int, int, bool]


def _copies(rows: list[tuple[object, ...]]) -> dict[tuple[str, str], tuple[Copy, Copy | None]]:
    def values(row: tuple[object, ...]) -> Copy | None:
        if row[0] is None:
            return None
        created_at, valid_from, valid_until, pstn = row
        return int(created_at), int(valid_from), int(valid_until), bool(pstn)  # type: ignore[call-overload]

    found: dict[tuple[str, str], tuple[Copy, Copy | None]] = {}
    for row in rows:
        copy = values(row[2:6])
        assert copy is not None
        found[(str(row[0]), str(row[1]))] = (copy, values(row[6:10]))
    return found


def sqlite_copies(path: Path) -> dict[tuple[str, str], tuple[Copy, Copy | None]]:
    """(room id, raw id) -> (the entry's copy, its room's values) of every roster entry of the SQLite database."""
    db = sqlite3.connect(path)
    try:
        return _copies(db.execute(_ENTRIES).fetchall())
    finally:
        db.close()


def postgres_copies(url: str) -> dict[tuple[str, str], tuple[Copy, Copy | None]]:
    with psycopg.connect(url) as db:
        return _copies(list(db.execute(_ENTRIES).fetchall()))


def stale(copies: dict[tuple[str, str], tuple[Copy, Copy | None]]) -> dict[tuple[str, str], tuple[Copy, Copy | None]]:
    """The entries whose copy differs from their room (or whose room is gone)."""
    return {entry: pair for entry, pair in copies.items() if pair[0] != pair[1]}
