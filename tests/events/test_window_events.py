"""The scheduling rules of the rooms' window events, through the rooms service and the scheduler on a real store
(in-memory SQLite) with a clock that moves only when told: which instants are events, which are late, when the
scheduler wakes and how long it sleeps."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import msgspec
import pytest

from openrooms.events import types as t
from openrooms.service import timestamps
from openrooms.service.clock import TICKS_PER_SECOND as S
from openrooms.service.clock import FixedClock
from openrooms.service.model import CreateRoom, Role, UpdateRoom
from openrooms.service.ports import StoreUnavailable
from openrooms.service.rooms import RoomsService
from openrooms.service.window_events import MAX_SLEEP_SECONDS, WindowScheduler
from openrooms.store.sqlite import SqliteStore

START = 1_790_000_000 * S
ROLES = list(Role)


@pytest.fixture
async def store() -> AsyncIterator[SqliteStore]:
    store = SqliteStore.open(None)
    yield store
    await store.close()


class World:
    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.clock = FixedClock(START)
        self.scheduler = WindowScheduler(store, self.clock)
        self.rooms = RoomsService(store, self.clock, on_window=self.scheduler.note)

    async def create(self, valid_from: int | None, valid_until: int | None) -> str:
        return (await self.rooms.rooms_create(CreateRoom(valid_from, valid_until), ROLES)).room.id

    async def at(self, seconds: float) -> int | None:
        """Move the clock to START + seconds and claim what fell due."""
        self.clock.advance(START + int(seconds * S) - self.clock.now())
        return await self.scheduler.claim()

    async def events(self) -> list[tuple[str, str, str, bool]]:
        """(type, room, due instant, late) of each window event, and the scheduler's recorded instant."""
        found = await self.store.list_events(None, [t.ROOM_WINDOW_OPENED, t.ROOM_WINDOW_CLOSED], None, 100)
        decoded = [(e, msgspec.json.decode(e.data)) for e in found]
        return [(e.type.removeprefix("OpenRooms.RoomWindow"), data["roomId"], data["dueDateTime"], data["late"])
                for e, data in decoded]


@pytest.fixture
async def world(store: SqliteStore) -> World:
    w = World(store)
    assert await w.scheduler.claim() == 0  # the first claim starts the watermark at START
    return w


def due(seconds: float) -> str:
    return timestamps.format(START + int(seconds * S))


async def test_a_window_ahead_opens_and_closes_once_and_a_room_open_from_its_creation_only_closes(world: World) -> None:
    ahead = await world.create(START + 10 * S, START + 20 * S)
    at_once = await world.create(None, START + 15 * S)
    assert await world.at(10.5) == 1
    assert await world.at(10.5) == 0
    assert await world.at(15.2) == 1
    assert await world.at(20) == 1
    assert await world.events() == [("Opened", ahead, due(10), False), ("Closed", at_once, due(15), False),
                                    ("Closed", ahead, due(20), False)]


async def test_a_moved_window_gets_events_at_its_new_instants_and_a_deleted_room_none(world: World) -> None:
    moved = await world.create(START + 10 * S, START + 20 * S)
    deleted = await world.create(START + 10 * S, START + 20 * S)
    await world.rooms.rooms_update(moved, UpdateRoom(START + 30 * S, START + 40 * S))
    await world.rooms.rooms_delete(deleted)
    assert await world.at(25) == 0
    assert await world.at(40) == 2
    # Moved to an instant already past when it was set: its update's event says so, no window event.
    await world.rooms.rooms_update(moved, UpdateRoom(START + 35 * S, START + 50 * S))
    assert await world.at(50) == 1
    assert await world.events() == [("Opened", moved, due(30), True), ("Closed", moved, due(40), False),
                                    ("Closed", moved, due(50), False)]


async def test_instants_missed_while_no_server_ran_are_emitted_on_start_marked_late(store: SqliteStore) -> None:
    before = World(store)
    assert await before.scheduler.claim() == 0
    room_id = await before.create(START + 10 * S, START + 20 * S)
    after = World(store)  # a restart, 15 s later
    assert await after.at(15) == 1
    assert await after.events() == [("Opened", room_id, due(10), True)]


async def test_the_scheduler_sleeps_until_the_next_instant_and_a_create_before_it_wakes_it(world: World) -> None:
    assert await world.scheduler.sleep_seconds() == MAX_SLEEP_SECONDS  # nothing ahead
    await world.create(START + 3 * S, START + 100 * S)
    assert await world.scheduler.sleep_seconds() == 3
    await world.create(None, START + 1000 * S)  # open at once, closing after the planned instant: no wake
    await world.create(START + 4 * S, START + 5 * S)
    assert not world.scheduler.woken
    await world.create(START + 2 * S, START + 5 * S)
    assert world.scheduler.woken


async def test_an_instant_falling_due_between_a_claim_and_the_sleep_after_it_is_claimed_at_once(world: World) -> None:
    await world.create(START + 3 * S, START + 100 * S)
    assert await world.at(2.9999) == 0  # woken a moment early (the loop's clock is not the wall clock)
    world.clock.advance(S // 1000)  # and the instant passes before the scheduler asks what comes next
    assert await world.scheduler.sleep_seconds() == 0
    assert await world.scheduler.claim() == 1
    assert await world.scheduler.sleep_seconds() == MAX_SLEEP_SECONDS  # the close is far ahead


class FailingClaims:
    """A store whose claims fail with `failure`; `called` is set at the first."""

    def __init__(self, failure: Exception) -> None:
        self.failure = failure
        self.called = asyncio.Event()

    async def claim_window_instants(self, now: int, events: object, limit: int) -> int | None:
        self.called.set()
        raise self.failure

    async def next_window_instant(self, after: int) -> int | None:
        raise AssertionError("not reached: the claim failed")


async def run_until_the_first_claim_failed(failure: Exception) -> None:
    store = FailingClaims(failure)
    scheduler = WindowScheduler(store, FixedClock(START))
    running = asyncio.create_task(scheduler.run())
    async with asyncio.timeout(10):  # a guard against a hang, not a measure
        await store.called.wait()
        await asyncio.sleep(0)  # the failure is logged before the scheduler sleeps
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    assert running.cancelled()


async def test_a_store_away_is_one_warning_and_the_scheduler_tries_again(caplog: pytest.LogCaptureFixture) -> None:
    await run_until_the_first_claim_failed(StoreUnavailable("the database cannot be reached"))
    [record] = [r for r in caplog.records if r.name == "openrooms.windows"]
    assert (record.levelno, record.exc_info) == (logging.WARNING, None)
    assert record.getMessage() == "window events: the claim failed, trying again: the database cannot be reached"


@pytest.mark.logs_errors
async def test_any_other_failure_of_a_claim_is_an_error_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    await run_until_the_first_claim_failed(RuntimeError("a defect"))
    [record] = [r for r in caplog.records if r.name == "openrooms.windows"]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
