"""The rooms' window instants on both stores: a claim emits each instant that fell due since the last claim once,
in its own transaction, at the room's window as it is then (moved: the new instant; deleted: none); an opening
only for a room that opens after its creation. On PostgreSQL, concurrent claimers emit each instant once."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from openrooms.events import types as t
from openrooms.service.clock import TICKS_PER_SECOND as S
from openrooms.service.model import Room
from openrooms.service.window_events import window_events
from openrooms.store.postgres import PostgresStore
from openrooms.store.protocol import RoomStore
from tests.store.conftest import StoreFactory

T0 = 17_000_000_000_000_000


def room(n: int, valid_from: int, valid_until: int, created_at: int = T0) -> Room:
    return Room(f"{10**16 + n}", created_at, valid_from, valid_until, False)


async def claim(store: RoomStore, now: int, limit: int = 100) -> int | None:
    return await store.claim_window_instants(now, window_events(now), limit)


async def emitted(store: RoomStore) -> list[tuple[str, str, bool]]:
    """(type, room id, late) of each window event, in log order."""
    events = await store.list_events(None, [t.ROOM_WINDOW_OPENED, t.ROOM_WINDOW_CLOSED], None, 1000)
    return [(e.type, e.room_id or "", msgspec.json.decode(e.data)["late"]) for e in events]


OPENED, CLOSED = t.ROOM_WINDOW_OPENED, t.ROOM_WINDOW_CLOSED


async def test_each_instant_is_claimed_once_at_the_window_the_room_has_then(store: RoomStore) -> None:
    assert await claim(store, T0) == 0  # the first claim only sets where the next ones start
    ahead, at_once, deleted, moved = (room(1, T0 + 10 * S, T0 + 20 * S), room(2, T0, T0 + 15 * S),
                                      room(3, T0 + 30 * S, T0 + 40 * S), room(4, T0 + 12 * S, T0 + 50 * S))
    for r in (ahead, at_once, deleted, moved):
        await store.insert_room(r, [], None)
    assert await store.next_window_instant(T0) == T0 + 10 * S
    assert await store.update_room(moved.id, (T0 + 25 * S, T0 + 26 * S), None) is not None
    assert await store.delete_room(deleted.id)
    assert await claim(store, T0 + 5 * S) == 0
    assert await claim(store, T0 + 12 * S) == 1  # at 10, 2 s ago: late; `moved` is no longer due at 12
    assert await claim(store, T0 + 12 * S) == 0
    assert await store.next_window_instant(T0 + 12 * S) == T0 + 15 * S
    assert await claim(store, T0 + 15 * S + S // 2) == 1  # on time
    assert await claim(store, T0 + 60 * S) == 3
    assert await store.next_window_instant(T0 + 60 * S) is None
    assert await emitted(store) == [(OPENED, ahead.id, True), (CLOSED, at_once.id, False),
                                    (CLOSED, ahead.id, True), (OPENED, moved.id, True), (CLOSED, moved.id, True)]
    event = (await store.list_events(None, [OPENED], moved.id, 10))[0]
    assert event.time == T0 + 60 * S and event.subject == "rooms/" + moved.id
    assert msgspec.json.decode(event.data) == {
        "roomId": moved.id, "validFrom": "2023-11-14T22:13:45+00:00", "validUntil": "2023-11-14T22:13:46+00:00",
        "dueDateTime": "2023-11-14T22:13:45+00:00", "late": True}


async def test_a_claim_goes_page_by_page_and_never_splits_an_instant(store: RoomStore) -> None:
    assert await claim(store, T0) == 0
    for n in range(5):  # five rooms opening at the same instant, one at a later one
        await store.insert_room(room(n, T0 + S, T0 + 100 * S), [], None)
    await store.insert_room(room(9, T0 + 2 * S, T0 + 100 * S), [], None)
    assert await claim(store, T0 + 3 * S, limit=2) == 5  # a full page of one instant: all of it
    assert await claim(store, T0 + 3 * S, limit=2) == 1
    assert await claim(store, T0 + 3 * S, limit=2) == 0
    assert len(await emitted(store)) == 6


async def test_concurrent_claimers_on_postgres_emit_each_instant_once(open_store: StoreFactory) -> None:
    first = open_store()
    if not isinstance(first, PostgresStore):
        pytest.skip("PostgreSQL only (SQLite's writers take turns)")
    second = open_store()
    assert await claim(first, T0) == 0
    rooms = [room(n, T0 + n * S // 10, T0 + n * S // 10 + S // 20) for n in range(1, 21)]
    for r in rooms:
        await first.insert_room(r, [], None)
    skipped = 0
    for step in range(1, 9):
        now = T0 + step * S * 3 // 10
        answers = await asyncio.gather(*(claim(s, now, limit=3) for s in (first, second, first, second)))
        skipped += answers.count(None)
    while await claim(first, T0 + 10 * S, limit=3):
        pass
    logged = await emitted(first)
    assert sorted((kind, room_id) for kind, room_id, _ in logged) == sorted(
        [(OPENED, r.id) for r in rooms] + [(CLOSED, r.id) for r in rooms])
    assert skipped > 0  # the claimers did meet
