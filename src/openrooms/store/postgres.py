"""The server store: PostgreSQL, shared by any number of stateless openrooms instances.

Everything an instance needs lives in the database, so instances behind a load balancer agree without
talking to each other. Each method is one transaction on a pooled connection (psycopg 3, async), and where it
can be, one statement: each round trip costs this process more CPU than the database spends on it. Writes that
could race across instances are made safe by the database: roster changes lock their room's row first (and
before it, the users they add; deleting a user locks the user, then every room the user is in), an
idempotent create claims its request id with `INSERT ... ON CONFLICT DO NOTHING` before anything else, and
room ids are claimed in the `room_ids` ledger.

Failures never hang a request: connecting, waiting for a pooled connection, each statement and each lock wait
have time limits, and any of them (or a lost connection) becomes `StoreUnavailable`, which the HTTP layer
answers with 503. The pool checks a connection before handing it out, unless a request used it without error
in the last `RECENTLY_USED` seconds (a check is a round trip of its own: under load it doubled the cost of a get
room), and reconnects in the background, so an instance recovers by itself when the database is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator, Collection, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec
import psycopg
import sqlalchemy.exc
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from openrooms import config
from openrooms.events.types import NewEvent, StoredEvent
from openrooms.service.model import (
    ROLES,
    CallServer,
    CommunicationUser,
    CreateRecord,
    Participant,
    Role,
    Room,
    SigningKey,
)
from openrooms.service.ports import (
    RoomUpdateEvents,
    RosterChangeEvents,
    UserDeletionEvents,
    WindowEvents,
    roster_change,
)
from openrooms.store import migrate, windows
from openrooms.store.console_sessions import PostgresConsoleSessions
from openrooms.store.postgres_webhooks import PostgresWebhooks
from openrooms.store.protocol import RoomIdTaken, RoomQuery, RosterFull, RosterPage, StoreUnavailable, UserIdTaken
from openrooms.store.records import created_room, created_room_value
from openrooms.store.room_queries import CALL_ROOMS, room_count, room_query

log = logging.getLogger("openrooms.store")

# The defaults of the settings (`--pool-size`, `--database-*-timeout`, ...): see `openrooms.config`. In seconds,
# a request waits at most POOL_WAIT for a connection, and gives up on the whole store call after CALL_TIMEOUT even
# if the network swallows packets (the server-side limits below cannot see that); after RECONNECT_TIMEOUT failing
# to reconnect, the pool stops trying in the background and a waiting request starts a new attempt.
URL_SCHEMES = config.POSTGRES_URL_SCHEMES
DEFAULT_POOL_SIZE = config.DEFAULT_POOL_SIZE
CONNECT_TIMEOUT = config.DEFAULT_DATABASE_CONNECT_TIMEOUT
POOL_WAIT = config.DEFAULT_DATABASE_POOL_WAIT
CALL_TIMEOUT = config.DEFAULT_DATABASE_CALL_TIMEOUT
RECONNECT_TIMEOUT = config.DEFAULT_DATABASE_RECONNECT_TIMEOUT
RECENTLY_USED = 2.0  # seconds
# Server-side limits, in ms. A URL's own `options=-c ...` come after these, so they win.
SESSION_OPTIONS = "-c statement_timeout=10000 -c lock_timeout=5000 -c idle_in_transaction_session_timeout=30000"

_ROOM_COLUMNS = "id, created_at, valid_from, valid_until, pstn_dial_out_enabled"
_PURGE_BATCH = 1000
_RESOURCE_ID = "resource_id"
_KEY_COLUMNS = "kid, private_key_pem, certificate_pem, created_at"
# Advisory locks (class, hashtext(current_schema())): one per kind of work and per schema, so that instances
# sharing a schema take turns: one purges at a time, one migrates at a time, one makes the first signing key.
_PURGE_LOCK_CLASS = 0x6F70726D  # "oprm"
_MIGRATE_LOCK_CLASS = _PURGE_LOCK_CLASS + 1
_SIGNING_KEY_LOCK_CLASS = _PURGE_LOCK_CLASS + 2
# Adding a user to a roster and deleting that user take turns: additions hold a shared advisory lock for each user
# they add until they commit, and a deletion holds it exclusively until it commits. A deletion that waited for an
# addition then finds the entry it added; an addition that waited for a deletion comes after it, as if sent
# later. The lock is one of USER_LOCKS per user, picked by a hash of the raw id (an addition of a thousand users
# takes at most that many locks); users that share one only wait for each other's deletion.
_USER_LOCK_CLASS = _PURGE_LOCK_CLASS + 3
USER_LOCKS = 64
# Every transaction that logs events holds this lock (shared: they do not wait for each other) from before its
# first write, so before it has a transaction id, until it ends. A reader of the log finds the transaction ids of
# the holders in pg_locks, and reads only events of transactions older than all of them (see `_EVENTS_HORIZON`).
_EVENTS_LOCK_CLASS = _PURGE_LOCK_CLASS + 4
_LOCK_EVENTS = f"pg_advisory_xact_lock_shared({_EVENTS_LOCK_CLASS}, hashtext(current_schema()))"
_LOCK_ADDED_USERS = (
    f"SELECT count(pg_advisory_xact_lock_shared({_USER_LOCK_CLASS}, bucket)) AS taken FROM "
    f"(SELECT DISTINCT hashtext(raw_id) & {USER_LOCKS - 1} AS bucket "
    "FROM unnest(%(added)s::text[]) AS raw_id ORDER BY bucket) AS buckets"  # in order: no deadlock between two
)


# A roster entry, and its copy of its room's values (`room_queries.COPIED_COLUMNS`, migration 0014).
_ROSTER_COLUMNS = "room_id, raw_id, role, seq, created_at, valid_from, valid_until, pstn_dial_out_enabled"
# A room, its id claimed in the `room_ids` ledger and its roster, as one statement: its count is 0 when the id was
# taken. The events lock is taken before anything is written (see `_EVENTS_LOCK_CLASS`). The statements of a WITH
# see one another's rows only through RETURNING, and the roster's foreign key
# is checked at the end of the statement, when the room is in. The users' locks come first: the id's claim reads
# from them.
_CREATE_ROOM = (
    f"WITH locked AS MATERIALIZED ({_LOCK_ADDED_USERS}), logging AS MATERIALIZED (SELECT {_LOCK_EVENTS}), "
    "issued AS (INSERT INTO room_ids (id) SELECT %(id)s FROM locked, logging ON CONFLICT DO NOTHING RETURNING id), "
    f"room AS (INSERT INTO rooms ({_ROOM_COLUMNS}) "
    "SELECT id, %(created_at)s, %(valid_from)s, %(valid_until)s, %(pstn)s FROM issued RETURNING id), "
    f"roster AS (INSERT INTO participants ({_ROSTER_COLUMNS}) SELECT room.id, entry.raw_id, entry.role, entry.seq, "
    "%(created_at)s::bigint, %(valid_from)s::bigint, %(valid_until)s::bigint, %(pstn)s::boolean "
    "FROM room, unnest(%(added)s::text[], %(roles)s::text[]) WITH ORDINALITY AS entry (raw_id, role, seq)), "
    "logged AS (INSERT INTO events (type, subject, room_id, time, data) SELECT event.* FROM room, "
    "unnest(%(ev_type)s::text[], %(ev_subject)s::text[], %(ev_room)s::text[], "
    "%(ev_time)s::bigint[], %(ev_data)s::text[]) AS event) "
    "SELECT count(*) FROM room"
)
# Events appended in the transaction of their change (the event log's outbox), as one statement.
_APPEND_EVENTS = (
    "INSERT INTO events (type, subject, room_id, time, data) SELECT * FROM "
    "unnest(%(ev_type)s::text[], %(ev_subject)s::text[], %(ev_room)s::text[], "
    "%(ev_time)s::bigint[], %(ev_data)s::text[])"
)
# Where reading the log must stop for now, as a transaction id: the oldest transaction id of the transactions that
# hold the events lock now, and the next transaction id to be given out. Run before `_LIST_EVENTS`, in a statement
# of its own: a transaction whose events that statement's snapshot cannot see had not ended when this one looked
# at the locks, so it held the lock then (with its id, or still without one: then its id comes after the next
# one), or took it later (and its id comes later still). A holder's transaction id is 32 bits in pg_locks: the
# 64-bit one is the one of the same low 32 bits just below the next id.
_EVENTS_HORIZON = (
    "WITH next AS (SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS id) "
    "SELECT least(next.id, min(next.id - ((next.id - held.transactionid::text::bigint) % 4294967296))) "
    "FROM next LEFT JOIN (pg_locks event_lock JOIN pg_locks held ON held.pid = event_lock.pid "
    "AND held.locktype = 'transactionid' AND held.mode = 'ExclusiveLock' AND held.granted) "
    f"ON event_lock.locktype = 'advisory' AND event_lock.classid = {_EVENTS_LOCK_CLASS} "
    "AND event_lock.objid::text::bigint = (hashtext(current_schema())::bigint & 4294967295) "
    "AND event_lock.objsubid = 2 AND event_lock.granted "
    "AND event_lock.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "GROUP BY next.id"
)
# Events in the log's order, (transaction id, sequence number), up to the horizon: none that commits later can
# sort before the last one read.
_EVENT_COLUMNS = "(tx::text)::bigint, seq, type, subject, room_id, time, data"
_LIST_EVENTS = (
    f"SELECT {_EVENT_COLUMNS} FROM events WHERE (tx, seq) > (%(tx)s::text::xid8, %(seq)s::bigint) "
    "AND tx < %(horizon)s::text::xid8 "
    "AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[])) "
    "AND (%(room)s::text IS NULL OR room_id = %(room)s::text) ORDER BY tx, seq LIMIT %(limit)s"
)

# The last events up to a position, newest first (read backwards along the position index).
_LATEST_EVENTS = (
    f"SELECT {_EVENT_COLUMNS} FROM events WHERE (tx, seq) <= (%(tx)s::text::xid8, %(seq)s::bigint) "
    "AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[])) "
    "AND (%(room)s::text IS NULL OR room_id = %(room)s::text) ORDER BY tx DESC, seq DESC LIMIT %(limit)s"
)

def _event_arrays(events: Sequence[NewEvent]) -> dict[str, list[Any]]:
    return {
        "ev_type": [e.type for e in events],
        "ev_subject": [e.subject for e in events], "ev_room": [e.room_id for e in events],
        "ev_time": [e.time for e in events], "ev_data": [msgspec.json.encode(e.data).decode() for e in events],
    }


async def _append(db: AsyncConnection[Any], events: Sequence[NewEvent]) -> None:
    if events:
        await db.execute(_APPEND_EVENTS, _event_arrays(events))
# A roster change's first step: the locks of the users it adds, then its room's row. The row is locked only once a
# row of the join is there, so after the users' locks.
_LOCK_ROSTER_ADDING = (
    f"WITH locked AS MATERIALIZED ({_LOCK_ADDED_USERS}) "
    "SELECT 1 FROM rooms, locked WHERE rooms.id = %(room)s FOR NO KEY UPDATE OF rooms"
)
# Whether the room exists (first column) and a page of its roster in the order of addition, as one statement: at
# least one row, whose raw_id is NULL when the page is empty.
_PARTICIPANTS_PAGE = (
    "SELECT room.id IS NOT NULL, entry.raw_id, entry.role, entry.seq FROM (SELECT %s::text AS id) wanted "
    "LEFT JOIN rooms room ON room.id = wanted.id "
    "LEFT JOIN LATERAL (SELECT raw_id, role, seq FROM participants WHERE room_id = room.id AND seq >= %s "
    "ORDER BY seq LIMIT %s) entry ON true "
    "ORDER BY entry.seq"
)


# A roster change as one statement: the upserts (new participants take the places after the last one, in the order
# given, with their copy of the room; a role change keeps its place), the removals, and the counts that tell the
# roster's size before and after. The counts all come from the roster as the statement found it, without its own
# changes: its size, how many of the upserted ids were not on it, and how many of the removed ones were. Every
# change to a roster holds its room's lock (deleting a user too), so the roster found is the one the change before
# left, and the room's values copied are the ones an update of the room before left.
_CHANGE_ROSTER = (
    f"WITH upserted AS (INSERT INTO participants ({_ROSTER_COLUMNS}) "
    "SELECT room.id, entry.raw_id, entry.role, latest.seq + entry.n, "
    "room.created_at, room.valid_from, room.valid_until, room.pstn_dial_out_enabled "
    "FROM unnest(%(upserted)s::text[], %(roles)s::text[]) WITH ORDINALITY AS entry (raw_id, role, n), "
    "(SELECT coalesce(max(seq), 0) AS seq FROM participants WHERE room_id = %(room)s) latest, "
    "rooms room WHERE room.id = %(room)s "
    "ON CONFLICT (room_id, raw_id) DO UPDATE SET role = excluded.role), "
    "removed AS (DELETE FROM participants WHERE room_id = %(room)s AND raw_id = ANY(%(removed)s::text[])) "
    "SELECT (SELECT count(*) FROM participants WHERE room_id = %(room)s), "
    "(SELECT count(*) FROM unnest(%(upserted)s::text[]) AS new (raw_id) WHERE NOT EXISTS "
    "(SELECT 1 FROM participants WHERE room_id = %(room)s AND raw_id = new.raw_id)), "
    "(SELECT count(*) FROM participants WHERE room_id = %(room)s AND raw_id = ANY(%(removed)s::text[]))"
)


# A room's update, with its roster's copies of it (those that differ: a change of nothing writes no entry).
_UPDATE_ROOM = (
    "WITH room AS (UPDATE rooms SET valid_from = coalesce(%(valid_from)s::bigint, valid_from), "
    "valid_until = coalesce(%(valid_until)s::bigint, valid_until), "
    "pstn_dial_out_enabled = coalesce(%(pstn)s::boolean, pstn_dial_out_enabled) "
    f"WHERE id = %(room)s RETURNING {_ROOM_COLUMNS}), "
    "roster AS (UPDATE participants entry SET valid_from = room.valid_from, valid_until = room.valid_until, "
    "pstn_dial_out_enabled = room.pstn_dial_out_enabled FROM room WHERE entry.room_id = room.id "
    "AND (entry.valid_from, entry.valid_until, entry.pstn_dial_out_enabled) "
    "IS DISTINCT FROM (room.valid_from, room.valid_until, room.pstn_dial_out_enabled)) "
    f"SELECT {_ROOM_COLUMNS} FROM room"
)


class SchemaMismatch(Exception):
    """The database's schema is not the one this version of openrooms knows."""


