"""The bulk preload gives the benchmarks a database laid out as one the API filled, and the server serves it."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from bench import preload
from openrooms.service.ids import check_room_id, room_id_made_at
from openrooms.store.sqlite import SqliteStore
from tests.store import roster_copies


def test_preloaded_rooms_lie_in_the_order_they_were_made_with_ids_made_at_that_time(tmp_path: Path) -> None:
    ids = preload.preload(tmp_path, 3000, 7000, quiet=True)
    db = sqlite3.connect(tmp_path / "openrooms.db")
    rows = db.execute("SELECT id, created_at FROM rooms ORDER BY rowid").fetchall()
    # The table's rows in the order of creation, as the server appends them: a scan of the room list (newest
    # first) reads the table's pages one after the other.
    made = [created for _, created in rows]
    assert made == sorted(made)
    assert sorted(room_id for room_id, _ in rows) == sorted(ids) and len(set(ids)) == 3000
    for room_id, created in rows:
        check_room_id(room_id)
        window = created * 100  # ticks of 100 ns -> ns
        assert room_id_made_at(window, 0) <= room_id <= room_id_made_at(window, 99_999)
    assert db.execute("SELECT count(*) FROM participants").fetchone()[0] == 7000
    assert db.execute("SELECT count(*) FROM room_ids").fetchone()[0] == 3000
    # Each roster entry with its copy of the room, and the indexes rebuilt after the load.
    assert roster_copies.stale(roster_copies.sqlite_copies(tmp_path / "openrooms.db")) == {}
    assert {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")} >= {
        "participants_rooms_by_valid_from", "participants_by_seq", "rooms_by_valid_from"}
    db.close()

    async def served() -> None:
        store = SqliteStore.open(tmp_path / "openrooms.db", migrate_schema=False)
        try:
            room = await store.get_room(ids[-1])
            assert room is not None and room.id == ids[-1]
            newest = await store.list_rooms(0, None, 5)
            assert [r.id for r in newest] == [room_id for room_id, _ in reversed(rows[-5:])]
            roster = await store.list_participants(ids[0], 0, 100)
            assert roster is not None and len(roster.participants) in (2, 3)
        finally:
            await store.close()

    asyncio.run(served())
