"""Schema upgrades keep what a database holds: rosters stored before they had an order read on as they did, and
those stored before their entries held a copy of their room take their rooms' values."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from openrooms.service.model import Participant, Role
from openrooms.service.ports import RoomQuery
from openrooms.store import migrate
from openrooms.store.postgres import PostgresStore
from openrooms.store.protocol import RoomStore
from openrooms.store.sqlite import SqliteStore
from tests.store import roster_copies
from tests.store.databases import empty_database
from tests.support import user_id

T0 = 17_000_000_000_000_000
ROOM = "10000000000000001"


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_rosters_stored_before_the_order_of_addition_are_listed_in_raw_id_order(
    kind: str, tmp_path: Path
) -> None:
    people = [user_id(n) for n in (3, 1, 2)]
    with empty_database(kind, tmp_path) as (engine, url):
        with engine.begin() as db:
            migrate.upgrade(db, "0003")
            db.execute(text("INSERT INTO rooms (id, created_at, valid_from, valid_until, pstn_dial_out_enabled) "
                            "VALUES (:id, :t, :t, :t, false)"), {"id": ROOM, "t": T0})
            for raw_id in people:
                db.execute(text("INSERT INTO participants (room_id, raw_id, role) VALUES (:room, :raw_id, "
                                "'Attendee')"), {"room": ROOM, "raw_id": raw_id})
        with engine.begin() as db:
            migrate.upgrade(db)
        store: RoomStore = SqliteStore.open(tmp_path / "openrooms.db") if url is None else PostgresStore.open(url)
        try:
            page = await store.list_participants(ROOM, 0, 10)
            assert page is not None
            assert [p.raw_id for p in page.participants] == sorted(people)
            # Whoever is added now comes after them.
            assert await store.update_participants(ROOM, {user_id(0): Role.PRESENTER}, [])
            page = await store.list_participants(ROOM, 0, 10)
            assert page is not None
            assert page.participants == [*(Participant(p, Role.ATTENDEE) for p in sorted(people)),
                                         Participant(user_id(0), Role.PRESENTER)]
        finally:
            await store.close()



@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_rosters_stored_before_0014_take_their_rooms_values(kind: str, tmp_path: Path) -> None:
    # room id -> (created_at, valid_from, valid_until, pstn_dial_out_enabled, roster)
    rooms = {f"{10**16 + n}": (T0 + n, T0 + (3 - n) * 1000, T0 + 5000 + n, n % 2 == 0, [user_id(k) for k in range(n)])
             for n in range(4)}
    with empty_database(kind, tmp_path) as (engine, url):
        with engine.begin() as db:
            migrate.upgrade(db, "0013")
            for room_id, (created_at, valid_from, valid_until, pstn, people) in rooms.items():
                db.execute(text("INSERT INTO rooms (id, created_at, valid_from, valid_until, "
                                "pstn_dial_out_enabled) VALUES (:id, :created, :start, :end, :pstn)"),
                           {"id": room_id, "created": created_at, "start": valid_from, "end": valid_until,
                            "pstn": pstn})
                for seq, raw_id in enumerate(people, 1):
                    db.execute(text("INSERT INTO participants (room_id, raw_id, role, seq) "
                                    "VALUES (:room, :raw_id, 'Attendee', :seq)"),
                               {"room": room_id, "raw_id": raw_id, "seq": seq})
        with engine.begin() as db:
            migrate.upgrade(db)
        copies = (roster_copies.sqlite_copies(tmp_path / "openrooms.db") if url is None
                  else roster_copies.postgres_copies(url))
        assert copies == {(room_id, raw_id): ((created_at, valid_from, valid_until, pstn),) * 2
                          for room_id, (created_at, valid_from, valid_until, pstn, people) in rooms.items()
                          for raw_id in people}
        store: RoomStore = SqliteStore.open(tmp_path / "openrooms.db") if url is None else PostgresStore.open(url)
        try:
            listed = await store.query_rooms(RoomQuery(T0, participant=user_id(0)), None, 10)
            assert [room.id for room in listed] == [f"{10**16 + n}" for n in (3, 2, 1)]  # by the start of the window
            assert listed == [await store.get_room(room.id) for room in listed]
        finally:
            await store.close()
        if url is not None:  # every insert gives the copies: the columns have no default there
            with psycopg.connect(url) as db, pytest.raises(psycopg.errors.NotNullViolation):
                db.execute("INSERT INTO participants (room_id, raw_id, role, seq) "
                           "VALUES (%s, 'someone', 'Attendee', 9)", (f"{10**16 + 1}",))
