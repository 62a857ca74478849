"""Access keys live in the database: `openrooms keys rotate` takes effect on a running server, no restart."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from openrooms.config import DEV_ACCESS_KEY, DEV_SECONDARY_KEY
from tests.support import Server, running_server

V = "api-version=2025-03-13"
OWN_PRIMARY = base64.b64encode(b"primary-key-of-this-test-0123456").decode()
OWN_SECONDARY = base64.b64encode(b"secondary-key-of-this-test-01234").decode()


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("OPENROOMS_")}


def keys_cli(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "openrooms", "keys", *args], capture_output=True, text=True,
                            check=True, env=clean_env())
    return result.stdout


def status_with(server: Server, key: str) -> int:
    return server.request("GET", f"/rooms?{V}", key=key).status_code


def wait_for_status(server: Server, key: str, status: int, timeout: float = 10) -> None:
    """Poll until the server answers `status` for requests signed with `key` (the key cache is 1 s)."""
    deadline = time.monotonic() + timeout
    while (current := status_with(server, key)) != status:
        assert time.monotonic() < deadline, f"still {current}, expected {status}"
        time.sleep(0.1)


def shown_keys(location: Path) -> dict[str, str]:
    """`openrooms keys show`'s keys by name."""
    lines = keys_cli("show", "--location", str(location)).splitlines()
    return {line.split()[0]: line.partition("accesskey=")[2] for line in lines}


def wait_until_all_workers(server: Server, expected: dict[str, int], timeout: float = 10) -> None:
    """Each worker re-reads the keys within a second: poll until a run of answers, from whichever worker, all
    give each key its expected status."""
    deadline, agreeing = time.monotonic() + timeout, 0
    while agreeing < 8:
        statuses = {key: status_with(server, key) for key in expected}
        assert time.monotonic() < deadline, f"the workers never all agreed: {statuses}, expected {expected}"
        agreeing = agreeing + 1 if statuses == expected else 0
        time.sleep(0.05)


def test_rotating_the_primary_key_while_serving(tmp_path: Path) -> None:
    primary, secondary = OWN_PRIMARY, OWN_SECONDARY
    with running_server(tmp_path, "--workers", "2", "--access-key", primary, "--secondary-key", secondary,
                        tls=False) as server:
        assert status_with(server, primary) == 200
        printed = keys_cli("rotate", "--primary", "--location", str(tmp_path),
                           "--endpoint", server.endpoint).strip()
        endpoint, _, new_key = printed.partition(";accesskey=")
        assert endpoint == f"endpoint={server.endpoint}"
        assert len(base64.b64decode(new_key, validate=True)) == 32

        # The secondary key works throughout, in every worker.
        deadline, agreeing = time.monotonic() + 10, 0
        while agreeing < 8:
            assert time.monotonic() < deadline, "the workers never all switched to the new key"
            assert status_with(server, secondary) == 200
            switched = (status_with(server, primary), status_with(server, new_key)) == (401, 200)
            agreeing = agreeing + 1 if switched else 0
            time.sleep(0.05)

        shown = keys_cli("show", "--location", str(tmp_path), "--endpoint", server.endpoint)
        assert f"primary    endpoint={server.endpoint};accesskey={new_key}" in shown

    # A restart without key flags keeps the rotated key; the banner prints it.
    with running_server(tmp_path, tls=False) as server:
        assert status_with(server, new_key) == 200
        assert status_with(server, primary) == 401
        assert f"accesskey={new_key}" in server.log()


def test_rotating_away_from_the_development_keys_replaces_both(tmp_path: Path) -> None:
    with running_server(tmp_path, "--workers", "2", tls=False) as server:
        assert status_with(server, DEV_ACCESS_KEY) == 200 and status_with(server, DEV_SECONDARY_KEY) == 200
        rotated = subprocess.run([sys.executable, "-m", "openrooms", "keys", "rotate", "--primary", "--location",
                                  str(tmp_path)], capture_output=True, text=True, check=True)
        assert "secondary key was the well-known development key" in rotated.stderr
        stored = shown_keys(tmp_path)
        assert stored["primary"] == rotated.stdout.strip().partition("accesskey=")[2]
        assert DEV_SECONDARY_KEY not in stored.values()
        wait_until_all_workers(server, {DEV_ACCESS_KEY: 401, DEV_SECONDARY_KEY: 401, stored["primary"]: 200,
                                        stored["secondary"]: 200})