class DatabaseError(Exception):
    """The database could not be reached or refused the schema work; the message says why."""


@contextlib.contextmanager
def _schema_work() -> Iterator[None]:
    try:
        yield
    except sqlalchemy.exc.DBAPIError as exc:
        raise DatabaseError(str(exc.orig).strip()) from exc
    except psycopg.Error as exc:
        raise DatabaseError(str(exc).strip()) from exc


is_postgres_url = config.is_postgres_url


def libpq_url(url: str) -> str:
    """The URL as libpq (psycopg) takes it."""
    parts = urlsplit(url)
    if parts.scheme not in URL_SCHEMES:
        raise ValueError(f"not a PostgreSQL URL (postgresql://...): {redacted(url)}")
    return urlunsplit(parts._replace(scheme="postgresql"))


def sqlalchemy_url(url: str) -> str:
    """The URL as SQLAlchemy (and so Alembic) takes it: the psycopg 3 dialect."""
    return "postgresql+psycopg" + libpq_url(url)[len("postgresql"):]


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def _engine(url: str) -> Any:
    return create_engine(sqlalchemy_url(url), connect_args={"connect_timeout": CONNECT_TIMEOUT}, poolclass=NullPool)


def upgrade(url: str) -> str:
    """Create the schema or bring it to this version's head; returns the revision. Instances that upgrade at
    the same time take turns (an advisory lock), so the second finds nothing left to do."""
    engine = _engine(url)
    try:
        with _schema_work(), engine.begin() as connection:
            connection.execute(text("SELECT pg_advisory_xact_lock(:c, hashtext(current_schema()))"),
                               {"c": _MIGRATE_LOCK_CLASS})
            stored = migrate.current_revision(connection)
            if stored is not None and not migrate.is_known_revision(stored):
                raise SchemaMismatch(migrate.newer_than_known(stored))
            migrate.upgrade(connection)
            current = migrate.current_revision(connection)
    finally:
        engine.dispose()
    assert current is not None
    return current


