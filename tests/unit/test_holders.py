"""Lease holders named after their process: which ones another dispatcher may judge gone (Linux /proc)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from openrooms.service import holders


def test_a_holder_is_gone_once_its_process_has_ended_and_never_when_it_cannot_be_told() -> None:
    mine = holders.name()
    assert not holders.gone(mine) and mine != holders.name()  # alive; each dispatcher its own name
    child = subprocess.Popen([sys.executable, "-c", "from openrooms.service import holders; print(holders.name())"],
                             stdout=subprocess.PIPE, text=True)
    name, _ = child.communicate(timeout=30)
    assert child.returncode == 0
    name = name.strip()
    assert name.split("/")[2] == str(child.pid) and holders.gone(name)
    boot, namespace, pid, started, _ = mine.split("/")
    assert not holders.gone(f"{boot}/{namespace}/{pid}/{started}/other")  # this process: another dispatcher in it
    assert holders.gone(f"{boot}/{namespace}/{pid}/{int(started) + 1}/x")  # a process the pid belonged to before
    for foreign in (f"another-boot/{namespace}/{child.pid}/{started}/x",  # another machine
                    f"{boot}/{int(namespace) + 1}/{child.pid}/{started}/x",  # another pid namespace (a container)
                    "0b3c5d4e-1f2a-4b6c-8d9e-0f1a2b3c4d5e", "", None):  # names of another form
        assert not holders.gone(foreign)
    assert os.getpid() == int(pid)


def test_a_holder_hidden_from_this_user_is_not_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    mine = holders.name()

    def hidden(pid: int) -> str | None:
        raise PermissionError(f"/proc/{pid}/stat")  # /proc mounted with hidepid: another user's process

    monkeypatch.setattr(holders, "_start_time", hidden)
    assert not holders.gone(mine)


def test_a_holder_reaped_while_its_stat_is_read_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    mine = holders.name()
    read = Path.read_text

    def reaped(self: Path, encoding: str | None = None, errors: str | None = None) -> str:
        if self.name == "stat":
            raise ProcessLookupError(3, "No such process")  # opened, then reaped before the read
        return read(self, encoding, errors)

    monkeypatch.setattr(Path, "read_text", reaped)
    assert holders.gone(mine)
