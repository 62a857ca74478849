"""The official JavaScript SDKs (`@azure/communication-rooms` 1.2.0 and `@azure/communication-identity` 1.3.1 on
Node) against a real openrooms server.

The JS side lives in tests/e2e/node (Node's built-in test runner, pinned by its package-lock.json); these tests
start the server, install the SDKs if needed, and run one test file per server. Node and npm are required: their
absence fails the tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support import Server, running_server, sign_headers

pytestmark = pytest.mark.e2e

NODE_PROJECT = Path(__file__).parent / "node"
PAGE_SIZE = 3
NODE_TIMEOUT_SECONDS = 300


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"`{name}` is not on PATH: the JavaScript SDK tests need Node.js 20+ and npm "
            "(install them, e.g. `apt-get install nodejs npm`, then re-run).",
            pytrace=False,
        )
    return path


def _install_sdk() -> None:
    """`npm ci` when node_modules is missing or older than the lock file, so the pinned SDK versions run."""
    installed = NODE_PROJECT / "node_modules" / ".package-lock.json"
    lock = NODE_PROJECT / "package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    result = subprocess.run(
        [_tool("npm"), "ci", "--no-audit", "--no-fund"],
        cwd=NODE_PROJECT,
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT_SECONDS,
    )
    if result.returncode != 0:
        pytest.fail(f"npm ci in {NODE_PROJECT} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")


def _run_node_tests(server: Server, test_file: str) -> None:
    node = _tool("node")
    _install_sdk()
    env = {
        **os.environ,
        "OPENROOMS_TEST_CONNECTION_STRING": server.connection_string,
        "OPENROOMS_TEST_PAGE_SIZE": str(PAGE_SIZE),
    }
    if server.tls:
        env["NODE_EXTRA_CA_CERTS"] = server.ca  # how a user trusts the server's local CA
    result = subprocess.run(
        [node, "--test", "--test-reporter=spec", test_file],
        cwd=NODE_PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT_SECONDS,
    )
    assert result.returncode == 0, (
        f"node --test {test_file} exited with {result.returncode}\n"
        f"--- node output ---\n{result.stdout}\n{result.stderr}\n--- server log ---\n{server.log()}"
    )


# rooms: the quickstart flow and more; identity: every Identity operation, token parsing and JWKS verification.
NODE_TEST_FILES = ["rooms.test.mjs", "identity.test.mjs"]


@pytest.mark.parametrize("test_file", NODE_TEST_FILES)
def test_js_sdk_over_https(tmp_path: Path, test_file: str) -> None:
    """With the connection string and NODE_EXTRA_CA_CERTS as a user sets them."""
    with running_server(tmp_path, "--page-size", str(PAGE_SIZE)) as server:
        _run_node_tests(server, test_file)


@pytest.mark.parametrize("test_file", NODE_TEST_FILES)
def test_js_sdk_over_plain_http(tmp_path: Path, test_file: str) -> None:
    """Over `--no-tls` the SDKs need their `allowInsecureConnection` option, and then work the same."""
    with running_server(tmp_path, "--page-size", str(PAGE_SIZE), tls=False) as server:
        _run_node_tests(server, test_file)


@pytest.mark.parametrize("server_program", ["granian", "uvicorn"])
def test_next_link_is_a_valid_url_when_the_host_has_a_doubled_port(tmp_path: Path, server_program: str) -> None:
    """Older JS communication-common (2.4.0) sends and signs `Host: 127.0.0.1:<port>:<port>`.

    The server accepted it but built nextLink from that Host, and the SDK then failed with "Invalid URL".
    """
    with running_server(tmp_path, "--page-size", "1", "--server", server_program) as server:
        doubled_host = f"127.0.0.1:{server.port}:{server.port}"

        def send(method: str, path_and_query: str, body: bytes = b""):
            headers = {"Host": doubled_host, **sign_headers(method, path_and_query, doubled_host, body)}
            return server.request(method, path_and_query, body, headers=headers)

        for _ in range(2):
            created = send("POST", "/rooms?api-version=2025-03-13", b'{"participants":{}}')
            assert created.status_code == 201, created.text
        listed = send("GET", "/rooms?api-version=2025-03-13")
        assert listed.status_code == 200, listed.text
        next_link = urlsplit(json.loads(listed.content)["nextLink"])
        assert (next_link.scheme, next_link.netloc) == ("https", f"127.0.0.1:{server.port}")

        second_page = send("GET", f"{next_link.path}?{next_link.query}")
        assert second_page.status_code == 200, second_page.text
        assert len(json.loads(second_page.content)["value"]) == 1