def revision(url: str) -> str | None:
    """The schema revision of the database (None: no openrooms schema yet)."""
    engine = _engine(url)
    try:
        with _schema_work(), engine.connect() as connection:
            return migrate.current_revision(connection)
    finally:
        engine.dispose()


def downgrade(url: str, revision: str) -> None:
    """Bring the schema back to `revision` (`openrooms db downgrade`): the migrations after it are undone, with
    what they stored, in one transaction, taking turns with any upgrade (the same advisory lock)."""
    engine = _engine(url)
    try:
        with _schema_work(), engine.begin() as connection:
            connection.execute(text("SELECT pg_advisory_xact_lock(:c, hashtext(current_schema()))"),
                               {"c": _MIGRATE_LOCK_CLASS})
            migrate.downgrade(connection, revision)
    finally:
        engine.dispose()


def check_schema(url: str) -> None:
    """Raise `SchemaMismatch` unless the database is exactly at this version's head revision."""
    engine = _engine(url)
    try:
        with _schema_work(), engine.connect() as connection:
            current = migrate.current_revision(connection)
    finally:
        engine.dispose()
    head = migrate.head_revision()
    if current == head:
        return
    if current is None:
        problem = "has no openrooms schema yet"
    elif migrate.is_known_revision(current):
        problem = f"has schema revision {current}, older than this openrooms's {head}"
    else:
        raise SchemaMismatch(migrate.newer_than_known(current))
    raise SchemaMismatch(f"the database {problem}; run `openrooms db upgrade --database-url ...` first")


