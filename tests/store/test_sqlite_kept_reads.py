"""The SQLite store keeps what it reads of a room until a writer in any process changes that room."""

from __future__ import annotations

import ast
import asyncio
import inspect
import random
import sqlite3
from collections.abc import Awaitable
from pathlib import Path

import pytest

from openrooms.service.model import Participant, Role, Room
from openrooms.store.changes import NOTHING, SLOTS, ChangeCounters
from openrooms.store.protocol import RosterFull, StoreUnavailable
from openrooms.store.sqlite import SqliteStore
from tests.support import user_id

T0 = 17_000_000_000_000_000
ROOM = Room("10000000000000001", T0, T0, T0 + 10**12, False)


async def listed(store: SqliteStore) -> list[Participant] | None:
    """The first page of ROOM's roster."""
    page = await store.list_participants(ROOM.id, 0, 10)
    return None if page is None else page.participants


def change_behind_the_stores_back(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("UPDATE rooms SET pstn_dial_out_enabled = 1 WHERE id = ?", (ROOM.id,))
        db.execute("UPDATE participants SET role = 'Consumer' WHERE room_id = ?", (ROOM.id,))


async def test_a_read_is_kept_until_openrooms_changes_the_room(tmp_path: Path) -> None:
    path = tmp_path / "openrooms.db"
    store = SqliteStore.open(path)
    try:
        await store.insert_room(ROOM, [Participant(user_id(1), Role.ATTENDEE)], None)
        assert await store.get_room(ROOM.id) == ROOM
        assert await store.get_participant(ROOM.id, user_id(1)) == Participant(user_id(1), Role.ATTENDEE)
        assert await listed(store) == [Participant(user_id(1), Role.ATTENDEE)]
        assert await store.list_rooms(T0, None, 10) == [ROOM]
        # Changed by hand, without moving the room's counter: the kept reads are what the store answers.
        change_behind_the_stores_back(path)
        assert await store.get_room(ROOM.id) == ROOM
        assert await store.get_participant(ROOM.id, user_id(1)) == Participant(user_id(1), Role.ATTENDEE)
        assert await listed(store) == [Participant(user_id(1), Role.ATTENDEE)]
        assert await store.list_rooms(T0, None, 10) == [ROOM]
        # A change through any store on the file moves the counter, and every read is fresh again.
        other = SqliteStore.open(path)
        try:
            assert await other.update_participants(ROOM.id, {user_id(2): Role.PRESENTER}, [])
        finally:
            await other.close()
        assert await store.get_room(ROOM.id) == ROOM._replace(pstn_dial_out_enabled=True)
        assert await store.list_rooms(T0, None, 10) == [ROOM]  # a roster change leaves the list of rooms kept
        other = SqliteStore.open(path)
        try:
            await other.update_room(ROOM.id, None, True)
        finally:
            await other.close()
        assert await store.list_rooms(T0, None, 10) == [ROOM._replace(pstn_dial_out_enabled=True)]
        assert await listed(store) == [Participant(user_id(1), Role.CONSUMER),
                                                                    Participant(user_id(2), Role.PRESENTER)]
    finally:
        await store.close()
    counters = (tmp_path / "openrooms.db-changes").stat()
    assert counters.st_size == (SLOTS + 1) * 8
    assert counters.st_blocks * 512 >= (SLOTS + 1) * 8  # allocated, not sparse: a full disk cannot fail a bump


async def test_a_rolled_back_change_leaves_nothing_stale(tmp_path: Path) -> None:
    store = SqliteStore.open(None)
    try:
        await store.insert_room(ROOM, [Participant(user_id(n), Role.ATTENDEE) for n in range(2)], None)
        assert await listed(store) is not None
        with pytest.raises(RosterFull):
            await store.update_participants(ROOM.id, {user_id(5): Role.ATTENDEE}, [], max_participants=2)
        assert await listed(store) == [Participant(user_id(n), Role.ATTENDEE)
                                                                    for n in range(2)]
        assert await store.update_participants(ROOM.id, {}, [user_id(0)])
        assert await listed(store) == [Participant(user_id(1), Role.ATTENDEE)]
    finally:
        await store.close()


async def test_without_the_counters_file_nothing_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "openrooms.db"
    (tmp_path / "openrooms.db-changes").mkdir()  # in the way: the counters cannot be opened
    store = SqliteStore.open(path)
    try:
        await store.insert_room(ROOM, [], None)
        assert await store.get_room(ROOM.id) == ROOM
        change_behind_the_stores_back(path)
        assert await store.get_room(ROOM.id) == ROOM._replace(pstn_dial_out_enabled=True)
    finally:
        await store.close()


def test_counters_are_shared_by_every_mapping_of_the_file_and_only_grow(tmp_path: Path) -> None:
    first, second = (ChangeCounters.open(tmp_path / "changes") for _ in range(2))
    assert first is not None and second is not None
    try:
        assert first.read("a") == second.read("a") == 0
        first.bump(["a", "a", "b"], listing=False)  # one bump per counter, however often a room is named
        assert second.read("a") == 1
        assert second.read_listing() == 0
        second.bump(["a"], listing=True)
        assert first.read("a") == 2
        assert first.read("b") == 1
        assert first.read_listing() == 1
    finally:
        first.close()
        second.close()


async def test_the_store_that_makes_a_change_keeps_it_without_reading_it_back(tmp_path: Path) -> None:
    path = tmp_path / "openrooms.db"
    store = SqliteStore.open(path)
    try:
        await store.insert_room(ROOM, [Participant(user_id(1), Role.ATTENDEE)], None)
        assert await store.list_rooms(T0, None, 10) == [ROOM]
        updated = await store.update_room(ROOM.id, (T0, T0 + 2 * 10**12), None)
        assert updated == ROOM._replace(valid_until=T0 + 2 * 10**12)
        newer = Room("10000000000000002", T0 + 1, T0 + 1, T0 + 10**12, False)
        await store.insert_room(newer, [], None)
        assert await store.update_participants(ROOM.id, {user_id(2): Role.PRESENTER}, [])
        # Changed by hand, without moving any counter: what the store answers was kept when it wrote, not read.
        change_behind_the_stores_back(path)
        assert await store.get_room(ROOM.id) == updated
        assert await store.get_room(newer.id) == newer
        assert await store.list_rooms(T0, None, 10) == [newer, updated]
        assert await store.list_rooms(T0, None, 1) == [newer]  # not kept before: read, and so the change shows
        # A roster change leaves the room kept, but its roster is read again.
        assert await listed(store) == [Participant(user_id(1), Role.CONSUMER),
                                                                    Participant(user_id(2), Role.CONSUMER)]
    finally:
        await store.close()


async def test_a_room_the_store_creates_is_kept_once_it_is_read_not_when_it_is_made(tmp_path: Path) -> None:
    # Under a stream of creates, rooms kept as they are made would push out what reads use.
    path = tmp_path / "openrooms.db"
    store = SqliteStore.open(path)
    try:
        await store.insert_room(ROOM, [], None)
        change_behind_the_stores_back(path)
        made = ROOM._replace(pstn_dial_out_enabled=True)
        assert await store.get_room(ROOM.id) == made  # nothing kept from the create: read
        with sqlite3.connect(path) as db:
            db.execute("UPDATE rooms SET pstn_dial_out_enabled = 0 WHERE id = ?", (ROOM.id,))
        assert await store.get_room(ROOM.id) == made  # kept since that read
    finally:
        await store.close()


async def test_a_group_whose_commit_fails_keeps_nothing_of_it(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "openrooms.db")
    try:
        await store.insert_room(ROOM, [], None)
        assert await store.get_room(ROOM.id) == ROOM
        assert await store.list_rooms(T0, None, 10) == [ROOM]
        newer = Room("10000000000000002", T0 + 1, T0 + 1, T0 + 10**12, False)
        # One transaction of the group fails the database itself: the whole group is rolled back.
        results = await asyncio.gather(
            store.update_room(ROOM.id, None, True),
            store.insert_room(newer, [], None),
            store._write(lambda db: (db.execute("INSERT INTO no_such_table VALUES (1)"), NOTHING)),
            return_exceptions=True,
        )
        assert all(isinstance(result, StoreUnavailable) for result in results)
        assert await store.get_room(ROOM.id) == ROOM
        assert await store.get_room(newer.id) is None
        assert await store.list_rooms(T0, None, 10) == [ROOM]
    finally:
        await store.close()


@pytest.mark.parametrize("seed", range(6))
async def test_kept_reads_always_match_the_database_whichever_store_changes_it(tmp_path: Path, seed: int) -> None:
    """Two stores (two server processes) on one file make random changes in concurrent groups, some of them
    failing, with reads in between; every read of either store must equal the database's committed state."""
    rng = random.Random(seed)
    path = tmp_path / "openrooms.db"
    stores = [SqliteStore.open(path), SqliteStore.open(path)]
    ids: list[str] = []
    next_id = 10_000_000_000_000_000
    span = 10**10

    def new_room() -> Room:
        nonlocal next_id
        next_id += rng.choice([1, 1, 7])
        created = T0 + rng.randrange(40) * span  # often the same instant: ties are ordered by id
        return Room(str(next_id), created, created, T0 + rng.randrange(1, 60) * span, rng.random() < 0.5)

    def change(store: SqliteStore) -> Awaitable[object]:
        pick = rng.random()
        if pick < 0.3 or not ids:
            room = new_room()
            ids.append(room.id)
            taken = Room(rng.choice(ids), T0, T0, T0 + span, False)
            return store.insert_room(taken if rng.random() < 0.1 else room, [], None)  # some ids are taken
        room_id = rng.choice(ids)
        if pick < 0.55:
            return store.update_room(room_id, (T0, T0 + rng.randrange(1, 60) * span), rng.choice([None, True]))
        if pick < 0.65:
            return store.delete_room(room_id)
        if pick < 0.8:  # a roster change, failing when the roster is full
            return store.update_participants(room_id, {user_id(rng.randrange(5)): Role.ATTENDEE}, [],
                                             max_participants=3)
        if pick < 0.85:
            return store.purge(T0 + rng.randrange(20) * span, 0)
        if pick < 0.9:  # fails the database: the whole group is rolled back
            return store._write(lambda db: (db.execute("INSERT INTO no_such_table VALUES (1)"), NOTHING))
        return read(store)

    def read(store: SqliteStore) -> Awaitable[object]:
        if rng.random() < 0.5 and ids:
            return store.get_room(rng.choice(ids))
        return store.list_rooms(T0 + rng.randrange(30) * span, None, rng.choice([1, 3, 10, 100]))

    def committed() -> dict[str, Room]:
        with sqlite3.connect(path) as db:
            rows = db.execute("SELECT id, created_at, valid_from, valid_until, pstn_dial_out_enabled FROM rooms")
            return {row[0]: Room(row[0], row[1], row[2], row[3], bool(row[4])) for row in rows}

    try:
        for _ in range(60):
            await asyncio.gather(*(change(rng.choice(stores)) for _ in range(rng.randrange(1, 12))),
                                 return_exceptions=True)
            truth = committed()
            newest_first = sorted(truth.values(), key=lambda room: (room.created_at, room.id), reverse=True)
            for store in stores:
                for room_id in rng.sample(ids, min(len(ids), 20)):
                    assert await store.get_room(room_id) == truth.get(room_id)
                for step in range(0, 30, 3):
                    valid_after = T0 + step * span
                    for limit in (1, 3, 10, 100):
                        expected = [room for room in newest_first if room.valid_until > valid_after][:limit]
                        assert await store.list_rooms(valid_after, None, limit) == expected
    finally:
        for store in stores:
            await store.close()


def test_the_store_writes_only_through_the_step_that_notes_what_a_write_changed() -> None:
    # `_write` takes each transaction's changes for the bump after its COMMIT; a write straight to the writer
    # would change rooms that other workers go on serving from memory.
    tree = ast.parse(inspect.getsource(SqliteStore))
    users = {
        function.name
        for function in ast.walk(tree) if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.walk(function)
        if isinstance(node, ast.Attribute) and node.attr == "run"
        and isinstance(node.value, ast.Attribute) and node.value.attr == "_writer"
    }
    assert users == {"_read", "_write"}  # `_read`: a database in memory reads through the writer's connection
