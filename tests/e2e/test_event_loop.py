"""The event loop `serve` runs its workers on: uvloop, which comes with openrooms, and asyncio's own without it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import granian.server
import pytest
import uvicorn

from openrooms import config
from openrooms.cli import main as cli
from tests.support import running_server


def test_the_banner_names_the_server_workers_and_event_loop(tmp_path: Path) -> None:
    with running_server(tmp_path, "--workers", "2", tls=False) as server:
        assert re.search(r"server +granian, 2 workers, event loop uvloop", server.log()), server.log()
        # on a loopback address the console is served, and the banner says where
        assert re.search(r"console +http://127\.0\.0\.1:\d+/console/ \(sign in with an access key\)",
                         server.log()), server.log()
        assert server.request("GET", "/healthz", sign=False).status_code == 200


@pytest.mark.parametrize("installed", [True, False])
def test_both_servers_are_told_the_loop_by_name(monkeypatch: pytest.MonkeyPatch, installed: bool) -> None:
    real = config.importlib.util.find_spec
    monkeypatch.setattr(config.importlib.util, "find_spec",
                        lambda name: real(name) if installed or name != "uvloop" else None)
    expected = "uvloop" if installed else "asyncio"
    assert config.event_loop() == expected
    seen: dict[str, Any] = {}

    class Recorder:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            seen["granian"] = kwargs

        def serve(self) -> None:
            pass

    class UvicornConfig:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            seen["uvicorn"] = kwargs

    class UvicornServer:
        started = True
        should_exit = False

        def __init__(self, config: UvicornConfig) -> None:
            pass

        def run(self) -> None:
            pass

    monkeypatch.setattr(granian.server, "Server", Recorder)
    monkeypatch.setattr(uvicorn, "Config", UvicornConfig)
    monkeypatch.setattr(uvicorn, "Server", UvicornServer)
    settings = config.Settings(silent=True, tls=False)
    cli._run_server(settings)
    cli._run_server(settings.replace(server="uvicorn"))
    # not granian's "auto", which would take any other loop installed (it prefers its own experimental one)
    assert seen["granian"]["loop"].value == expected
    assert seen["uvicorn"]["loop"] == expected
