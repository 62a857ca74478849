"""The openrooms store a migration writes to: the one `openrooms serve` would open with the same options."""

from __future__ import annotations

from openrooms.config import Settings
from openrooms.service.model import Role, Room
from openrooms.store.protocol import RoomStore

_EVERY_ROOM = -(1 << 62)  # a `valid_after` before any room's end: ended rooms too
_PAGE = 1000


# The store a migration writes to: the protocol has what it needs (`adopt_resource_id`, `insert_users`).
MigrationStore = RoomStore


class TargetError(Exception):
    pass


def open_target(settings: Settings, *, dry_run: bool = False) -> MigrationStore:
    """Open (an embedded database: create or upgrade, as `serve` does) the store `settings` name. For a dry run
    where there is no database yet, an empty one in memory: a dry run creates nothing."""
    from openrooms.store import open_store

    if dry_run and not settings.database_url and not settings.in_memory and not settings.database_file.exists():
        from openrooms.store.sqlite import SqliteStore

        return SqliteStore.open(None)
    if settings.in_memory:
        raise TargetError("an in-memory store is lost at exit: give --location or --database-url")
    if settings.database_url:
        from openrooms.store import postgres

        if not postgres.is_postgres_url(settings.database_url):
            raise TargetError("--database-url must be a PostgreSQL URL: postgresql://user:password@host:5432/db")
        try:
            postgres.check_schema(settings.database_url)
        except (postgres.SchemaMismatch, postgres.DatabaseError) as exc:
            raise TargetError(f"{postgres.redacted(settings.database_url)}: {exc}") from None
    else:
        import sqlite3

        from openrooms.store.sqlite import SchemaMismatch, SqliteStore

        try:
            SqliteStore.upgrade(settings.database_file)
        except (SchemaMismatch, OSError, sqlite3.Error) as exc:
            raise TargetError(f"cannot open the database at {settings.database_path}: {exc}") from None
    return open_store(settings, migrate_schema=False)


async def target_rooms(store: RoomStore, valid_after: int = _EVERY_ROOM) -> dict[str, Room]:
    """The target's rooms by id (by default every one, ended rooms too)."""
    rooms: dict[str, Room] = {}
    after: tuple[int, str] | None = None
    while True:
        page = await store.list_rooms(valid_after, after, _PAGE)
        rooms.update((room.id, room) for room in page)
        if len(page) < _PAGE:
            return rooms
        after = (page[-1].created_at, page[-1].id)


async def target_roster(store: RoomStore, room_id: str) -> dict[str, Role] | None:
    """A room's roster in the order of addition; None if there is no such room."""
    roster: dict[str, Role] = {}
    start: int | None = 0
    while start is not None:
        page = await store.list_participants(room_id, start, _PAGE)
        if page is None:
            return None
        roster.update((p.raw_id, p.role) for p in page.participants)
        start = page.next_start
    return roster
