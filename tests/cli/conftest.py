"""Fixtures for the `openrooms rooms/identity` tests: real servers, and the real command run as a process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support import Server, running_server


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment without anything that would point the command at another server."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("OPENROOMS_") and k != "AZURE_COMMUNICATION_CONNECTION_STRING"}
    env["COLUMNS"] = "200"  # tables wide enough that ids are not folded
    env.update(extra or {})
    return env


def run_openrooms(*args: str, env: dict[str, str] | None = None, stdin: str | None = None,
                  timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "openrooms", *args], capture_output=True, text=True,
                          env=clean_env(env), input=stdin, timeout=timeout)


@dataclass
class Cli:
    """`openrooms` pointed at one server with --connection-string (and --ca-cert over HTTPS)."""

    server: Server

    @property
    def connection(self) -> list[str]:
        options = ["--connection-string", self.server.connection_string]
        return [*options, "--ca-cert", self.server.ca] if self.server.tls else options

    def run(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return run_openrooms(*args, *self.connection, **kwargs)

    def ok(self, *args: str, **kwargs: Any) -> str:
        result = self.run(*args, **kwargs)
        assert result.returncode == 0, f"openrooms {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
        return result.stdout

    def json(self, *args: str, **kwargs: Any) -> Any:
        return json.loads(self.ok(*args, **kwargs))

    def fails(self, *args: str, code: int = 1) -> str:
        """Runs a command that must fail with `code`; returns its stderr."""
        result = self.run(*args)
        assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
        return result.stderr


@pytest.fixture(scope="session")
def https_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # A small page size, so listings cross pages.
    with running_server(tmp_path_factory.mktemp("cli-https"), "--in-memory", "--page-size", "3") as server:
        yield server


@pytest.fixture(scope="session")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("cli-http"), "--in-memory", tls=False) as server:
        yield server


@pytest.fixture
def cli(https_server: Server) -> Cli:
    return Cli(https_server)


@pytest.fixture
def sdk(https_server: Server) -> Iterator[Any]:
    """The Rooms SDK itself, to check what the command did."""
    from azure.communication.rooms import RoomsClient

    connection_string, ca = https_server.connection_string, https_server.ca
    with RoomsClient.from_connection_string(connection_string, connection_verify=ca) as client:
        yield client


def roster_of(sdk: Any, room_id: str) -> dict[str, str]:
    return {p.communication_identifier.raw_id: str(p.role) for p in sdk.list_participants(room_id)}
