"""The SQLite store keeps what it reads of a room until a writer in any process changes that room."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from openrooms.service.model import Participant, Role, Room
from openrooms.store.changes import SLOTS, ChangeCounters
from openrooms.store.protocol import RosterFull
from openrooms.store.sqlite import SqliteStore
from tests.support import user_id

T0 = 17_000_000_000_000_000
ROOM = Room("10000000000000001", T0, T0, T0 + 10**12, False)


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
        assert await store.list_participants(ROOM.id, None, 10) == [Participant(user_id(1), Role.ATTENDEE)]
        assert await store.list_rooms(T0, None, 10) == [ROOM]
        # Changed by hand, without moving the room's counter: the kept reads are what the store answers.
        change_behind_the_stores_back(path)
        assert await store.get_room(ROOM.id) == ROOM
        assert await store.get_participant(ROOM.id, user_id(1)) == Participant(user_id(1), Role.ATTENDEE)
        assert await store.list_participants(ROOM.id, None, 10) == [Participant(user_id(1), Role.ATTENDEE)]
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
        assert await store.list_participants(ROOM.id, None, 10) == [Participant(user_id(1), Role.CONSUMER),
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
        assert await store.list_participants(ROOM.id, None, 10) is not None
        with pytest.raises(RosterFull):
            await store.update_participants(ROOM.id, {user_id(5): Role.ATTENDEE}, [], max_participants=2)
        assert await store.list_participants(ROOM.id, None, 10) == [Participant(user_id(n), Role.ATTENDEE)
                                                                    for n in range(2)]
        assert await store.update_participants(ROOM.id, {}, [user_id(0)])
        assert await store.list_participants(ROOM.id, None, 10) == [Participant(user_id(1), Role.ATTENDEE)]
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
