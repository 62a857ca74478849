"""The PostgreSQL client's pool size and timeouts reach the store `open_store` opens, from the settings."""

from __future__ import annotations

from openrooms.config import Settings
from openrooms.store import open_store
from openrooms.store.postgres import PostgresStore
from tests.unit.test_config import pool_settings


async def test_open_store_passes_the_database_settings(postgres_url: str) -> None:
    settings = Settings(database_url=postgres_url, pool_size=2, database_connect_timeout=4, database_pool_wait=0.25,
                        database_call_timeout=3.5, database_reconnect_timeout=0.75).validated()
    store = open_store(settings, migrate_schema=False)
    try:
        assert isinstance(store, PostgresStore)
        assert pool_settings(store) == (2, 0.25, 0.75, 4, 3.5)
        await store.ping()  # and it works with them
    finally:
        await store.close()
