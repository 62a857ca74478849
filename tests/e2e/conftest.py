"""End-to-end fixtures: real `openrooms serve` processes, shared per session where the test allows."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.e2e.rooms_support import GA_VERSIONS, Rooms, make_client
from tests.store import postgres_schema
from tests.support import Server, running_server

# Every server fixture runs once per store: the embedded SQLite file and PostgreSQL (a fresh schema).
STORES = ["sqlite", "postgres"]


@contextlib.contextmanager
def store_flags(store: str) -> Iterator[tuple[str, ...]]:
    """The `serve` flags of a store; PostgreSQL gets a migrated schema of its own, dropped afterwards."""
    if store == "sqlite":
        yield ()
        return
    with postgres_schema.fresh_schema(postgres_schema.base_url()) as url:
        yield ("--database-url", url)


@pytest.fixture(scope="session", params=STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    """Which store the servers of a test keep their data in."""
    return str(request.param)


@pytest.fixture(scope="session")
def https_server(store_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """HTTPS with the generated local CA, as `openrooms serve` starts by default."""
    with store_flags(store_kind) as flags, running_server(tmp_path_factory.mktemp("https"), *flags) as server:
        yield server


@pytest.fixture(scope="session")
def http_server(store_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Plain HTTP (--no-tls), reached through the clients' constructors."""
    with store_flags(store_kind) as flags, running_server(tmp_path_factory.mktemp("http"), *flags,
                                                             tls=False) as server:
        yield server


# Every GA api-version, through the sync and the async client, over HTTPS (connection string) and HTTP.
ROOMS_CLIENTS = [(v, f, t) for v in GA_VERSIONS for f in ("sync", "async") for t in ("https", "http")]


@pytest.fixture(params=ROOMS_CLIENTS, ids=lambda kind: "-".join(kind))
async def rooms(request: pytest.FixtureRequest, store_kind: str) -> AsyncIterator[Rooms]:
    """A Rooms SDK client of one GA api-version, sync or async, over HTTPS or HTTP, behind one interface."""
    version, flavour, transport = request.param
    server: Server = request.getfixturevalue(f"{transport}_server")
    client = make_client(server, flavour, version)
    try:
        yield Rooms(client, version, flavour, server)
    finally:
        closed = client.close()
        if inspect.isawaitable(closed):
            await closed
