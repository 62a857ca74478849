"""The web console's sessions and failed sign-ins (`ConsoleSessionStore`; the tables of migration 0013), in SQLite
and in PostgreSQL: the same statements, with each driver's placeholders. A session is read by its primary key (the
hash of its token); a failed sign-in is counted by one upsert, whose window starts again once it has passed.
Parts of `SqliteStore` and `PostgresStore`: their `_read`, `_write`, `_connection` are the ones these use.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from openrooms.service.ports import ConsoleSessionRecord
from openrooms.store.changes import NOTHING, Changes

if TYPE_CHECKING:  # the SQLite store never imports psycopg
    from psycopg import AsyncConnection

_COLUMNS = "token_hash, kind, principal, key_id, created_at, expires_at"
_INSERT = f"INSERT INTO console_sessions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
_GET = f"SELECT {_COLUMNS} FROM console_sessions WHERE token_hash = ?"
_DELETE = "DELETE FROM console_sessions WHERE token_hash = ?"
_FAILURES = "SELECT failures, window_start FROM console_sign_in_failures WHERE client = ?"
# The window's start (and count) start again when the stored window started at `passed` or before: SET's
# expressions read the row as it was, so both CASEs see the old window_start.
_FAIL = (
    "INSERT INTO console_sign_in_failures (client, window_start, failures) VALUES (?, ?, 1) "
    "ON CONFLICT (client) DO UPDATE SET "
    "failures = CASE WHEN console_sign_in_failures.window_start <= ? THEN 1 "
    "ELSE console_sign_in_failures.failures + 1 END, "
    "window_start = CASE WHEN console_sign_in_failures.window_start <= ? THEN excluded.window_start "
    "ELSE console_sign_in_failures.window_start END"
)
_SWEEP_SESSIONS = "DELETE FROM console_sessions WHERE expires_at <= ?"
_SWEEP_FAILURES = "DELETE FROM console_sign_in_failures WHERE window_start <= ?"


def _pg(statement: str) -> str:
    return statement.replace("?", "%s")


def _record(row: Any) -> ConsoleSessionRecord:
    return ConsoleSessionRecord(*row)


class SqliteConsoleSessions:
    _read: Callable[..., Awaitable[Any]]
    _write: Callable[..., Awaitable[Any]]

    async def insert_console_session(self, session: ConsoleSessionRecord) -> None:
        def transaction(db: sqlite3.Connection) -> tuple[None, Changes]:
            db.execute(_INSERT, tuple(session))
            return None, NOTHING

        await self._write(transaction)

    async def get_console_session(self, token_hash: str) -> ConsoleSessionRecord | None:
        row = await self._read(lambda db: db.execute(_GET, (token_hash,)).fetchone())
        return None if row is None else _record(row)

    async def delete_console_session(self, token_hash: str) -> bool:
        def transaction(db: sqlite3.Connection) -> tuple[bool, Changes]:
            return db.execute(_DELETE, (token_hash,)).rowcount > 0, NOTHING

        result: bool = await self._write(transaction)
        return result

    async def get_sign_in_failures(self, client: str) -> tuple[int, int] | None:
        row = await self._read(lambda db: db.execute(_FAILURES, (client,)).fetchone())
        return None if row is None else (row[0], row[1])

    async def add_sign_in_failure(self, client: str, now: int, window: int) -> None:
        def transaction(db: sqlite3.Connection) -> tuple[None, Changes]:
            db.execute(_FAIL, (client, now, now - window, now - window))
            return None, NOTHING

        await self._write(transaction)

    async def sweep_console(self, now: int, window: int) -> tuple[int, int]:
        def transaction(db: sqlite3.Connection) -> tuple[tuple[int, int], Changes]:
            sessions = db.execute(_SWEEP_SESSIONS, (now,)).rowcount
            return (sessions, db.execute(_SWEEP_FAILURES, (now - window,)).rowcount), NOTHING

        swept: tuple[int, int] = await self._write(transaction)
        return swept


class PostgresConsoleSessions:
    def _connection(self) -> AbstractAsyncContextManager[AsyncConnection[Any]]: ...  # type: ignore[empty-body]

    def _transaction(self, *,  # type: ignore[empty-body]
                     logs: bool = False) -> AbstractAsyncContextManager[AsyncConnection[Any]]: ...

    async def insert_console_session(self, session: ConsoleSessionRecord) -> None:
        async with self._connection() as db:
            await db.execute(_pg(_INSERT), tuple(session))

    async def get_console_session(self, token_hash: str) -> ConsoleSessionRecord | None:
        async with self._connection() as db:
            cursor = await db.execute(_pg(_GET), (token_hash,))
            row = await cursor.fetchone()
        return None if row is None else _record(row)

    async def delete_console_session(self, token_hash: str) -> bool:
        async with self._connection() as db:
            cursor = await db.execute(_pg(_DELETE), (token_hash,))
        return cursor.rowcount > 0

    async def get_sign_in_failures(self, client: str) -> tuple[int, int] | None:
        async with self._connection() as db:
            cursor = await db.execute(_pg(_FAILURES), (client,))
            row = await cursor.fetchone()
        return None if row is None else (row[0], row[1])

    async def add_sign_in_failure(self, client: str, now: int, window: int) -> None:
        async with self._connection() as db:
            await db.execute(_pg(_FAIL), (client, now, now - window, now - window))

    async def sweep_console(self, now: int, window: int) -> tuple[int, int]:
        async with self._transaction() as db:
            sessions = await db.execute(_pg(_SWEEP_SESSIONS), (now,))
            failures = await db.execute(_pg(_SWEEP_FAILURES), (now - window,))
        return sessions.rowcount, failures.rowcount
