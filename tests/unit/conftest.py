from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from openrooms.store.sqlite import SqliteStore


@pytest.fixture
async def store() -> AsyncIterator[SqliteStore]:
    """A real store, in memory: service tests exercise the same SQL the server runs."""
    store = SqliteStore.open(None)
    yield store
    await store.close()
