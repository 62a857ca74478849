"""What only the PostgreSQL store has: schema checks, failing fast when unreachable, and a purge that many
instances may start at once."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from openrooms.service.model import CommunicationUser, Participant, Role, Room
from openrooms.store import migrate, postgres
from openrooms.store.postgres import PostgresStore, SchemaMismatch
from openrooms.store.protocol import RosterPage, StoreUnavailable
from tests.store import postgres_schema
from tests.support import refusing_port

T0 = 17_000_000_000_000_000


def test_serve_refuses_a_schema_it_does_not_know() -> None:
    base = postgres_schema.base_url()
    with postgres_schema.fresh_schema(base, upgrade=False) as url:
        with pytest.raises(SchemaMismatch, match="openrooms db upgrade"):
            postgres.check_schema(url)
        assert postgres.upgrade(url) == migrate.head_revision()
        assert postgres.upgrade(url) == migrate.head_revision()  # a second upgrade has nothing to do
        postgres.check_schema(url)
        with postgres_schema.admin(url) as db:
            db.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
        with pytest.raises(SchemaMismatch, match="newer openrooms"):
            postgres.check_schema(url)


async def test_an_unreachable_database_fails_fast_with_store_unavailable() -> None:
    with refusing_port() as port:
        store = PostgresStore(f"postgresql://postgres@127.0.0.1:{port}/test")  # nothing listens there
        try:
            with pytest.raises(StoreUnavailable):
                await store.get_room("12345678901234567")
        finally:
            await store.close()


async def test_purges_started_together_delete_each_room_once(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    postgres_schema.truncate_all(postgres_url)
    monkeypatch.setattr(postgres, "_PURGE_BATCH", 100)  # a purge of several batches, from a few hundred rooms
    stores = [PostgresStore.open(postgres_url, pool_size=2) for _ in range(3)]
    try:
        for n in range(250):
            ended = Room(f"{10**16 + n}", T0, T0, T0 + 1, False)
            await stores[0].insert_room(ended, [], None)
        results = await asyncio.gather(*(store.purge(T0 + 2, T0) for store in stores))
        # Whoever got the purge lock did all the work; the others skipped the round (or found nothing left).
        assert sum(rooms for rooms, _ in results) == 250
        assert await stores[1].list_rooms(0, None, 10) == []
    finally:
        for store in stores:
            await store.close()


async def test_a_connection_is_checked_before_use_unless_a_request_just_used_it(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks = 0
    real_check = postgres.AsyncConnectionPool.check_connection
    loop = asyncio.get_running_loop()

    async def counted(connection: object) -> None:
        nonlocal checks
        # only this test's: a server another test left running in this process (its window scheduler, its
        # webhook dispatcher) checks its own connections on its own loop
        checks += asyncio.get_running_loop() is loop
        await real_check(connection)  # type: ignore[arg-type]

    monkeypatch.setattr(postgres.AsyncConnectionPool, "check_connection", counted)
    store = PostgresStore.open(postgres_url, pool_size=1)
    try:
        for _ in range(5):
            assert await store.get_room("12345678901234567") is None
        assert checks == 1  # the first use only: each later one follows a use moments before
        monkeypatch.setattr(postgres, "RECENTLY_USED", 0.0)
        for _ in range(3):
            assert await store.get_room("12345678901234567") is None
        assert checks == 4
        # A call that failed does not vouch for its connection: the next use checks it.
        monkeypatch.setattr(postgres, "RECENTLY_USED", 60.0)
        with pytest.raises(postgres.psycopg.errors.UndefinedTable):
            async with store._connection() as db:
                await db.execute("SELECT * FROM no_such_table")
        assert await store.get_room("12345678901234567") is None
        assert checks == 5
    finally:
        await store.close()


def test_urls() -> None:
    assert postgres.redacted("postgresql://u:secret@h:5432/d?x=1") == "postgresql://u:***@h:5432/d?x=1"
    assert postgres.redacted("postgresql://u@h/d") == "postgresql://u@h/d"
    assert postgres.sqlalchemy_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"
    assert postgres.is_postgres_url("postgresql://h/d") and not postgres.is_postgres_url("sqlite:///x.db")


async def test_a_roster_change_that_waits_for_a_user_deletion_counts_the_roster_it_leaves(postgres_url: str) -> None:
    # Deleting a user takes the user out of every roster without the rooms' locks; a roster change that removes
    # the same entry waits for that deletion, and must not count the entry as still there.
    postgres_schema.truncate_all(postgres_url)
    store = PostgresStore.open(postgres_url, pool_size=2)
    members = [f"8:acs:resource_{n}" for n in range(4)]
    try:
        await store.insert_room(Room(f"{10**16}", T0, T0, T0 + 10**12, False),
                                [Participant(m, Role.ATTENDEE) for m in members], None)
        with postgres_schema.admin(postgres_url) as other:
            other.execute("BEGIN")
            other.execute("DELETE FROM participants WHERE raw_id = %s", (members[0],))
            change = asyncio.create_task(store.update_participants(
                f"{10**16}", {"8:acs:resource_new": Role.PRESENTER}, [members[0]], max_participants=4
            ))
            await asyncio.sleep(0.5)
            assert not change.done()  # waiting for the deleted entry's row
            other.execute("COMMIT")
        assert await change  # 4 entries after: within the limit
        page = await store.list_participants(f"{10**16}", 0, 10)
        assert page is not None
        assert {p.raw_id for p in page.participants} == {*members[1:], "8:acs:resource_new"}
    finally:
        await store.close()


async def test_a_roster_change_that_waits_for_its_rooms_deletion_finds_no_room_and_adds_no_one(
    postgres_url: str,
) -> None:
    # A roster change that waits for the room's lock while the room is being deleted finds no room once it gets
    # the lock: it neither fails nor adds anyone to a room that is gone.
    postgres_schema.truncate_all(postgres_url)
    store = PostgresStore.open(postgres_url, pool_size=2)
    room_id = f"{10**16 + 1}"
    try:
        await store.insert_room(Room(room_id, T0, T0, T0 + 10**12, False), [Participant("8:acs:a", Role.ATTENDEE)],
                                None)
        with postgres_schema.admin(postgres_url) as other:
            other.execute("BEGIN")
            other.execute("DELETE FROM rooms WHERE id = %s", (room_id,))
            change = asyncio.create_task(store.update_participants(
                room_id, {"8:acs:b": Role.PRESENTER}, ["8:acs:a"], max_participants=4
            ))
            await asyncio.sleep(0.5)
            assert not change.done()  # waiting for the room's row
            other.execute("COMMIT")
        assert await change is False
        with postgres_schema.admin(postgres_url) as db:
            assert db.execute("SELECT count(*) FROM participants WHERE room_id = %s", (room_id,)).fetchone() == (0,)
        # The connection it used is fine afterwards: the next change on another room goes through.
        await store.insert_room(Room(f"{10**16 + 2}", T0, T0, T0 + 10**12, False), [], None)
        assert await store.update_participants(f"{10**16 + 2}", {"8:acs:b": Role.PRESENTER}, [])
    finally:
        await store.close()


async def sessions_waiting_for_a_lock(url: str, application_name: str, count: int,
                                      unless: asyncio.Task[object] | None = None) -> None:
    """Return once `count` sessions named `application_name` wait for a lock (or `unless` has finished)."""
    with postgres_schema.admin(url) as watcher:
        for _ in range(2000):
            row = watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                                  "AND wait_event_type = 'Lock'", (application_name,)).fetchone()
            if (row is not None and row[0] >= count) or (unless is not None and unless.done()):
                return
            await asyncio.sleep(0.01)
    raise AssertionError(f"{count} sessions never waited for a lock")


@pytest.mark.parametrize("by", ["roster change", "create"])
async def test_adding_a_user_who_is_being_deleted_waits_for_the_deletion(postgres_url: str, by: str) -> None:
    # Without that, an addition that commits while the deletion takes the user out of rosters is acknowledged
    # before the deletion, and yet the user stays in that room after it.
    postgres_schema.truncate_all(postgres_url)
    name = f"openrooms-test-{uuid.uuid4().hex[:12]}"
    url = postgres_schema.with_query(postgres_url, application_name=name)
    adder, deleter = PostgresStore.open(url, pool_size=1), PostgresStore.open(url, pool_size=1)
    user, joined, other = "8:acs:resource_user", f"{10**16 + 1}", f"{10**16 + 2}"
    try:
        await adder.insert_user(CommunicationUser(user, T0))
        await adder.insert_room(Room(joined, T0, T0, T0 + 10**12, False), [Participant(user, Role.ATTENDEE)], None)
        if by == "roster change":
            await adder.insert_room(Room(other, T0, T0, T0 + 10**12, False), [], None)
        with postgres_schema.admin(postgres_url) as holder:
            holder.execute("BEGIN")  # holds the user's entry in the room it is in: the deletion's last step waits
            holder.execute("SELECT 1 FROM participants WHERE room_id = %s AND raw_id = %s FOR UPDATE",
                           (joined, user))
            deletion = asyncio.create_task(deleter.delete_user(user))
            await sessions_waiting_for_a_lock(postgres_url, name, 1)
            addition = asyncio.create_task(
                adder.update_participants(other, {user: Role.PRESENTER}, []) if by == "roster change" else
                adder.insert_room(Room(other, T0, T0, T0 + 10**12, False), [Participant(user, Role.PRESENTER)], None))
            await sessions_waiting_for_a_lock(postgres_url, name, 2, unless=addition)
            assert not addition.done()  # it waits for the deletion in progress
            holder.execute("COMMIT")
        assert await deletion
        assert await addition is (True if by == "roster change" else None)
        # It came after the deletion: the user is in that room, as added, and in no other.
        assert await adder.list_participants(other, 0, 10) == RosterPage([Participant(user, Role.PRESENTER)], None)
        assert await adder.list_participants(joined, 0, 10) == RosterPage([], None)
    finally:
        await adder.close()
        await deleter.close()
