"""Persistence behind one small interface (`openrooms.service.ports.RoomStore`), chosen once at start-up."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from openrooms.config import Settings
    from openrooms.service.ports import RoomStore


def open_store(settings: Settings, *, migrate_schema: bool, background: bool = False) -> RoomStore:
    """The store the settings name: PostgreSQL with `database_url`, else SQLite (a file, or in memory).
    `background`: for a process that serves no requests (see `SqliteStore.open`)."""
    if settings.database_url:
        from openrooms.store.postgres import PostgresStore

        # A shared database is never upgraded implicitly: `openrooms db upgrade` does that.
        return PostgresStore.open(
            settings.database_url,
            pool_size=settings.pool_size,
            connect_timeout=settings.database_connect_timeout,
            pool_wait=settings.database_pool_wait,
            call_timeout=settings.database_call_timeout,
            reconnect_timeout=settings.database_reconnect_timeout,
        )
    from openrooms.store.sqlite import SqliteStore

    return SqliteStore.open(settings.database_path, migrate_schema=migrate_schema, background=background)
