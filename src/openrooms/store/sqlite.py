"""The embedded store: one SQLite file (or memory), WAL, fsync on commit.

Writes go through one group-committing writer per process (`writer.GroupCommitWriter`), which commits
concurrent write transactions together under one fsync and acknowledges none before its COMMIT;
`synchronous=FULL` makes that COMMIT durable, and a lock file plus `BEGIN IMMEDIATE` serialise writers across
processes. Reads run on the event loop on their own connection: under WAL they never wait for a writer and see
only committed data. (An in-memory database cannot be shared by two connections, so there reads go through the
writer too.)

Reads are kept in memory while their room is unchanged (`changes.KeptReads`). Every write transaction returns
what it changed with its result, and `_write`, the one way this store writes, notes it for the bump after the
COMMIT: a write that does not say what it changed does not type-check.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import msgspec

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
from openrooms.store import sqlite_schema, windows
from openrooms.store.changes import FOREVER, NOTHING, ChangeCounters, Changes, KeptReads
from openrooms.store.console_sessions import SqliteConsoleSessions
from openrooms.store.protocol import RoomIdTaken, RoomQuery, RosterFull, RosterPage, StoreUnavailable, UserIdTaken
from openrooms.store.records import created_room, created_room_value
from openrooms.store.room_queries import CALL_ROOMS, room_count, room_query
from openrooms.store.sqlite_webhooks import SqliteWebhooks
from openrooms.store.writer import GroupCommitWriter

T = TypeVar("T")
# A write transaction: a function of the connection that returns its result and what it changed.
WriteTransaction = Callable[[sqlite3.Connection], tuple[T, Changes]]
_ROOM_COLUMNS = "id, created_at, valid_from, valid_until, pstn_dial_out_enabled"
# A roster entry, and its copy of its room's values (`room_queries.COPIED_COLUMNS`, migration 0014).
_ROSTER_COLUMNS = "room_id, raw_id, role, seq, created_at, valid_from, valid_until, pstn_dial_out_enabled"
_PURGE_BATCH = 1000
_RESOURCE_ID = "resource_id"
_KEY_COLUMNS = "kid, private_key_pem, certificate_pem, created_at"


class SchemaMismatch(Exception):
    pass


def _room(row: tuple[str, int, int, int, int]) -> Room:
    return Room(row[0], row[1], row[2], row[3], bool(row[4]))


# A page is read as one row, a JSON array built by SQLite, and decoded by msgspec straight into the tuples:
# a statement step per row would let go of the GIL once per row, and under load every release hands the
# interpreter to the HTTP server's threads and waits for it back. SQLite aggregates the rows of an ordered
# subquery in that order.
_ROOMS = msgspec.json.Decoder(list[Room])
_PARTICIPANTS = msgspec.json.Decoder(list[Participant])


def _as_json_array(rooms: str) -> str:
    """The rooms that the statement `rooms` selects (`_ROOM_COLUMNS`), in its order, as one JSON array."""
    return (
        "SELECT json_group_array(json_array(id, created_at, valid_from, valid_until, "
        f"iif(pstn_dial_out_enabled, json('true'), json('false')))) FROM ({rooms})"
    )


def _rooms_page(where: str) -> str:
    return _as_json_array(f"SELECT {_ROOM_COLUMNS} FROM rooms WHERE {where} ORDER BY created_at DESC, id DESC LIMIT ?")


_ROOMS_FIRST_PAGE = _rooms_page("valid_until > ?")
_ROOMS_PAGE_AFTER = _rooms_page("(created_at, id) < (?, ?) AND valid_until > ?")


def _record(row: tuple[str, str, str, bytes, int]) -> CreateRecord:
    return CreateRecord(row[0], row[1], created_room(row[2], bytes(row[3])), row[4])


def _migrating(connection: sqlite3.Connection, step: Callable[[Any], None]) -> None:
    """Run the migrations `step` (given a SQLAlchemy connection) in one transaction: all of them or none, a crash
    midway included (the driver's connection otherwise commits each statement on its own); a writer of another
    process waits for it. Foreign keys are off meanwhile and checked before the commit: a migration that rebuilds
    a table (copy, drop, rename) would otherwise delete the rows that refer to it (ON DELETE CASCADE)."""
    import sqlalchemy.exc
    from sqlalchemy import create_engine
    from sqlalchemy.pool import StaticPool

    engine = create_engine("sqlite://", creator=lambda: connection, poolclass=StaticPool)
    connection.execute("PRAGMA foreign_keys = OFF")  # (not inside a transaction: it would do nothing there)
    try:
        with engine.connect() as sa_connection:
            sa_connection.begin()  # Alembic then leaves the commit to this function
            connection.execute("BEGIN IMMEDIATE")
            step(sa_connection)
            dangling = connection.execute("PRAGMA foreign_key_check").fetchall()
            if dangling:
                raise sqlite3.IntegrityError(f"the migrations would leave {len(dangling)} rows referring to rows "
                                             f"that are gone (the first: {dangling[0]}); nothing was changed")
            sa_connection.commit()
    except sqlalchemy.exc.DBAPIError as exc:  # as the driver raised it
        raise exc.orig if isinstance(exc.orig, sqlite3.Error) else sqlite3.Error(str(exc)) from exc
    finally:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        connection.execute("PRAGMA foreign_keys = ON")


def _connect(target: str, busy_timeout_ms: int, *, wal: bool) -> sqlite3.Connection:
    connection = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
    connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    if wal:
        connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = FULL")
    connection.execute("PRAGMA foreign_keys = ON")
    return connection


def _create_record(db: sqlite3.Connection, request_id: str) -> CreateRecord | None:
    row = db.execute(
        "SELECT request_id, fingerprint, room_id, created_room, created_at FROM create_requests WHERE request_id = ?",
        (request_id,),
    ).fetchone()
    return None if row is None else _record(row)


_INSERT_EVENT = "INSERT INTO events (type, subject, room_id, time, data) VALUES (?, ?, ?, ?, ?)"
_EVENT_COLUMNS = "seq, type, subject, room_id, time, data"
_encode = msgspec.json.encode


def _append(db: sqlite3.Connection, events: Sequence[NewEvent]) -> None:
    """Append events in the transaction running on `db` (the group commit's, just before its COMMIT)."""
    if len(events) == 1:
        e = events[0]
        db.execute(_INSERT_EVENT, (e.type, e.subject, e.room_id, e.time, _encode(e.data)))
    elif events:
        db.executemany(_INSERT_EVENT, [(e.type, e.subject, e.room_id, e.time, _encode(e.data)) for e in events])


def _stored(row: tuple[int, str, str, str | None, int, bytes | str]) -> StoredEvent:
    data = row[5]
    return StoredEvent((0, row[0]), row[1], row[2], row[3], row[4],
                       data.encode() if isinstance(data, str) else bytes(data))


def _roster_size(db: sqlite3.Connection, room_id: str) -> int:
    return int(db.execute("SELECT count(*) FROM participants WHERE room_id = ?", (room_id,)).fetchone()[0])


class SqliteStore(SqliteWebhooks, SqliteConsoleSessions):
    def __init__(
        self, writer: GroupCommitWriter, reader: sqlite3.Connection | None, changes: ChangeCounters | None = None
    ) -> None:
        self._writer = writer
        self._reader = reader
        # Reads kept while their room is unchanged (see `changes`); without counters nothing is kept.
        self._changes = changes
        self._kept = KeptReads(changes)
        self._rooms = self._kept.rooms
        self._participants = self._kept.participants
        self._pages = self._kept.pages
        self._listings = self._kept.listings
        # The events of the write transaction running now, and of those of the group commit that succeeded: written
        # with one statement just before the group's COMMIT (one statement per event would cost each create room
        # more than all the rest of its event). A transaction that raises leaves its events behind with its changes.
        self._running_events: list[NewEvent] = []
        self._group_events: list[NewEvent] = []
        self._appended = False  # whether the group commit running now wrote events
        writer.before_commit = self._write_events
        writer.after_commit = self._after_commit

    @classmethod
    def open(cls, path: Path | None, *, migrate_schema: bool = True, busy_timeout_ms: int = 5000,
             background: bool = False) -> SqliteStore:
        """Open (and with `migrate_schema`, create or upgrade) the database; `path` None keeps it in memory.
        `background`: for a process that serves no requests (webhook delivery), whose writes must keep the serving
        processes waiting as little as can be: they write `inline` (`GroupCommitWriter`), and commit without
        waiting for the disk (`synchronous = NORMAL`: in WAL mode a crash of the process loses nothing, a power
        loss at most its last commits, which the next durable commit of any process would have kept). What it
        writes is bookkeeping of what it delivered: losing it means repeats (at least once), never a lost event,
        and the serving processes commit their changes and events durably."""
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        connection = _connect(":memory:" if path is None else str(path), busy_timeout_ms, wal=path is not None)
        try:
            cls._check_schema(connection, migrate_schema)
        except BaseException:
            connection.close()
            raise
        reader = None if path is None else _connect(str(path), busy_timeout_ms, wal=True)
        if path is None:
            return cls(GroupCommitWriter(connection), reader, ChangeCounters.open(None))
        if background:
            connection.execute("PRAGMA synchronous = NORMAL")
        writer = GroupCommitWriter(connection, path.with_name(path.name + "-writer.lock"), inline=background)
        # Counters bumped by writers that do not take turns could go back: without the lock file, keep nothing.
        changes = ChangeCounters.open(path.with_name(path.name + "-changes")) if writer.locks_across_processes else None
        return cls(writer, reader, changes)

    @classmethod
    def upgrade(cls, path: Path, *, busy_timeout_ms: int = 5000) -> None:
        """Create the database or bring its schema to this version's, without opening a store."""
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = _connect(str(path), busy_timeout_ms, wal=True)
        try:
            cls._check_schema(connection, migrate_schema=True)
        finally:
            connection.close()

    @classmethod
    def revision(cls, path: Path, *, busy_timeout_ms: int = 5000) -> str | None:
        """The schema revision of the database at `path` (None: none yet, or no database there)."""
        if not path.exists():
            return None
        connection = _connect(str(path), busy_timeout_ms, wal=False)
        try:
            return sqlite_schema.stored_revision(connection)
        finally:
            connection.close()

    @classmethod
    def downgrade(cls, path: Path, revision: str, *, busy_timeout_ms: int = 5000) -> None:
        """Bring the schema back to `revision` (`openrooms db downgrade`): the migrations after it are undone, with
        what they stored, in one transaction."""
        from openrooms.store import migrate

        connection = _connect(str(path), busy_timeout_ms, wal=True)
        try:
            _migrating(connection, lambda db: migrate.downgrade(db, revision))
        finally:
            connection.close()

    @staticmethod
    def _check_schema(connection: sqlite3.Connection, migrate_schema: bool) -> None:
        if sqlite_schema.open_without_migrations(connection, create=migrate_schema):
            return  # new, or already at the newest revision: no need of SQLAlchemy and Alembic (sqlite_schema.py)
        from sqlalchemy import create_engine
        from sqlalchemy.pool import StaticPool

        from openrooms.store import migrate

        stored = sqlite_schema.stored_revision(connection)
        if stored is not None and not migrate.is_known_revision(stored):
            raise SchemaMismatch(migrate.newer_than_known(stored))

        if migrate_schema:
            _migrating(connection, migrate.upgrade)
        engine = create_engine("sqlite://", creator=lambda: connection, poolclass=StaticPool)
        with engine.connect() as sa_connection:
            current, head = migrate.current_revision(sa_connection), migrate.head_revision()
        if current != head:
            raise SchemaMismatch(
                f"the database schema is at revision {current or 'none'}, this openrooms needs {head}; "
                "run `openrooms db upgrade`"
            )

    async def close(self) -> None:
        await self._writer.close()
        if self._reader is not None:
            self._reader.close()
        if self._changes is not None:
            self._changes.close()

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        if self._reader is None:
            return await self._writer.run(query)
        with self._errors():
            return query(self._reader)

    async def _write(self, transaction: WriteTransaction[T]) -> T:
        """Run a write transaction in the next group commit: the one way this store writes, so that what each one
        changed is noted for the bump after its COMMIT."""
        note = self._kept.note

        def noted(db: sqlite3.Connection) -> T:
            running: list[NewEvent] = []
            self._running_events = running
            result, changes = transaction(db)
            if changes is not NOTHING:
                note(changes)  # its last step: a transaction that raised is rolled back and noted nothing
            if running:
                self._group_events += running
            return result

        return await self._writer.run(noted)

    def _log(self, events: Sequence[NewEvent]) -> None:
        """Log the events of the write transaction running now: written in its group commit, if it succeeds."""
        self._running_events += events

    def _write_events(self, db: sqlite3.Connection) -> None:
        events, self._group_events = self._group_events, []
        _append(db, events)
        self._appended = bool(events)

    def _after_commit(self, committed: bool) -> None:
        self._group_events = []  # a group that failed before its events were written
        if committed and self._appended:
            self._announce_events()  # webhook dispatchers of this process (`listen_events`)
        self._appended = False
        self._kept.after_commit(committed)

    def _counter(self, room_id: str) -> int | None:
        """The room's change counter, read before a query whose result is to be kept."""
        return None if self._changes is None else self._changes.read(room_id)

    # Rooms ---------------------------------------------------------------------------------------------------
    async def insert_room(
        self, room: Room, participants: Sequence[Participant], record: CreateRecord | None,
        events: Sequence[NewEvent] = (),
    ) -> CreateRecord | None:
        def transaction(db: sqlite3.Connection) -> tuple[CreateRecord | None, Changes]:
            if record is not None:
                earlier = _create_record(db, record.request_id)
                if earlier is not None:
                    return earlier, NOTHING
            try:
                db.execute("INSERT INTO room_ids (id) VALUES (?)", (room.id,))
            except sqlite3.IntegrityError:
                raise RoomIdTaken(room.id) from None
            db.execute(
                f"INSERT INTO rooms ({_ROOM_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                (room.id, room.created_at, room.valid_from, room.valid_until, room.pstn_dial_out_enabled),
            )
            if participants:  # each entry with its copy of the room (room_queries.py)
                values = (room.created_at, room.valid_from, room.valid_until, room.pstn_dial_out_enabled)
                db.executemany(
                    f"INSERT INTO participants ({_ROSTER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(room.id, p.raw_id, p.role.value, seq, *values) for seq, p in enumerate(participants, 1)],
                )
            if record is not None:
                db.execute(
                    "INSERT INTO create_requests (request_id, fingerprint, room_id, created_room, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (record.request_id, record.fingerprint, record.room_id, created_room_value(record.room),
                     record.created_at),
                )
            self._log(events)
            return None, Changes({room.id: room}, created=(room.id,))

        return await self._write(transaction)

    async def get_create_record(self, request_id: str) -> CreateRecord | None:
        return await self._read(lambda db: _create_record(db, request_id))

    async def get_room(self, room_id: str) -> Room | None:
        counter = self._counter(room_id)
        room: Room | None = self._rooms.get(room_id, counter)
        if room is not None:
            return room
        row = await self._read(
            lambda db: db.execute(f"SELECT {_ROOM_COLUMNS} FROM rooms WHERE id = ?", (room_id,)).fetchone()
        )
        if row is None:
            return None
        room = _room(row)
        if counter is not None:
            self._rooms.put(room_id, counter, room)
        return room

    async def update_room(
        self, room_id: str, window: tuple[int, int] | None, pstn_dial_out_enabled: bool | None,
        events: RoomUpdateEvents | None = None,
    ) -> Room | None:
        valid_from, valid_until = window or (None, None)

        def transaction(db: sqlite3.Connection) -> tuple[Room | None, Changes]:
            before = None
            if events is not None:
                before = db.execute(f"SELECT {_ROOM_COLUMNS} FROM rooms WHERE id = ?", (room_id,)).fetchone()
            row: tuple[str, int, int, int, int] | None = db.execute(
                "UPDATE rooms SET valid_from = coalesce(?, valid_from), valid_until = coalesce(?, valid_until), "
                "pstn_dial_out_enabled = coalesce(?, pstn_dial_out_enabled) "
                f"WHERE id = ? RETURNING {_ROOM_COLUMNS}",
                (valid_from, valid_until, pstn_dial_out_enabled, room_id),
            ).fetchone()
            if row is None:
                return None, NOTHING
            room = _room(row)
            if before is None or tuple(before) != tuple(row):
                # The roster's copies of the room follow it (migration 0014; those that differ).
                db.execute(
                    "UPDATE participants SET valid_from = ?2, valid_until = ?3, pstn_dial_out_enabled = ?4 "
                    "WHERE room_id = ?1 AND (valid_from <> ?2 OR valid_until <> ?3 OR pstn_dial_out_enabled <> ?4)",
                    (room.id, room.valid_from, room.valid_until, room.pstn_dial_out_enabled),
                )
            if events is not None and before is not None:
                self._log(events(_room(before), room))
            return room, Changes({room_id: room})

        return await self._write(transaction)

    async def delete_room(self, room_id: str, events: Sequence[NewEvent] = ()) -> bool:
        def transaction(db: sqlite3.Connection) -> tuple[bool, Changes]:
            if db.execute("DELETE FROM rooms WHERE id = ?", (room_id,)).rowcount == 0:
                return False, NOTHING
            self._log(events)
            return True, Changes({room_id: None})

        return await self._write(transaction)

    async def list_rooms(self, valid_after: int, after: tuple[int, str] | None, limit: int) -> list[Room]:
        def query(db: sqlite3.Connection) -> str:
            if after is None:
                page: str = db.execute(_ROOMS_FIRST_PAGE, (valid_after, limit)).fetchone()[0]
            else:
                page = db.execute(_ROOMS_PAGE_AFTER, (after[0], after[1], valid_after, limit)).fetchone()[0]
            return page

        # A page stays right while no room changes and until the first of its rooms ends: time only ever takes
        # rooms out of the list, and none of the rooms after the page can move into it before one of its own.
        counter = None if self._changes is None else self._changes.read_listing()
        kept: tuple[int, int, list[Room]] | None = self._listings.get((after, limit), counter)
        if kept is not None and kept[0] <= valid_after < kept[1]:
            return list(kept[2])
        rooms = _ROOMS.decode(await self._read(query))
        if counter is not None:
            ends = min((room.valid_until for room in rooms), default=FOREVER)
            self._listings.put((after, limit), counter, (valid_after, ends, rooms))
        return list(rooms)

    async def query_rooms(self, query: RoomQuery, after: tuple[int, str] | None, limit: int) -> list[Room]:
        statement, params = room_query(_ROOM_COLUMNS, query, after, limit, lambda name, _: f":{name}")
        page: str = await self._read(lambda db: db.execute(_as_json_array(statement), params).fetchone()[0])
        return _ROOMS.decode(page)

    async def count_rooms(self, query: RoomQuery, limit: int) -> int:
        statement, params = room_count(query, limit, lambda name, _: f":{name}")
        return int(await self._read(lambda db: db.execute(statement, params).fetchone()[0]))

    async def list_participants(self, room_id: str, start: int, limit: int) -> RosterPage | None:
        def query(db: sqlite3.Connection) -> tuple[int | None, str, int | None]:
            # One statement: whether the room exists, the page, and where the next page starts.
            row: tuple[int | None, str, int | None] = db.execute(
                "SELECT (SELECT 1 FROM rooms WHERE id = ?1), (SELECT json_group_array(json_array(raw_id, role)) "
                "FROM (SELECT raw_id, role FROM participants WHERE room_id = ?1 AND seq >= ?2 "
                "ORDER BY seq LIMIT ?3)), "
                "(SELECT seq FROM participants WHERE room_id = ?1 AND seq >= ?2 ORDER BY seq LIMIT 1 OFFSET ?3)",
                (room_id, start, limit),
            ).fetchone()
            return row

        counter = self._counter(room_id)
        key = (room_id, start, limit)
        kept: RosterPage | None = self._pages.get(key, counter)
        if kept is not None:
            return RosterPage(list(kept.participants), kept.next_start)
        exists, participants, next_start = await self._read(query)
        if exists is None:
            return None
        page = RosterPage(_PARTICIPANTS.decode(participants), next_start)
        if counter is not None:
            self._pages.put(key, counter, page)
        return RosterPage(list(page.participants), next_start)

    async def get_participant(self, room_id: str, raw_id: str) -> Participant | None:
        counter = self._counter(room_id)
        participant: Participant | None = self._participants.get((room_id, raw_id), counter)
        if participant is not None:
            return participant
        row = await self._read(
            lambda db: db.execute(
                "SELECT role FROM participants WHERE room_id = ? AND raw_id = ?", (room_id, raw_id)
            ).fetchone()
        )
        if row is None:
            return None
        participant = Participant(raw_id, ROLES[row[0]])
        if counter is not None:
            self._participants.put((room_id, raw_id), counter, participant)
        return participant

    async def update_participants(
        self, room_id: str, upserts: Mapping[str, Role], removals: Collection[str],
        max_participants: int | None = None, events: RosterChangeEvents | None = None,
    ) -> bool:
        def transaction(db: sqlite3.Connection) -> tuple[bool, Changes]:
            # The room's values (no row: no room), its roster's size and the last place taken in it, in one
            # statement (each one lets go of the GIL).
            row = db.execute(
                "SELECT created_at, valid_from, valid_until, pstn_dial_out_enabled, "
                "iif(?2, (SELECT count(*) FROM participants WHERE room_id = ?1), 0), "
                "iif(?3, (SELECT coalesce(max(seq), 0) FROM participants WHERE room_id = ?1), 0) "
                "FROM rooms WHERE id = ?1",
                (room_id, max_participants is not None and bool(upserts), bool(upserts)),
            ).fetchone()
            if row is None:
                return False, NOTHING
            *values, before, last = row
            found: dict[str, str] = {}
            if events is not None:  # the roles, before the change, of everyone it names
                named = msgspec.json.encode([*upserts, *removals]).decode()
                found = dict(db.execute(
                    "SELECT raw_id, role FROM participants WHERE room_id = ? AND raw_id IN "
                    "(SELECT value FROM json_each(?))", (room_id, named)).fetchall())
            if upserts:
                # New participants take the places after the last one, in the order given, with their copy of
                # the room; a role change keeps its place (the conflict leaves `seq` as it was).
                db.executemany(
                    f"INSERT INTO participants ({_ROSTER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (room_id, raw_id) DO UPDATE SET role = excluded.role",
                    [(room_id, raw_id, role.value, seq, *values)
                     for seq, (raw_id, role) in enumerate(upserts.items(), last + 1)],
                )
            if removals:
                db.executemany(
                    "DELETE FROM participants WHERE room_id = ? AND raw_id = ?",
                    [(room_id, raw_id) for raw_id in removals],
                )
            if max_participants is not None and upserts:  # only additions can grow a roster
                after = _roster_size(db, room_id)
                if after > max_participants and after > before:
                    raise RosterFull(after)  # the writer rolls this transaction back
            if events is not None:
                self._log(events(roster_change(found, upserts, removals)))
            return True, Changes(rosters=(room_id,))

        return await self._write(transaction)

    async def purge(self, rooms_valid_before: int, records_created_before: int) -> tuple[int, int]:
        # In batches, so that a large purge never holds the write lock for long.
        rooms = 0
        def batch(db: sqlite3.Connection) -> tuple[int, Changes]:
            ids = db.execute(
                "DELETE FROM rooms WHERE id IN (SELECT id FROM rooms WHERE valid_until < ? LIMIT ?) RETURNING id",
                (rooms_valid_before, _PURGE_BATCH),
            ).fetchall()
            return len(ids), Changes({room_id: None for (room_id,) in ids})

        while True:
            deleted = await self._write(batch)
            rooms += deleted
            if deleted < _PURGE_BATCH:
                break
        records = await self._write(
            lambda db: (
                db.execute("DELETE FROM create_requests WHERE created_at < ?", (records_created_before,)).rowcount,
                NOTHING,
            )
        )
        return rooms, records

    # Events --------------------------------------------------------------------------------------------------
    async def append_events(self, events: Sequence[NewEvent]) -> None:
        def transaction(db: sqlite3.Connection) -> tuple[None, Changes]:
            self._log(events)
            return None, NOTHING

        if events:
            await self._write(transaction)

    async def list_events(
        self, after: tuple[int, int] | None, types: Collection[str] | None, room_id: str | None, limit: int
    ) -> list[StoredEvent]:
        where, params = ["seq > ?"], [0 if after is None else after[1]]
        if types is not None:
            where.append("type IN (SELECT value FROM json_each(?))")
            params.append(msgspec.json.encode(list(types)).decode())  # type: ignore[arg-type]
        if room_id is not None:
            where.append("room_id = ?")
            params.append(room_id)  # type: ignore[arg-type]
        statement = f"SELECT {_EVENT_COLUMNS} FROM events WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?"
        rows = await self._read(lambda db: db.execute(statement, (*params, limit)).fetchall())
        return [_stored(row) for row in rows]

    async def latest_events(
        self, types: Collection[str] | None, room_id: str | None, limit: int
    ) -> tuple[list[StoredEvent], tuple[int, int]]:
        where, params = ["seq <= ?"], []
        if types is not None:
            where.append("type IN (SELECT value FROM json_each(?))")
            params.append(msgspec.json.encode(list(types)).decode())
        if room_id is not None:
            where.append("room_id = ?")
            params.append(room_id)
        statement = f"SELECT {_EVENT_COLUMNS} FROM events WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?"

        def read(db: sqlite3.Connection) -> tuple[list[StoredEvent], tuple[int, int]]:
            # The end first: an event written between the two statements comes after it, so the page (bounded by
            # the end) leaves it to the reader that goes on from the end.
            end = int(db.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])
            rows = db.execute(statement, (end, *params, limit)).fetchall()
            return [_stored(row) for row in reversed(rows)], (0, end)

        return await self._read(read)

    async def purge_events(self, before: int) -> int:
        # From the oldest on, up to the first event that is not older than `before`: the log has no index on
        # time (each create room would pay for it), and this reads only the events it deletes, and one more.
        def batch(db: sqlite3.Connection) -> tuple[int, Changes]:
            deleted = db.execute(
                "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE seq < coalesce("
                "(SELECT seq FROM events WHERE time >= ?1 ORDER BY seq LIMIT 1), 1 << 62) ORDER BY seq LIMIT ?2)",
                (before, _PURGE_BATCH),
            ).rowcount
            return deleted, NOTHING

        total = 0
        while True:
            deleted = await self._write(batch)
            total += deleted
            if deleted < _PURGE_BATCH:
                return total

    # Identities ----------------------------------------------------------------------------------------------
    async def ensure_resource_id(self, candidate: str) -> str:
        def transaction(db: sqlite3.Connection) -> tuple[str, Changes]:
            db.execute(
                "INSERT INTO server_settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                (_RESOURCE_ID, candidate),
            )
            row = db.execute("SELECT value FROM server_settings WHERE name = ?", (_RESOURCE_ID,)).fetchone()
            return str(row[0]), NOTHING

        return await self._write(transaction)

    async def get_signing_keys(self) -> list[SigningKey]:
        rows = await self._read(
            lambda db: db.execute(
                f"SELECT {_KEY_COLUMNS} FROM signing_keys ORDER BY created_at DESC, kid DESC"
            ).fetchall()
        )
        return [SigningKey(*row) for row in rows]

    async def ensure_signing_key(self, candidate: SigningKey) -> SigningKey:
        def transaction(db: sqlite3.Connection) -> tuple[SigningKey, Changes]:
            row = db.execute(
                f"SELECT {_KEY_COLUMNS} FROM signing_keys ORDER BY created_at DESC, kid DESC LIMIT 1"
            ).fetchone()
            if row is not None:
                return SigningKey(*row), NOTHING
            db.execute(
                f"INSERT INTO signing_keys ({_KEY_COLUMNS}) VALUES (?, ?, ?, ?)",
                (candidate.kid, candidate.private_key_pem, candidate.certificate_pem, candidate.created_at),
            )
            return candidate, NOTHING

        return await self._write(transaction)

    async def insert_user(self, user: CommunicationUser, events: Sequence[NewEvent] = ()) -> None:
        def transaction(db: sqlite3.Connection) -> tuple[None, Changes]:
            try:
                db.execute(
                    "INSERT INTO identities (raw_id, created_at, tokens_revoked_before) VALUES (?, ?, ?)",
                    (user.raw_id, user.created_at, user.tokens_revoked_before),
                )
            except sqlite3.IntegrityError:
                raise UserIdTaken(user.raw_id) from None
            self._log(events)
            return None, NOTHING

        await self._write(transaction)

    async def get_user(self, raw_id: str) -> CommunicationUser | None:
        row = await self._read(
            lambda db: db.execute(
                "SELECT raw_id, created_at, tokens_revoked_before FROM identities WHERE raw_id = ?", (raw_id,)
            ).fetchone()
        )
        return None if row is None else CommunicationUser(*row)

    async def revoke_tokens(self, raw_id: str, revoked_before: int, events: Sequence[NewEvent] = ()) -> bool:
        def transaction(db: sqlite3.Connection) -> tuple[bool, Changes]:
            # Never moves back: a revoke from an instance whose clock lags must not un-revoke tokens.
            revoked = db.execute(
                "UPDATE identities SET tokens_revoked_before = CASE WHEN tokens_revoked_before IS NULL "
                "OR tokens_revoked_before < ? THEN ? ELSE tokens_revoked_before END WHERE raw_id = ?",
                (revoked_before, revoked_before, raw_id),
            ).rowcount > 0
            if revoked:
                self._log(events)
            return revoked, NOTHING

        return await self._write(transaction)

    async def delete_user(self, raw_id: str, events: UserDeletionEvents | None = None) -> bool:
        def transaction(db: sqlite3.Connection) -> tuple[bool, Changes]:
            if db.execute("DELETE FROM identities WHERE raw_id = ?", (raw_id,)).rowcount == 0:
                return False, NOTHING
            left = db.execute(
                "DELETE FROM participants WHERE raw_id = ? RETURNING room_id, role", (raw_id,)
            ).fetchall()
            if events is not None:
                self._log(events([(room_id, ROLES[role]) for room_id, role in left]))
            return True, Changes(rosters=[room_id for room_id, _ in left])

        return await self._write(transaction)

    async def adopt_resource_id(self, candidate: str, *, write: bool = True) -> str:
        """`candidate` becomes the resource id unless another is stored and the database holds rooms or users
        already; returns the resource id stored afterwards (for `openrooms migrate`). With `write` False,
        only says what it would be."""
        def transaction(db: sqlite3.Connection) -> str:
            row = db.execute("SELECT value FROM server_settings WHERE name = ?", (_RESOURCE_ID,)).fetchone()
            if row is not None and row[0] != candidate and db.execute(
                "SELECT EXISTS (SELECT 1 FROM rooms) OR EXISTS (SELECT 1 FROM identities)"
            ).fetchone()[0]:
                return str(row[0])
            if not write:
                return candidate
            db.execute(
                "INSERT INTO server_settings (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (_RESOURCE_ID, candidate),
            )
            return candidate

        if not write:
            return await self._read(transaction)
        return await self._write(lambda db: (transaction(db), NOTHING))

    async def insert_users(self, users: Sequence[CommunicationUser]) -> int:
        """Insert the users that do not exist yet, in one transaction; how many were new."""
        def transaction(db: sqlite3.Connection) -> tuple[int, Changes]:
            before = db.total_changes
            db.executemany(
                "INSERT INTO identities (raw_id, created_at, tokens_revoked_before) VALUES (?, ?, ?) "
                "ON CONFLICT (raw_id) DO NOTHING",
                [(user.raw_id, user.created_at, user.tokens_revoked_before) for user in users],
            )
            return db.total_changes - before, NOTHING

        return await self._write(transaction) if users else 0

    # Access keys ---------------------------------------------------------------------------------------------
    async def get_access_keys(self) -> dict[str, str]:
        return await self._read(lambda db: dict(db.execute("SELECT name, key FROM access_keys").fetchall()))

    async def set_access_keys(
        self, keys: Mapping[str, str], now: int, *, replace: bool = True, events: Sequence[NewEvent] = ()
    ) -> dict[str, str]:
        conflict = "DO UPDATE SET key = excluded.key, updated_at = excluded.updated_at" if replace else "DO NOTHING"

        def transaction(db: sqlite3.Connection) -> tuple[dict[str, str], Changes]:
            db.executemany(
                f"INSERT INTO access_keys (name, key, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) {conflict}",
                [(name, key, now) for name, key in keys.items()],
            )
            self._log(events)
            return dict(db.execute("SELECT name, key FROM access_keys").fetchall()), NOTHING

        return await self._write(transaction)

    async def ping(self) -> None:
        await self._read(lambda db: db.execute("SELECT 1 FROM rooms LIMIT 1").fetchall())

    # The rooms' window events (store/windows.py): writers take turns, so no claim ever waits for another --------
    async def claim_window_instants(self, now: int, events: WindowEvents, limit: int) -> int | None:
        def transaction(db: sqlite3.Connection) -> tuple[int | None, Changes]:
            row = db.execute("SELECT covered FROM window_clock WHERE id = 1").fetchone()
            if row is None:
                db.execute("INSERT INTO window_clock (id, covered) VALUES (1, ?)", (now,))
                return 0, NOTHING
            covered = row[0]
            if now <= covered:
                return 0, NOTHING
            due = windows.instants(db.execute(windows.DUE, {"covered": covered, "upto": now, "limit": limit})
                                   .fetchall())
            page = windows.cut(due, limit, now)
            if page is None:  # a full page of one instant: all of its rooms
                last = due[-1].instant
                page = windows.instants(db.execute(windows.DUE, {"covered": last - 1, "upto": last, "limit": -1})
                                        .fetchall()), last
            claimed, covered = page
            db.execute("UPDATE window_clock SET covered = ? WHERE id = 1", (covered,))
            self._log(events(claimed))
            return len(claimed), NOTHING

        return await self._write(transaction)

    async def next_window_instant(self, after: int) -> int | None:
        row = await self._read(lambda db: db.execute(windows.NEXT, {"after": after}).fetchone())
        return None if row is None else row[0]

    # Room calls (openrooms.calls) ---------------------------------------------------------------------------
    async def claim_call_server(self, candidate: CallServer, events: Sequence[NewEvent] = ()) -> CallServer:
        def transaction(db: sqlite3.Connection) -> tuple[CallServer, Changes]:
            inserted = db.execute(
                f"INSERT INTO call_servers ({_CALL_SERVER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (room_id) DO NOTHING",
                _call_server_row(candidate),
            ).rowcount
            row = db.execute(f"SELECT {_CALL_SERVER_COLUMNS} FROM call_servers WHERE room_id = ?",
                             (candidate.room_id,)).fetchone()
            if inserted:
                self._log(events)
            return CallServer(*row), NOTHING  # no room nor roster changed: nothing kept to move

        return await self._write(transaction)

    async def get_call_server(self, room_id: str) -> CallServer | None:
        row = await self._read(lambda db: db.execute(
            f"SELECT {_CALL_SERVER_COLUMNS} FROM call_servers WHERE room_id = ?", (room_id,)).fetchone())
        return None if row is None else CallServer(*row)

    async def list_call_rooms(self, now: int, limit: int) -> list[str]:
        rows = await self._read(lambda db: db.execute(CALL_ROOMS.format(now="?1", limit="?2"), (now, limit)).fetchall())
        return [row[0] for row in rows]

    async def release_call_server(
        self, room_id: str, server_call_id: str, events: Sequence[NewEvent] = ()
    ) -> bool:
        def transaction(db: sqlite3.Connection) -> tuple[bool, Changes]:
            released = db.execute("DELETE FROM call_servers WHERE room_id = ? AND server_call_id = ?",
                                  (room_id, server_call_id)).rowcount > 0
            if released:
                self._log(events)
            return released, NOTHING

        return await self._write(transaction)

    async def listen_changes(self) -> AsyncIterator[str]:
        """No change notifications from SQLite: this never yields (room calls recheck on their clock)."""
        await asyncio.Event().wait()
        yield ""  # pragma: no cover (an async generator; never reached)


_CALL_SERVER_COLUMNS = ("room_id, server, janus_room, secret, pin, server_call_id, started_at, started_by, "
                        "started_by_role, correlation_id")


def _call_server_row(server: CallServer) -> tuple[str | int, ...]:
    return (server.room_id, server.server, server.janus_room, server.secret, server.pin, server.server_call_id,
            server.started_at, server.started_by, server.started_by_role, server.correlation_id)