def _room(row: tuple[Any, ...]) -> Room:
    return Room(row[0], row[1], row[2], row[3], bool(row[4]))


def _record(row: tuple[Any, ...]) -> CreateRecord:
    return CreateRecord(row[0], row[1], created_room(row[2], bytes(row[3])), row[4])


def _connection_kwargs(url: str, connect_timeout: int = CONNECT_TIMEOUT) -> dict[str, Any]:
    given = conninfo_to_dict(libpq_url(url))
    kwargs: dict[str, Any] = {
        "autocommit": True,  # transactions are explicit: `conn.transaction()`
        "options": f"{SESSION_OPTIONS} {given.get('options') or ''}".strip(),
    }
    # Dead peers are noticed by TCP keepalives rather than waited on; a URL's own settings win.
    defaults = {"connect_timeout": connect_timeout, "keepalives": 1, "keepalives_idle": 10,
                "keepalives_interval": 5, "keepalives_count": 3, "application_name": "openrooms"}
    for name, value in defaults.items():
        if name not in given:
            kwargs[name] = value
    return kwargs


class PostgresStore(PostgresWebhooks, PostgresConsoleSessions):
    def __init__(
        self, url: str, *, pool_size: int = DEFAULT_POOL_SIZE, connect_timeout: int = CONNECT_TIMEOUT,
        pool_wait: float = POOL_WAIT, call_timeout: float = CALL_TIMEOUT, reconnect_timeout: float = RECONNECT_TIMEOUT,
    ) -> None:
        self._url = url
        self._call_timeout = call_timeout
        self._pool = AsyncConnectionPool(
            libpq_url(url),
            kwargs=_connection_kwargs(url, connect_timeout),
            min_size=1,
            max_size=max(1, pool_size),
            timeout=pool_wait,
            reconnect_timeout=reconnect_timeout,
            check=self._check_unless_recently_used,
            open=False,
            name="openrooms",
        )
        self._opened = False
        self._open_lock = asyncio.Lock()
        self._last_used: weakref.WeakKeyDictionary[AsyncConnection[Any], float] = weakref.WeakKeyDictionary()

    @classmethod
    def open(cls, url: str, *, check: bool = True, **options: Any) -> PostgresStore:
        """A store on `url` (`options`: the constructor's), after checking (with `check`) that its schema is this
        version's. Connections are made on first use, in the event loop that uses them."""
        if check:
            check_schema(url)
        return cls(url, **options)

    async def close(self) -> None:
        if self._opened:
            await self._pool.close()

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        if not self._opened:
            async with self._open_lock:
                if not self._opened:
                    await self._pool.open(wait=False)
                    self._opened = True
        try:
            async with asyncio.timeout(self._call_timeout), self._pool.connection() as connection:
                yield connection
                self._last_used[connection] = time.monotonic()
        except TimeoutError as exc:
            log.warning("store call timed out after %ss", self._call_timeout)
            raise StoreUnavailable("the database did not answer in time") from exc
        except (psycopg.OperationalError, psycopg.errors.ReadOnlySqlTransaction) as exc:
            log.warning("store call failed: %s: %s", type(exc).__name__, str(exc).strip())
            raise StoreUnavailable(_reason(exc)) from exc

    async def _check_unless_recently_used(self, connection: AsyncConnection[Any]) -> None:
        used = self._last_used.pop(connection, None)
        if used is None or time.monotonic() - used >= RECENTLY_USED:
            await AsyncConnectionPool.check_connection(connection)

    @contextlib.asynccontextmanager
    async def _transaction(self, *, logs: bool = False) -> AsyncIterator[AsyncConnection[Any]]:
        """A transaction; with `logs`, one that may append events: it takes the events lock first."""
        async with self._connection() as connection, connection.transaction():
            if logs:
                await connection.execute(f"SELECT {_LOCK_EVENTS}")
            yield connection

    async def insert_room(
        self, room: Room, participants: Sequence[Participant], record: CreateRecord | None,
        events: Sequence[NewEvent] = (),
    ) -> CreateRecord | None:
        if record is None:  # one statement: one round trip, where BEGIN, two INSERTs and COMMIT were four
            async with self._connection() as db:
                created = await _create_room(db, room, participants, events)
            if not created:
                raise RoomIdTaken(room.id)
            return None
        async with self._transaction(logs=bool(events)) as db:
            # Claim the request id first: a concurrent create with the same id waits here for ours to commit (or
            # roll back), then finds our record instead of creating a second room.
            claimed = await db.execute(
                "INSERT INTO create_requests (request_id, fingerprint, room_id, created_room, created_at) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (request_id) DO NOTHING",
                (record.request_id, record.fingerprint, record.room_id, created_room_value(record.room),
                     record.created_at),
            )
            if claimed.rowcount == 0:
                earlier = await _create_record(db, record.request_id)
                if earlier is not None:
                    return earlier
                # Purged between the two statements (a day-old record): nothing to answer from.
                raise StoreUnavailable("an idempotency record changed under a concurrent create")
            if not await _create_room(db, room, participants, events):
                raise RoomIdTaken(room.id)  # rolls the transaction back, record claim included
        return None

    async def get_create_record(self, request_id: str) -> CreateRecord | None:
        async with self._connection() as db:
            return await _create_record(db, request_id)

    async def get_room(self, room_id: str) -> Room | None:
        async with self._connection() as db:
            cursor = await db.execute(f"SELECT {_ROOM_COLUMNS} FROM rooms WHERE id = %s", (room_id,))
            row = await cursor.fetchone()
        return None if row is None else _room(row)

    async def update_room(
        self, room_id: str, window: tuple[int, int] | None, pstn_dial_out_enabled: bool | None,
        events: RoomUpdateEvents | None = None,
    ) -> Room | None:
        valid_from, valid_until = window or (None, None)
        async with self._transaction(logs=events is not None) as db:
            # The room's row first: a roster change holds it while it adds entries with their copies of the room,
            # so the update below, a statement of its own, sees them and the roster changes after it see the room
            # it leaves.
            cursor = await db.execute(f"SELECT {_ROOM_COLUMNS} FROM rooms WHERE id = %s FOR NO KEY UPDATE", (room_id,))
            before = await cursor.fetchone()
            if before is None:
                return None
            cursor = await db.execute(_UPDATE_ROOM, {"room": room_id, "valid_from": valid_from,
                                                     "valid_until": valid_until, "pstn": pstn_dial_out_enabled})
            row = await cursor.fetchone()
            assert row is not None
            room = _room(row)
            if events is not None:
                await _append(db, events(_room(before), room))
        return room

    async def delete_room(self, room_id: str, events: Sequence[NewEvent] = ()) -> bool:
        async with self._transaction(logs=bool(events)) as db:  # the roster goes with the room (ON DELETE CASCADE)
            cursor = await db.execute("DELETE FROM rooms WHERE id = %s", (room_id,))
            if cursor.rowcount == 0:
                return False
            await _append(db, events)
        return True

    async def list_rooms(self, valid_after: int, after: tuple[int, str] | None, limit: int) -> list[Room]:
        async with self._connection() as db:
            if after is None:
                cursor = await db.execute(
                    f"SELECT {_ROOM_COLUMNS} FROM rooms WHERE valid_until > %s "
                    "ORDER BY created_at DESC, id DESC LIMIT %s",
                    (valid_after, limit),
                )
            else:
                cursor = await db.execute(
                    f"SELECT {_ROOM_COLUMNS} FROM rooms WHERE (created_at, id) < (%s::bigint, %s::text) "
                    "AND valid_until > %s ORDER BY created_at DESC, id DESC LIMIT %s",
                    (after[0], after[1], valid_after, limit),
                )
            rows = await cursor.fetchall()
        return [_room(row) for row in rows]

    async def query_rooms(self, query: RoomQuery, after: tuple[int, str] | None, limit: int) -> list[Room]:
        statement, params = room_query(_ROOM_COLUMNS, query, after, limit, lambda name, kind: f"%({name})s::{kind}")
        async with self._connection() as db:
            cursor = await db.execute(statement, params)
            rows = await cursor.fetchall()
        return [_room(row) for row in rows]

    async def count_rooms(self, query: RoomQuery, limit: int) -> int:
        statement, params = room_count(query, limit, lambda name, kind: f"%({name})s::{kind}")
        async with self._connection() as db:
            cursor = await db.execute(statement, params)
            row = await cursor.fetchone()
        assert row is not None
        return int(row[0])

    async def list_participants(self, room_id: str, start: int, limit: int) -> RosterPage | None:
        async with self._connection() as db:  # one statement, one snapshot: whether the room exists, and the page
            cursor = await db.execute(_PARTICIPANTS_PAGE, (room_id, start, limit + 1))
            rows = await cursor.fetchall()
        if not rows or not rows[0][0]:
            return None
        participants = [Participant(raw_id, ROLES[role]) for _, raw_id, role, _ in rows[:limit] if raw_id is not None]
        return RosterPage(participants, rows[limit][3] if len(rows) > limit else None)

    async def get_participant(self, room_id: str, raw_id: str) -> Participant | None:
        async with self._connection() as db:
            cursor = await db.execute(
                "SELECT role FROM participants WHERE room_id = %s AND raw_id = %s", (room_id, raw_id)
            )
            row = await cursor.fetchone()
        return None if row is None else Participant(raw_id, ROLES[row[0]])

    async def update_participants(
        self, room_id: str, upserts: Mapping[str, Role], removals: Collection[str],
        max_participants: int | None = None, events: RosterChangeEvents | None = None,
    ) -> bool:
        removed_ids = list(removals)
        gone = set(removed_ids)  # an id both upserted and removed ends removed, as if the removal came second
        upserted = [(raw_id, role.value) for raw_id, role in upserts.items() if raw_id not in gone]
        async with self._transaction(logs=events is not None) as db:
            # Roster changes to one room take turns on its row: no deadlock between two requests touching
            # the same people in different orders, and none can slip in after the room is deleted. The change
            # is the next statement, so that it counts the roster as the request before ours left it. The
            # users it adds are locked before the row, as a deletion of a user does.
            if upserted:
                cursor = await db.execute(_LOCK_ROSTER_ADDING, {"room": room_id,
                                                                "added": [raw_id for raw_id, _ in upserted]})
            else:
                cursor = await db.execute("SELECT 1 FROM rooms WHERE id = %s FOR NO KEY UPDATE", (room_id,))
            if await cursor.fetchone() is None:
                return False
            found: dict[str, str] = {}
            if events is not None:  # the roles, before the change, of everyone it names
                cursor = await db.execute(
                    "SELECT raw_id, role FROM participants WHERE room_id = %s AND raw_id = ANY(%s::text[])",
                    (room_id, [*upserts, *removed_ids]),
                )
                found = {raw_id: role for raw_id, role in await cursor.fetchall()}
            cursor = await db.execute(
                _CHANGE_ROSTER,
                {"room": room_id, "upserted": [raw_id for raw_id, _ in upserted],
                 "roles": [role for _, role in upserted], "removed": removed_ids},
            )
            row = await cursor.fetchone()
            assert row is not None
            before, added, removed = row
            after = before + added - removed
            if max_participants is not None and after > max_participants and after > before:
                raise RosterFull(after)  # rolls the change back
            if events is not None:
                await _append(db, events(roster_change(found, upserts, removals)))
        return True

    async def purge(self, rooms_valid_before: int, records_created_before: int) -> tuple[int, int]:
        # One instance purges at a time (a session advisory lock, released if its connection dies); the
        # others skip this round. Batches are separate transactions, so no lock is held for long.
        rooms = records = 0
        async with self._connection() as db:
            cursor = await db.execute(
                "SELECT pg_try_advisory_lock(%s, hashtext(current_schema()))", (_PURGE_LOCK_CLASS,)
            )
            row = await cursor.fetchone()
            if row is None or not row[0]:
                return 0, 0
            try:
                rooms = await _delete_in_batches(
                    db,
                    "DELETE FROM rooms WHERE id IN (SELECT id FROM rooms WHERE valid_until < %s "
                    "LIMIT %s FOR UPDATE SKIP LOCKED)",
                    rooms_valid_before,
                )
                records = await _delete_in_batches(
                    db,
                    "DELETE FROM create_requests WHERE request_id IN (SELECT request_id FROM create_requests "
                    "WHERE created_at < %s LIMIT %s FOR UPDATE SKIP LOCKED)",
                    records_created_before,
                )
            finally:
                await db.execute(
                    "SELECT pg_advisory_unlock(%s, hashtext(current_schema()))", (_PURGE_LOCK_CLASS,)
                )
        return rooms, records

    # Events --------------------------------------------------------------------------------------------------
    async def append_events(self, events: Sequence[NewEvent]) -> None:
        if events:
            async with self._transaction(logs=True) as db:
                await _append(db, events)

    async def list_events(
        self, after: tuple[int, int] | None, types: Collection[str] | None, room_id: str | None, limit: int
    ) -> list[StoredEvent]:
        tx, seq = after or (0, 0)
        async with self._connection() as db:
            cursor = await db.execute(_EVENTS_HORIZON)
            horizon = await cursor.fetchone()
            assert horizon is not None
            cursor = await db.execute(_LIST_EVENTS, {"tx": str(tx), "seq": seq, "room": room_id, "limit": limit,
                                                     "types": None if types is None else list(types),
                                                     "horizon": str(horizon[0])})
            rows = await cursor.fetchall()
        return [StoredEvent((row[0], row[1]), row[2], row[3], row[4], row[5], row[6].encode()) for row in rows]

    async def latest_events(
        self, types: Collection[str] | None, room_id: str | None, limit: int
    ) -> tuple[list[StoredEvent], tuple[int, int]]:
        async with self._connection() as db:
            end = await self._log_end(db)
            cursor = await db.execute(_LATEST_EVENTS, {"tx": str(end[0]), "seq": end[1], "room": room_id,
                                                       "limit": limit,
                                                       "types": None if types is None else list(types)})
            rows = await cursor.fetchall()
        return [StoredEvent((row[0], row[1]), row[2], row[3], row[4], row[5], row[6].encode())
                for row in reversed(rows)], end

    async def purge_events(self, before: int) -> int:
        async with self._connection() as db:
            return await _delete_in_batches(
                db, "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE time < %s LIMIT %s "
                "FOR UPDATE SKIP LOCKED)", before)

    # Identities ----------------------------------------------------------------------------------------------
    async def ensure_resource_id(self, candidate: str) -> str:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO server_settings (name, value) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
                (_RESOURCE_ID, candidate),
            )
            # A new statement sees the row of a concurrent instance that won the insert.
            cursor = await db.execute("SELECT value FROM server_settings WHERE name = %s", (_RESOURCE_ID,))
            row = await cursor.fetchone()
        assert row is not None
        return str(row[0])

    async def get_signing_keys(self) -> list[SigningKey]:
        async with self._connection() as db:
            cursor = await db.execute(f"SELECT {_KEY_COLUMNS} FROM signing_keys ORDER BY created_at DESC, kid DESC")
            rows = await cursor.fetchall()
        return [SigningKey(*row) for row in rows]

    async def ensure_signing_key(self, candidate: SigningKey) -> SigningKey:
        async with self._transaction() as db:
            # Instances starting together take turns, so all of them sign with the one key the first stored.
            await db.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))", (_SIGNING_KEY_LOCK_CLASS,)
            )
            cursor = await db.execute(
                f"SELECT {_KEY_COLUMNS} FROM signing_keys ORDER BY created_at DESC, kid DESC LIMIT 1"
            )
            row = await cursor.fetchone()
            if row is not None:
                return SigningKey(*row)
            await db.execute(
                f"INSERT INTO signing_keys ({_KEY_COLUMNS}) VALUES (%s, %s, %s, %s)",
                (candidate.kid, candidate.private_key_pem, candidate.certificate_pem, candidate.created_at),
            )
        return candidate

    async def insert_user(self, user: CommunicationUser, events: Sequence[NewEvent] = ()) -> None:
        async with self._transaction(logs=bool(events)) as db:
            cursor = await db.execute(
                "INSERT INTO identities (raw_id, created_at, tokens_revoked_before) VALUES (%s, %s, %s) "
                "ON CONFLICT (raw_id) DO NOTHING",
                (user.raw_id, user.created_at, user.tokens_revoked_before),
            )
            if cursor.rowcount == 0:
                raise UserIdTaken(user.raw_id)
            await _append(db, events)

    async def get_user(self, raw_id: str) -> CommunicationUser | None:
        async with self._connection() as db:
            cursor = await db.execute(
                "SELECT raw_id, created_at, tokens_revoked_before FROM identities WHERE raw_id = %s", (raw_id,)
            )
            row = await cursor.fetchone()
        return None if row is None else CommunicationUser(*row)

    async def revoke_tokens(self, raw_id: str, revoked_before: int, events: Sequence[NewEvent] = ()) -> bool:
        async with self._transaction(logs=bool(events)) as db:
            # Never moves back: a revoke from an instance whose clock lags must not un-revoke tokens.
            cursor = await db.execute(
                "UPDATE identities SET tokens_revoked_before = "
                "greatest(coalesce(tokens_revoked_before, %s::bigint), %s::bigint) WHERE raw_id = %s",
                (revoked_before, revoked_before, raw_id),
            )
            if cursor.rowcount == 0:
                return False
            await _append(db, events)
        return True

    async def delete_user(self, raw_id: str, events: UserDeletionEvents | None = None) -> bool:
        async with self._transaction(logs=events is not None) as db:
            # First the user's lock: additions of the user in progress finish first (and their entries are seen
            # below), later ones wait for this deletion. Then the rooms the user is in, in id order as every
            # roster change takes one, so that a change in progress counts the roster it leaves exactly.
            await db.execute(f"SELECT pg_advisory_xact_lock({_USER_LOCK_CLASS}, hashtext(%s) & {USER_LOCKS - 1})",
                             (raw_id,))
            cursor = await db.execute("DELETE FROM identities WHERE raw_id = %s", (raw_id,))
            if cursor.rowcount == 0:
                return False
            await db.execute("SELECT 1 FROM rooms WHERE id IN (SELECT room_id FROM participants WHERE raw_id = %s) "
                             "ORDER BY id FOR NO KEY UPDATE", (raw_id,))
            cursor = await db.execute("DELETE FROM participants WHERE raw_id = %s RETURNING room_id, role", (raw_id,))
            left = await cursor.fetchall()
            if events is not None:
                await _append(db, events([(room_id, ROLES[role]) for room_id, role in left]))
        return True

    # Access keys ---------------------------------------------------------------------------------------------
    async def adopt_resource_id(self, candidate: str, *, write: bool = True) -> str:
        """`candidate` becomes the resource id unless another is stored and the database holds rooms or users
        already; returns the resource id stored afterwards (for `openrooms migrate`). With `write` False,
        only says what it would be."""
        async with self._transaction() as db:
            cursor = await db.execute(
                "SELECT value FROM server_settings WHERE name = %s FOR UPDATE", (_RESOURCE_ID,)
            )
            row = await cursor.fetchone()
            if row is not None and row[0] != candidate:
                cursor = await db.execute(
                    "SELECT EXISTS (SELECT 1 FROM rooms) OR EXISTS (SELECT 1 FROM identities)"
                )
                has_data = await cursor.fetchone()
                if has_data is not None and has_data[0]:
                    return str(row[0])
            if not write:
                return candidate
            await db.execute(
                "INSERT INTO server_settings (name, value) VALUES (%s, %s) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (_RESOURCE_ID, candidate),
            )
        return candidate

    async def insert_users(self, users: Sequence[CommunicationUser]) -> int:
        """Insert the users that do not exist yet, in one statement; how many were new."""
        if not users:
            return 0
        async with self._connection() as db:
            cursor = await db.execute(
                "INSERT INTO identities (raw_id, created_at, tokens_revoked_before) "
                "SELECT * FROM unnest(%s::text[], %s::bigint[], %s::bigint[]) ON CONFLICT (raw_id) DO NOTHING",
                ([u.raw_id for u in users], [u.created_at for u in users],
                 [u.tokens_revoked_before for u in users]),
            )
        return cursor.rowcount

    async def get_access_keys(self) -> dict[str, str]:
        async with self._connection() as db:
            cursor = await db.execute("SELECT name, key FROM access_keys")
            return {name: key for name, key in await cursor.fetchall()}

    async def set_access_keys(
        self, keys: Mapping[str, str], now: int, *, replace: bool = True, events: Sequence[NewEvent] = ()
    ) -> dict[str, str]:
        conflict = "DO UPDATE SET key = excluded.key, updated_at = excluded.updated_at" if replace else "DO NOTHING"
        async with self._transaction(logs=bool(events)) as db:
            if keys:
                async with db.cursor() as batch:
                    await batch.executemany(
                        "INSERT INTO access_keys (name, key, updated_at) VALUES (%s, %s, %s) "
                        f"ON CONFLICT (name) {conflict}",
                        [(name, key, now) for name, key in keys.items()],
                    )
            await _append(db, events)
            cursor = await db.execute("SELECT name, key FROM access_keys")
            return {name: key for name, key in await cursor.fetchall()}

    async def ping(self) -> None:
        async with self._connection() as db:
            await db.execute("SELECT 1 FROM rooms LIMIT 1")

    # The rooms' window events (store/windows.py): one claimer at a time holds the watermark, others skip ------
    async def claim_window_instants(self, now: int, events: WindowEvents, limit: int) -> int | None:
        async with self._transaction(logs=True) as db:
            cursor = await db.execute("SELECT covered FROM window_clock WHERE id = 1 FOR UPDATE SKIP LOCKED")
            row = await cursor.fetchone()
            if row is None:  # none yet, or another instance's claim holds it
                cursor = await db.execute(
                    "INSERT INTO window_clock (id, covered) VALUES (1, %s) ON CONFLICT (id) DO NOTHING", (now,))
                return 0 if cursor.rowcount else None
            covered = row[0]
            if now <= covered:
                return 0
            cursor = await db.execute(_WINDOWS_DUE, {"covered": covered, "upto": now, "limit": limit})
            due = windows.instants(await cursor.fetchall())
            page = windows.cut(due, limit, now)
            if page is None:  # a full page of one instant: all of its rooms
                last = due[-1].instant
                cursor = await db.execute(_WINDOWS_DUE, {"covered": last - 1, "upto": last, "limit": None})
                page = windows.instants(await cursor.fetchall()), last
            claimed, covered = page
            await db.execute("UPDATE window_clock SET covered = %s WHERE id = 1", (covered,))
            await _append(db, events(claimed))
        return len(claimed)

    async def next_window_instant(self, after: int) -> int | None:
        async with self._connection() as db:
            cursor = await db.execute(_WINDOWS_NEXT, {"after": after})
            row = await cursor.fetchone()
        return None if row is None else row[0]

    # Room calls (openrooms.calls) ---------------------------------------------------------------------------
    async def listen_changes(self) -> AsyncIterator[str]:
        """Every change to a room, its roster or a user, from any instance, as the triggers of migration 0007
        announce it (`room:<id>`, `user:<raw id>`), on a connection of its own (LISTEN/NOTIFY); first an empty
        string, once listening. Ends when that connection fails: the caller listens again."""
        async for payload in self._listen(CHANGES_CHANNEL):
            yield payload

    async def listen_events(self) -> AsyncIterator[None]:
        """Once listening, then once per transaction that appended events, from any instance (the trigger of
        migration 0012); ends when the connection fails."""
        async for _ in self._listen(EVENTS_CHANNEL):
            yield None

    async def _listen(self, channel: str) -> AsyncIterator[str]:
        try:
            connection = await AsyncConnection.connect(libpq_url(self._url), **_connection_kwargs(self._url))
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(_reason(exc)) from exc
        try:
            await connection.execute(f"LISTEN {channel}")
            yield ""
            async for notify in connection.notifies():
                yield notify.payload
        except psycopg.OperationalError as exc:  # the connection was lost
            raise StoreUnavailable(_reason(exc)) from exc
        finally:
            await connection.close()

    async def _log_end(self, db: AsyncConnection[Any]) -> tuple[int, int]:
        """The place of the last event readable now (see `list_events`); (0, 0) when there is none."""
        cursor = await db.execute(_EVENTS_HORIZON)
        horizon = await cursor.fetchone()
        assert horizon is not None
        cursor = await db.execute("SELECT (tx::text)::bigint, seq FROM events WHERE tx < %s::text::xid8 "
                                  "ORDER BY tx DESC, seq DESC LIMIT 1", (str(horizon[0]),))
        row = await cursor.fetchone()
        return (0, 0) if row is None else (row[0], row[1])

    async def claim_call_server(self, candidate: CallServer, events: Sequence[NewEvent] = ()) -> CallServer:
        async with self._transaction(logs=bool(events)) as db:
            inserted = await db.execute(
                f"INSERT INTO call_servers ({_CALL_SERVER_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (room_id) DO NOTHING",
                _call_server_row(candidate),
            )
            if inserted.rowcount:
                await _append(db, events)
            cursor = await db.execute(f"SELECT {_CALL_SERVER_COLUMNS} FROM call_servers WHERE room_id = %s",
                                      (candidate.room_id,))
            row = await cursor.fetchone()
        assert row is not None
        return CallServer(*row)

    async def get_call_server(self, room_id: str) -> CallServer | None:
        async with self._connection() as db:
            cursor = await db.execute(f"SELECT {_CALL_SERVER_COLUMNS} FROM call_servers WHERE room_id = %s",
                                      (room_id,))
            row = await cursor.fetchone()
        return None if row is None else CallServer(*row)

    async def list_call_rooms(self, now: int, limit: int) -> list[str]:
        async with self._connection() as db:
            cursor = await db.execute(CALL_ROOMS.format(now="%(now)s", limit="%(limit)s"),
                                      {"now": now, "limit": limit})
            rows = await cursor.fetchall()
        return [row[0] for row in rows]

    async def release_call_server(
        self, room_id: str, server_call_id: str, events: Sequence[NewEvent] = ()
    ) -> bool:
        async with self._transaction(logs=bool(events)) as db:
            cursor = await db.execute("DELETE FROM call_servers WHERE room_id = %s AND server_call_id = %s",
                                      (room_id, server_call_id))
            released = cursor.rowcount > 0
            if released:
                await _append(db, events)
        return released


