"""Store fixtures: the same contract runs against every store implementation."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from openrooms.store.postgres import PostgresStore
from openrooms.store.protocol import RoomStore
from openrooms.store.sqlite import SqliteStore
from tests.store import postgres_schema

StoreFactory = Callable[[], RoomStore]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A migrated schema of its own for this test session."""
    with postgres_schema.fresh_schema(postgres_schema.base_url()) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
async def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """Opens stores on one empty database; each call is like another server instance on it."""
    opened: list[RoomStore] = []
    if request.param == "sqlite":
        path = tmp_path / "openrooms.db"

        def factory() -> RoomStore:
            opened.append(SqliteStore.open(path))
            return opened[-1]
    else:
        url = request.getfixturevalue("postgres_url")
        postgres_schema.truncate_all(url)

        def factory() -> RoomStore:
            opened.append(PostgresStore.open(url, pool_size=4))
            return opened[-1]

    try:
        yield factory
    finally:
        for store in opened:
            await store.close()


@pytest.fixture
def store(open_store: StoreFactory) -> RoomStore:
    return open_store()
