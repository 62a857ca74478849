"""Access keys live in the database: `openrooms keys rotate` takes effect on a running server, no restart."""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from pathlib import Path

from openrooms.config import DEV_ACCESS_KEY, DEV_SECONDARY_KEY
from tests.support import Server, running_server

V = "api-version=2025-03-13"


def keys_cli(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "openrooms", "keys", *args], capture_output=True, text=True,
                            check=True)
    return result.stdout


def status_with(server: Server, key: str) -> int:
    return server.request("GET", f"/rooms?{V}", key=key).status_code


def wait_for_status(server: Server, key: str, status: int, timeout: float = 10) -> None:
    """Poll until the server answers `status` for requests signed with `key` (the key cache is 1 s)."""
    deadline = time.monotonic() + timeout
    while (current := status_with(server, key)) != status:
        assert time.monotonic() < deadline, f"still {current}, expected {status}"
        time.sleep(0.1)


def test_rotating_the_primary_key_while_serving(tmp_path: Path) -> None:
    with running_server(tmp_path, "--workers", "2", tls=False) as server:
        assert status_with(server, DEV_ACCESS_KEY) == 200
        printed = keys_cli("rotate", "--primary", "--location", str(tmp_path),
                           "--endpoint", server.endpoint).strip()
        endpoint, _, new_key = printed.partition(";accesskey=")
        assert endpoint == f"endpoint={server.endpoint}"
        assert len(base64.b64decode(new_key, validate=True)) == 32

        # Each worker re-reads the keys within a second: poll until a run of answers, from whichever worker,
        # all refuse the old key and accept the new one; the secondary key works throughout.
        deadline, agreeing = time.monotonic() + 10, 0
        while agreeing < 8:
            assert time.monotonic() < deadline, "the workers never all switched to the new key"
            assert status_with(server, DEV_SECONDARY_KEY) == 200
            switched = (status_with(server, DEV_ACCESS_KEY), status_with(server, new_key)) == (401, 200)
            agreeing = agreeing + 1 if switched else 0
            time.sleep(0.05)

        shown = keys_cli("show", "--location", str(tmp_path), "--endpoint", server.endpoint)
        assert f"primary    endpoint={server.endpoint};accesskey={new_key}" in shown

    # A restart without key flags keeps the rotated key; the banner prints it.
    with running_server(tmp_path, tls=False) as server:
        assert status_with(server, new_key) == 200
        assert status_with(server, DEV_ACCESS_KEY) == 401
        assert f"accesskey={new_key}" in server.log()


def test_rotating_the_secondary_key_leaves_the_primary(tmp_path: Path) -> None:
    primary = base64.b64encode(b"primary-key-of-this-test-0123456").decode()
    with running_server(tmp_path, "--access-key", primary, tls=False) as server:
        new_key = keys_cli("rotate", "--secondary", "--location", str(tmp_path)).strip().partition("accesskey=")[2]
        wait_for_status(server, DEV_SECONDARY_KEY, 401)
        assert status_with(server, new_key) == 200
        assert status_with(server, primary) == 200


def test_a_key_flag_replaces_the_stored_key_at_start(tmp_path: Path) -> None:
    with running_server(tmp_path, tls=False):
        pass
    keys_cli("rotate", "--primary", "--location", str(tmp_path))
    chosen = base64.b64encode(b"operator-chosen-key-0123456789ab").decode()
    with running_server(tmp_path, "--access-key", chosen, tls=False) as server:
        assert status_with(server, chosen) == 200
        assert status_with(server, DEV_SECONDARY_KEY) == 200  # not given: the stored secondary stays


def test_rotate_needs_one_key_and_an_existing_database(tmp_path: Path) -> None:
    both = subprocess.run([sys.executable, "-m", "openrooms", "keys", "rotate", "--location", str(tmp_path)],
                          capture_output=True, text=True)
    assert both.returncode == 2 and "--primary or --secondary" in both.stderr
    missing = subprocess.run([sys.executable, "-m", "openrooms", "keys", "rotate", "--primary",
                              "--location", str(tmp_path / "nothing")], capture_output=True, text=True)
    assert missing.returncode == 2 and "no database" in missing.stderr