CHANGES_CHANNEL = "openrooms_changes"
EVENTS_CHANNEL = "openrooms_events"
_WINDOWS_DUE = windows.psycopg(windows.DUE)
_WINDOWS_NEXT = windows.psycopg(windows.NEXT)
_CALL_SERVER_COLUMNS = ("room_id, server, janus_room, secret, pin, server_call_id, started_at, started_by, "
                        "started_by_role, correlation_id")


def _call_server_row(server: CallServer) -> tuple[str | int, ...]:
    return (server.room_id, server.server, server.janus_room, server.secret, server.pin, server.server_call_id,
            server.started_at, server.started_by, server.started_by_role, server.correlation_id)


async def _create_room(
    db: AsyncConnection[Any], room: Room, participants: Sequence[Participant], events: Sequence[NewEvent]
) -> bool:
    """Whether the room went in (False: its id was issued before)."""
    cursor = await db.execute(
        _CREATE_ROOM,
        {"id": room.id, "created_at": room.created_at, "valid_from": room.valid_from, "valid_until": room.valid_until,
         "pstn": room.pstn_dial_out_enabled, "added": [p.raw_id for p in participants],
         "roles": [p.role.value for p in participants], **_event_arrays(events)},
    )
    row = await cursor.fetchone()
    return row is not None and row[0] > 0


async def _create_record(db: AsyncConnection[Any], request_id: str) -> CreateRecord | None:
    cursor = await db.execute(
        "SELECT request_id, fingerprint, room_id, created_room, created_at FROM create_requests WHERE request_id = %s",
        (request_id,),
    )
    row = await cursor.fetchone()
    return None if row is None else _record(row)


async def _delete_in_batches(db: AsyncConnection[Any], statement: str, before: int) -> int:
    total = 0
    while True:
        async with db.transaction():
            cursor = await db.execute(statement, (before, _PURGE_BATCH))
            deleted = cursor.rowcount
        total += deleted
        if deleted < _PURGE_BATCH:
            return total


def _reason(exc: Exception) -> str:
    """What a client is told; the details (hosts, ports) go to the log only."""
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return "the database did not answer in time"
    if isinstance(exc, psycopg.errors.LockNotAvailable):
        return "the data is locked by another database session for too long"
    if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
        return "the database is read-only"
    if isinstance(exc, psycopg.errors.TransactionRollback):
        return "a concurrent change conflicted with this one"
    if isinstance(exc, (PoolTimeout, psycopg.errors.CannotConnectNow)):
        return "no database connection could be made in time"
    return "the database connection failed"