def test_rotating_the_secondary_key_leaves_the_primary(tmp_path: Path) -> None:
    with running_server(tmp_path, "--access-key", OWN_PRIMARY, tls=False) as server:
        first_secondary = shown_keys(tmp_path)["secondary"]
        assert status_with(server, first_secondary) == 200
        new_key = keys_cli("rotate", "--secondary", "--location", str(tmp_path)).strip().partition("accesskey=")[2]
        wait_for_status(server, first_secondary, 401)
        assert status_with(server, new_key) == 200
        assert status_with(server, OWN_PRIMARY) == 200


def test_a_key_flag_replaces_the_stored_key_at_start(tmp_path: Path) -> None:
    with running_server(tmp_path, tls=False):
        pass
    keys_cli("rotate", "--primary", "--location", str(tmp_path))  # the development secondary goes too
    stored_secondary = shown_keys(tmp_path)["secondary"]
    chosen = base64.b64encode(b"operator-chosen-key-0123456789ab").decode()
    with running_server(tmp_path, "--access-key", chosen, tls=False) as server:
        assert status_with(server, chosen) == 200
        assert status_with(server, stored_secondary) == 200  # not given: the stored secondary stays
        assert status_with(server, DEV_SECONDARY_KEY) == 401


@pytest.mark.parametrize(("flag", "name", "other"), [("--access-key", "primary", "secondary"),
                                                      ("--secondary-key", "secondary", "primary")])
def test_one_key_given_retires_both_development_keys(tmp_path: Path, flag: str, name: str, other: str) -> None:
    with running_server(tmp_path, flag, OWN_PRIMARY, tls=False) as server:
        stored = shown_keys(tmp_path)
        assert stored[name] == OWN_PRIMARY
        assert len(base64.b64decode(stored[other], validate=True)) == 32  # a new random key, stored
        assert status_with(server, OWN_PRIMARY) == 200
        assert status_with(server, stored[other]) == 200
        assert status_with(server, DEV_ACCESS_KEY) == 401
        assert status_with(server, DEV_SECONDARY_KEY) == 401
        banner = server.log()
        assert f"{name} key".ljust(19) + f"given ({flag})" in banner
        assert f"{other} key".ljust(19) + "new random key, stored" in banner
        assert "well-known" not in banner


def test_the_development_secondary_given_explicitly_is_kept(tmp_path: Path) -> None:
    with running_server(tmp_path, "--access-key", OWN_PRIMARY, "--secondary-key", DEV_SECONDARY_KEY,
                        tls=False) as server:
        assert status_with(server, DEV_SECONDARY_KEY) == 200
        assert status_with(server, DEV_ACCESS_KEY) == 401
        assert "(public: a well-known development key)" in server.log()


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
@pytest.mark.parametrize("store", ["--in-memory", "--location"])
def test_serving_beyond_loopback_with_the_development_keys_is_refused(tmp_path: Path, host: str,
                                                                      store: str) -> None:
    """Refused before anything listens: no traffic leaves loopback."""
    flags = ["--in-memory"] if store == "--in-memory" else ["--location", str(tmp_path)]
    refused = subprocess.run([sys.executable, "-m", "openrooms", "serve", "--host", host, "--no-tls", *flags],
                             capture_output=True, text=True, timeout=60, env=clean_env())
    assert refused.returncode == 2, refused.stderr
    message = refused.stderr
    assert f"--host {host} serves beyond this machine" in message
    for named in ("--access-key", "--secondary-key", "--allow-development-keys", "OPENROOMS_ALLOW_DEVELOPMENT_KEYS"):
        assert named in message


def test_rotate_needs_one_key_and_an_existing_database(tmp_path: Path) -> None:
    both = subprocess.run([sys.executable, "-m", "openrooms", "keys", "rotate", "--location", str(tmp_path)],
                          capture_output=True, text=True)
    assert both.returncode == 2 and "--primary or --secondary" in both.stderr
    missing = subprocess.run([sys.executable, "-m", "openrooms", "keys", "rotate", "--primary",
                              "--location", str(tmp_path / "nothing")], capture_output=True, text=True)
    assert missing.returncode == 2 and "no database" in missing.stderr
