"""The SQLite schema of the newest migration, as a snapshot: a new database (the emulator's in memory, a first
`serve`) is created from it, and a database already at that revision is opened, without importing SQLAlchemy or
Alembic (about two thirds of a second of a cold start). Any other database goes through the migrations.

The snapshot is `sqlite_schema.sql` next to this module: the dump (`sqlite3.Connection.iterdump`) of an empty
database the migrations made, with the migration files it was made from. A test (tests/store/test_sqlite_schema.py)
checks that it equals what the migrations make now; when a migration is added, regenerate it with
`python -m openrooms.store.sqlite_schema`. A snapshot whose migration files are not exactly those present is not
used, so a stale one can slow a start down but never give a wrong schema.
"""

from __future__ import annotations

import functools
import sqlite3
from pathlib import Path

SNAPSHOT = Path(__file__).with_name("sqlite_schema.sql")
VERSIONS = Path(__file__).with_name("migrations") / "versions"
_HEADER = "-- migrations: "


def migration_files() -> list[str]:
    return sorted(p.name for p in VERSIONS.glob("*.py"))


@functools.cache
def _snapshot() -> tuple[list[str], str] | None:
    """The snapshot's migration files and its SQL, or None when it is missing."""
    try:
        text = SNAPSHOT.read_text()
    except FileNotFoundError:
        return None
    header, _, sql = text.partition("\n")
    if not header.startswith(_HEADER):
        return None
    return header.removeprefix(_HEADER).split(), sql


def current_snapshot() -> tuple[str, str] | None:
    """(head revision, SQL) of the snapshot when it was made from exactly the migration files present, else None."""
    snapshot = _snapshot()
    if snapshot is None or snapshot[0] != migration_files():
        return None
    sql = snapshot[1]
    revision = _revision_in(sql)
    return (revision, sql) if revision else None


def _revision_in(sql: str) -> str | None:
    for line in sql.splitlines():
        if line.startswith('INSERT INTO "alembic_version" VALUES('):
            return line.split("'")[1]
    return None


def stored_revision(connection: sqlite3.Connection) -> str | None:
    """The revision the database records (Alembic's table), None when it has none."""
    try:
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError:  # no such table
        return None
    return None if row is None else str(row[0])


def is_empty(connection: sqlite3.Connection) -> bool:
    return bool(connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0)


def dump(connection: sqlite3.Connection) -> str:
    """The database as SQL statements, without the transaction around them."""
    return "\n".join(line for line in connection.iterdump() if line not in ("BEGIN TRANSACTION;", "COMMIT;")) + "\n"


def statements(sql: str) -> list[str]:
    """The statements of a dump, one by one."""
    found, pending = [], ""
    for line in sql.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            found.append(pending.strip())
            pending = ""
    return found


def open_without_migrations(connection: sqlite3.Connection, *, create: bool) -> bool:
    """Whether the database is at the newest revision without running a migration: it already is, or (with
    `create`) it was empty and is now made from the snapshot. False leaves it as it was (the migrations decide)."""
    snapshot = current_snapshot()
    if snapshot is None:
        return False
    head, sql = snapshot
    if stored_revision(connection) == head:
        return True
    if not create:
        return False
    connection.execute("BEGIN IMMEDIATE")  # another process making the same new database waits here
    try:
        if not is_empty(connection):
            connection.execute("ROLLBACK")
            return stored_revision(connection) == head
        for statement in statements(sql):  # (not executescript: it would commit first)
            connection.execute(statement)
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return True


def migrated_dump() -> str:
    """The dump of an empty database the migrations made (imports Alembic)."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import StaticPool

    from openrooms.store import migrate

    connection = sqlite3.connect(":memory:", isolation_level=None)
    connection.execute("PRAGMA foreign_keys = ON")
    try:
        engine = create_engine("sqlite://", creator=lambda: connection, poolclass=StaticPool)
        with engine.connect() as sa_connection:
            migrate.upgrade(sa_connection)
            sa_connection.commit()
        return dump(connection)
    finally:
        connection.close()


def snapshot_text() -> str:
    """What `sqlite_schema.sql` holds when it is current."""
    return _HEADER + " ".join(migration_files()) + "\n" + migrated_dump()


def main() -> None:
    SNAPSHOT.write_text(snapshot_text())
    print(f"wrote {SNAPSHOT}")


if __name__ == "__main__":
    main()
