"""End-to-end fixtures: real `openrooms serve` processes, shared per session where the test allows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Server, running_server


@pytest.fixture(scope="session")
def https_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """HTTPS with the generated local CA, as `openrooms serve` starts by default."""
    with running_server(tmp_path_factory.mktemp("https")) as server:
        yield server


@pytest.fixture(scope="session")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Plain HTTP (--no-tls), reached through the clients' constructors."""
    with running_server(tmp_path_factory.mktemp("http"), tls=False) as server:
        yield server
