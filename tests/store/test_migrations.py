"""Schema upgrades keep what a database holds: rosters stored before they had an order read on as they did."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from openrooms.service.model import Participant, Role
from openrooms.store import migrate
from openrooms.store.postgres import PostgresStore, sqlalchemy_url
from openrooms.store.protocol import RoomStore
from openrooms.store.sqlite import SqliteStore
from tests.store import postgres_schema
from tests.support import user_id

T0 = 17_000_000_000_000_000
ROOM = "10000000000000001"


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_rosters_stored_before_the_order_of_addition_are_listed_in_raw_id_order(
    kind: str, tmp_path: Path
) -> None:
    people = [user_id(n) for n in (3, 1, 2)]
    database = postgres_schema.fresh_schema(postgres_schema.base_url(), upgrade=False) if kind == "postgres" else None
    with database or contextlib.nullcontext() as url:
        engine = create_engine(f"sqlite:///{tmp_path / 'openrooms.db'}" if url is None else sqlalchemy_url(url))
        try:
            with engine.begin() as db:
                migrate.upgrade(db, "0003")
                db.execute(text("INSERT INTO rooms (id, created_at, valid_from, valid_until, pstn_dial_out_enabled) "
                                "VALUES (:id, :t, :t, :t, false)"), {"id": ROOM, "t": T0})
                for raw_id in people:
                    db.execute(text("INSERT INTO participants (room_id, raw_id, role) VALUES (:room, :raw_id, "
                                    "'Attendee')"), {"room": ROOM, "raw_id": raw_id})
            with engine.begin() as db:
                migrate.upgrade(db)
        finally:
            engine.dispose()
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

