"""The embedded store: one SQLite file (or memory), WAL, fsync on commit.

Each process holds one connection and calls it from its event loop. A call is microseconds and runs to
completion before the loop moves on, so transactions of one process never interleave; `BEGIN IMMEDIATE`
serialises writers across processes, and `synchronous=FULL` makes a write durable before it is acknowledged.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.pool import StaticPool

from openrooms.service.identity import CommunicationUser
from openrooms.service.model import CreateRecord, Participant, Role, Room
from openrooms.service.tokens import SigningKey
from openrooms.store import migrate
from openrooms.store.protocol import RoomIdTaken, RosterFull, StoreUnavailable, UserIdTaken

_ROOM_COLUMNS = "id, created_at, valid_from, valid_until, pstn_dial_out_enabled"
_PURGE_BATCH = 1000
_RESOURCE_ID = "resource_id"
_KEY_COLUMNS = "kid, private_key_pem, certificate_pem, created_at"


class SchemaMismatch(Exception):
    pass


def _room(row: tuple[str, int, int, int, int]) -> Room:
    return Room(row[0], row[1], row[2], row[3], bool(row[4]))


def _record(row: tuple[str, str, str, bytes, int]) -> CreateRecord:
    return CreateRecord(row[0], row[1], row[2], bytes(row[3]), row[4])


class SqliteStore:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    @classmethod
    def open(cls, path: Path | None, *, migrate_schema: bool = True, busy_timeout_ms: int = 5000) -> SqliteStore:
        """Open (and with `migrate_schema`, create or upgrade) the database; `path` None keeps it in memory."""
        target = ":memory:" if path is None else str(path)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        if path is not None:
            connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")
        connection.execute("PRAGMA foreign_keys = ON")
        cls._check_schema(connection, migrate_schema)
        return cls(connection)

    @staticmethod
    def _check_schema(connection: sqlite3.Connection, migrate_schema: bool) -> None:
        engine = create_engine("sqlite://", creator=lambda: connection, poolclass=StaticPool)
        with engine.connect() as sa_connection:
            if migrate_schema:
                migrate.upgrade(sa_connection)
                sa_connection.commit()
            current, head = migrate.current_revision(sa_connection), migrate.head_revision()
        if current != head:
            raise SchemaMismatch(
                f"the database schema is at revision {current or 'none'}, this openrooms needs {head}; "
                "run `openrooms db upgrade`"
            )

    async def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(str(exc)) from exc

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._errors():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                # Also when COMMIT itself fails (disk full, read-only): a transaction left open would make
                # every later BEGIN fail, so the store would not recover when the disk does.
                if self._db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                raise

    async def insert_room(
        self, room: Room, participants: Sequence[Participant], record: CreateRecord | None
    ) -> CreateRecord | None:
        with self._write() as db:
            if record is not None:
                earlier = self._create_record(record.request_id)
                if earlier is not None:
                    return earlier
            try:
                db.execute("INSERT INTO room_ids (id) VALUES (?)", (room.id,))
            except sqlite3.IntegrityError:
                raise RoomIdTaken(room.id) from None
            db.execute(
                f"INSERT INTO rooms ({_ROOM_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                (room.id, room.created_at, room.valid_from, room.valid_until, room.pstn_dial_out_enabled),
            )
            db.executemany(
                "INSERT INTO participants (room_id, raw_id, role) VALUES (?, ?, ?)",
                [(room.id, p.raw_id, p.role.value) for p in participants],
            )
            if record is not None:
                db.execute(
                    "INSERT INTO create_requests (request_id, fingerprint, room_id, response, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (record.request_id, record.fingerprint, record.room_id, record.response, record.created_at),
                )
        return None

    def _create_record(self, request_id: str) -> CreateRecord | None:
        row = self._db.execute(
            "SELECT request_id, fingerprint, room_id, response, created_at FROM create_requests "
            "WHERE request_id = ?",
            (request_id,),
        ).fetchone()
        return None if row is None else _record(row)

    async def get_create_record(self, request_id: str) -> CreateRecord | None:
        with self._errors():
            return self._create_record(request_id)

    async def get_room(self, room_id: str) -> Room | None:
        with self._errors():
            row = self._db.execute(f"SELECT {_ROOM_COLUMNS} FROM rooms WHERE id = ?", (room_id,)).fetchone()
        return None if row is None else _room(row)

    async def update_room(
        self, room_id: str, window: tuple[int, int] | None, pstn_dial_out_enabled: bool | None
    ) -> Room | None:
        valid_from, valid_until = window or (None, None)
        with self._write() as db:
            row = db.execute(
                "UPDATE rooms SET valid_from = coalesce(?, valid_from), valid_until = coalesce(?, valid_until), "
                "pstn_dial_out_enabled = coalesce(?, pstn_dial_out_enabled) "
                f"WHERE id = ? RETURNING {_ROOM_COLUMNS}",
                (valid_from, valid_until, pstn_dial_out_enabled, room_id),
            ).fetchone()
        return None if row is None else _room(row)

    async def delete_room(self, room_id: str) -> bool:
        with self._write() as db:
            return db.execute("DELETE FROM rooms WHERE id = ?", (room_id,)).rowcount > 0

    async def list_rooms(self, valid_after: int, after: tuple[int, str] | None, limit: int) -> list[Room]:
        with self._errors():
            if after is None:
                rows = self._db.execute(
                    f"SELECT {_ROOM_COLUMNS} FROM rooms WHERE valid_until > ? "
                    "ORDER BY created_at DESC, id DESC LIMIT ?",
                    (valid_after, limit),
                ).fetchall()
            else:
                rows = self._db.execute(
                    f"SELECT {_ROOM_COLUMNS} FROM rooms WHERE (created_at, id) < (?, ?) AND valid_until > ? "
                    "ORDER BY created_at DESC, id DESC LIMIT ?",
                    (after[0], after[1], valid_after, limit),
                ).fetchall()
        return [_room(row) for row in rows]

    async def list_participants(self, room_id: str, after: str | None, limit: int) -> list[Participant] | None:
        with self._errors():
            if self._db.execute("SELECT 1 FROM rooms WHERE id = ?", (room_id,)).fetchone() is None:
                return None
            rows = self._db.execute(
                "SELECT raw_id, role FROM participants WHERE room_id = ? AND raw_id > ? ORDER BY raw_id LIMIT ?",
                (room_id, after or "", limit),
            ).fetchall()
        return [Participant(raw_id, Role(role)) for raw_id, role in rows]

    async def update_participants(
        self, room_id: str, upserts: Mapping[str, Role], removals: Collection[str],
        max_participants: int | None = None,
    ) -> bool:
        with self._write() as db:
            if db.execute("SELECT 1 FROM rooms WHERE id = ?", (room_id,)).fetchone() is None:
                return False
            before = self._roster_size(room_id) if max_participants is not None else 0
            db.executemany(
                "INSERT INTO participants (room_id, raw_id, role) VALUES (?, ?, ?) "
                "ON CONFLICT (room_id, raw_id) DO UPDATE SET role = excluded.role",
                [(room_id, raw_id, role.value) for raw_id, role in upserts.items()],
            )
            db.executemany(
                "DELETE FROM participants WHERE room_id = ? AND raw_id = ?",
                [(room_id, raw_id) for raw_id in removals],
            )
            if max_participants is not None:
                after = self._roster_size(room_id)
                if after > max_participants and after > before:
                    raise RosterFull(after)  # _write rolls the change back
        return True

    def _roster_size(self, room_id: str) -> int:
        return int(self._db.execute("SELECT count(*) FROM participants WHERE room_id = ?", (room_id,)).fetchone()[0])

    async def purge(self, rooms_valid_before: int, records_created_before: int) -> tuple[int, int]:
        # In batches, so that a large purge never holds the write lock for long.
        rooms = records = 0
        while True:
            with self._write() as db:
                deleted = db.execute(
                    "DELETE FROM rooms WHERE id IN (SELECT id FROM rooms WHERE valid_until < ? LIMIT ?)",
                    (rooms_valid_before, _PURGE_BATCH),
                ).rowcount
            rooms += deleted
            if deleted < _PURGE_BATCH:
                break
        with self._write() as db:
            records = db.execute(
                "DELETE FROM create_requests WHERE created_at < ?", (records_created_before,)
            ).rowcount
        return rooms, records

    # Identities ----------------------------------------------------------------------------------------------
    async def ensure_resource_id(self, candidate: str) -> str:
        with self._write() as db:
            db.execute(
                "INSERT INTO server_settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                (_RESOURCE_ID, candidate),
            )
            row = db.execute("SELECT value FROM server_settings WHERE name = ?", (_RESOURCE_ID,)).fetchone()
        return str(row[0])

    async def get_signing_keys(self) -> list[SigningKey]:
        with self._errors():
            rows = self._db.execute(
                f"SELECT {_KEY_COLUMNS} FROM signing_keys ORDER BY created_at DESC, kid DESC"
            ).fetchall()
        return [SigningKey(*row) for row in rows]

    async def ensure_signing_key(self, candidate: SigningKey) -> SigningKey:
        with self._write() as db:
            row = db.execute(
                f"SELECT {_KEY_COLUMNS} FROM signing_keys ORDER BY created_at DESC, kid DESC LIMIT 1"
            ).fetchone()
            if row is not None:
                return SigningKey(*row)
            db.execute(
                f"INSERT INTO signing_keys ({_KEY_COLUMNS}) VALUES (?, ?, ?, ?)",
                (candidate.kid, candidate.private_key_pem, candidate.certificate_pem, candidate.created_at),
            )
        return candidate

    async def insert_user(self, user: CommunicationUser) -> None:
        with self._write() as db:
            try:
                db.execute(
                    "INSERT INTO identities (raw_id, created_at, tokens_revoked_before) VALUES (?, ?, ?)",
                    (user.raw_id, user.created_at, user.tokens_revoked_before),
                )
            except sqlite3.IntegrityError:
                raise UserIdTaken(user.raw_id) from None

    async def get_user(self, raw_id: str) -> CommunicationUser | None:
        with self._errors():
            row = self._db.execute(
                "SELECT raw_id, created_at, tokens_revoked_before FROM identities WHERE raw_id = ?", (raw_id,)
            ).fetchone()
        return None if row is None else CommunicationUser(*row)

    async def revoke_tokens(self, raw_id: str, revoked_before: int) -> bool:
        with self._write() as db:
            # Never moves back: a revoke from an instance whose clock lags must not un-revoke tokens.
            return db.execute(
                "UPDATE identities SET tokens_revoked_before = CASE WHEN tokens_revoked_before IS NULL "
                "OR tokens_revoked_before < ? THEN ? ELSE tokens_revoked_before END WHERE raw_id = ?",
                (revoked_before, revoked_before, raw_id),
            ).rowcount > 0

    async def delete_user(self, raw_id: str) -> bool:
        with self._write() as db:
            if db.execute("DELETE FROM identities WHERE raw_id = ?", (raw_id,)).rowcount == 0:
                return False
            db.execute("DELETE FROM participants WHERE raw_id = ?", (raw_id,))
        return True

    # Access keys ---------------------------------------------------------------------------------------------
    async def get_access_keys(self) -> dict[str, str]:
        with self._errors():
            return dict(self._db.execute("SELECT name, key FROM access_keys").fetchall())

    async def set_access_keys(self, keys: Mapping[str, str], now: int, *, replace: bool = True) -> dict[str, str]:
        conflict = "DO UPDATE SET key = excluded.key, updated_at = excluded.updated_at" if replace else "DO NOTHING"
        with self._write() as db:
            db.executemany(
                f"INSERT INTO access_keys (name, key, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) {conflict}",
                [(name, key, now) for name, key in keys.items()],
            )
            return dict(db.execute("SELECT name, key FROM access_keys").fetchall())

    async def ping(self) -> None:
        with self._errors():
            self._db.execute("SELECT 1 FROM rooms LIMIT 1").fetchall()
