"""Fixtures of the migration tests: a real openrooms server stands in for the ACS resource being left."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.communication.rooms import RoomsClient
from bench.preload import preload
from typer.testing import CliRunner

from openrooms.cli.main import app
from tests.support import Server, running_server


@dataclass
class Source:
    server: Server
    room_ids: list[str]

    @property
    def connection_string(self) -> str:
        return self.server.connection_string

    def client(self) -> RoomsClient:
        return RoomsClient.from_connection_string(self.connection_string, api_version="2025-03-13",
                                                  connection_verify=self.server.ca)

    @property
    def options(self) -> list[str]:
        """What `openrooms migrate` needs to trust the server's certificate."""
        return ["--source-ca-cert", self.server.ca]


def start_source(location: Path, rooms: int, participants: int) -> Iterator[Source]:
    """A source server whose store was filled directly (as the benchmarks fill theirs)."""
    ids = preload(location, rooms, participants, quiet=True) if rooms else []
    with running_server(location, "--silent") as server:
        yield Source(server, ids)


@pytest.fixture
def source(tmp_path: Path) -> Iterator[Source]:
    yield from start_source(tmp_path / "source", 200, 1000)


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str


def migrate(*args: str, connection_string: str | None = None, **env: str) -> Result:
    """`openrooms migrate ...` run in process; the source's connection string through its variable."""
    environment = {"COLUMNS": "200", **env}
    if connection_string is not None:
        environment["OPENROOMS_MIGRATE_SOURCE_CONNECTION_STRING"] = connection_string
    result = CliRunner().invoke(app, ["migrate", *args], env=environment, catch_exceptions=False)
    return Result(result.exit_code, result.stdout, result.stderr)


def ok(*args: str, **kwargs: Any) -> Result:
    result = migrate(*args, **kwargs)
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.stdout}\n{result.stderr}"
    return result
