"""The SQLite schema snapshot (store/sqlite_schema.py) is what the migrations make, so a database created from it is
the one they would have made; databases it does not fit still go through the migrations."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import StaticPool

from openrooms.store import migrate, sqlite_schema
from openrooms.store.sqlite import SqliteStore


def dump_of(path: Path) -> str:
    connection = sqlite3.connect(path)
    try:
        return sqlite_schema.dump(connection)
    finally:
        connection.close()


def test_the_snapshot_is_what_the_migrations_make() -> None:
    assert sqlite_schema.SNAPSHOT.read_text() == sqlite_schema.snapshot_text(), (
        "src/openrooms/store/sqlite_schema.sql is stale: run `python -m openrooms.store.sqlite_schema`"
    )
    current = sqlite_schema.current_snapshot()
    assert current is not None and current[0] == migrate.head_revision()


async def test_a_new_database_from_the_snapshot_equals_a_migrated_one(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "new.db")
    await store.close()
    assert dump_of(tmp_path / "new.db") == sqlite_schema.migrated_dump()
    connection = sqlite3.connect(tmp_path / "new.db")
    try:
        assert sqlite_schema.stored_revision(connection) == migrate.head_revision()
    finally:
        connection.close()


async def test_an_older_database_is_upgraded_by_the_migrations(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    connection = sqlite3.connect(path, isolation_level=None)
    engine = create_engine("sqlite://", creator=lambda: connection, poolclass=StaticPool)
    with engine.connect() as sa_connection:
        migrate.upgrade(sa_connection, "0006")
        sa_connection.commit()
    try:
        assert not sqlite_schema.open_without_migrations(connection, create=True)  # left to the migrations
    finally:
        connection.close()
    store = SqliteStore.open(path)
    await store.close()
    assert dump_of(path) == sqlite_schema.migrated_dump()


async def test_a_snapshot_of_other_migration_files_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_schema, "migration_files", lambda: ["0001_rooms.py"])
    assert sqlite_schema.current_snapshot() is None
    store = SqliteStore.open(tmp_path / "new.db")  # made by the migrations instead
    await store.close()
    monkeypatch.undo()
    assert dump_of(tmp_path / "new.db") == sqlite_schema.migrated_dump()


def test_an_emulator_imports_neither_sqlalchemy_nor_alembic() -> None:
    probe = (
        "import sys\n"
        "from openrooms.testing import Emulator\n"
        "with Emulator() as emulator:\n"
        "    with emulator.rooms_client() as rooms:\n"
        "        rooms.create_room()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'alembic')))\n"
    )
    finished = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.strip() == "[]"
