from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from openrooms.service.stopping import STOPPING
from openrooms.store.sqlite import SqliteStore


@pytest.fixture
async def store() -> AsyncIterator[SqliteStore]:
    """A real store, in memory: service tests exercise the same SQL the server runs."""
    store = SqliteStore.open(None)
    yield store
    await store.close()


@pytest.fixture(autouse=True)
def no_stop_left() -> Iterator[None]:
    """The worker-wide stopping signal unset before and after each test (some set it, as a SIGTERM would)."""
    STOPPING.reset()
    yield
    STOPPING.reset()
