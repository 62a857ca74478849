"""In-process fixtures: the app on each store (SQLite in memory; PostgreSQL in a fresh schema), driven through
httpx's ASGI transport by raw signed requests and by the official SDKs (`tests.api.inprocess`)."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from openrooms.testing import Emulator
from tests.api.inprocess import InProcess
from tests.e2e.rooms_support import GA_VERSIONS, Rooms, make_client
from tests.store import postgres_schema

STORES = ["sqlite", "postgres"]
# The resource id of the shared app's users (a process prints its own in its banner; tests/e2e checks that).
RESOURCE_ID = "7a1c4d2e-0b6f-4c8a-9e35-2d1f0c9b8a76"


@contextlib.contextmanager
def in_process(store: str, **settings: Any) -> Iterator[InProcess]:
    """The app on `store`, with `settings` (e.g. page_size=7), for as long as the block runs."""
    with contextlib.ExitStack() as stack:
        if store == "postgres":
            settings["database_url"] = stack.enter_context(postgres_schema.fresh_schema(postgres_schema.base_url()))
        emulator = stack.enter_context(Emulator(serve=False, **settings))
        target = InProcess(emulator)
        stack.callback(target.close)
        yield target


@pytest.fixture(scope="session", params=STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    """Which store the app of a test keeps its data in."""
    return str(request.param)


@pytest.fixture(scope="session")
def api(store_kind: str) -> Iterator[InProcess]:
    """The app on one store, shared by the session's tests (each makes its own rooms and users)."""
    with in_process(store_kind, resource_id=RESOURCE_ID) as target:
        yield target


# Every GA api-version, through the sync and the async client.
ROOMS_CLIENTS = [(v, f) for v in GA_VERSIONS for f in ("sync", "async")]


@pytest.fixture(params=ROOMS_CLIENTS, ids="-".join)
async def rooms(request: pytest.FixtureRequest, api: InProcess) -> AsyncIterator[Rooms]:
    """A Rooms SDK client of one GA api-version, sync or async, behind one interface."""
    version, flavour = request.param
    client = make_client(api, flavour, version)
    try:
        yield Rooms(client, version, flavour, api)
    finally:
        closed = client.close()
        if inspect.isawaitable(closed):
            await closed
