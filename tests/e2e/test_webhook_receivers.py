"""The webhook receivers of docs/events.md ("Signatures") run as the receivers of a real server's subscriptions:
the JavaScript one under Node with npm's `standardwebhooks` (pinned in tests/e2e/node), the Python one in an
aiohttp app. Each is taken from the docs as it stands, so that the docs and the test cannot drift apart; only its
secret, its port and `handle` (which the docs leave to the reader) are filled in. The handshakes of both schemas
pass, deliveries verify and reach `handle`, and what the test sends with a bad signature, a changed body, a stale
timestamp or no signature is refused."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import re
import secrets
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from tests.e2e.test_node_sdk import NODE_PROJECT, _install_sdk, _tool
from tests.support import Server, free_port, loopback_site, running_server

pytestmark = pytest.mark.e2e

DOCS = Path(__file__).parents[2] / "docs" / "events.md"
EVENTS = "api-version=2026-11-01-openrooms"
ROOMS = "api-version=2025-03-13"
FAST = ("--webhook-retry-scale", "0.0001", "--webhook-timeout", "2", "--webhook-lease-seconds", "3", "--silent")
DOCS_SECRET = '"whsec_..."'


def example(language: str) -> str:
    """The receiver of this language in the docs' "Signatures" section."""
    section = DOCS.read_text().split("### Signatures\n", 1)[1].split("\n### ", 1)[0]
    match = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert match, f"docs/events.md has no {language} receiver under Signatures"
    code = match.group(1)
    assert code.count(DOCS_SECRET) == 1, "the example's secret is no longer the placeholder the test fills in"
    return code


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("receivers"), *FAST, tls=False) as server:
        yield server


def subscribe(server: Server, endpoint: str, secret: str, **fields: str) -> httpx.Response:
    body = json.dumps({"endpoint": endpoint, "secret": secret, **fields}).encode()
    return server.request("POST", f"/events/subscriptions?{EVENTS}", body)


def create_room(server: Server) -> str:
    created = server.request("POST", f"/rooms?{ROOMS}", b"{}")
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def wait(condition: Callable[[], object], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def notification(event_id: str) -> bytes:
    return json.dumps([{"id": event_id, "topic": "/openrooms/communicationServices/x", "subject": "rooms/1",
                        "eventType": "OpenRooms.RoomCreated", "eventTime": "2026-12-07T00:00:00+00:00",
                        "dataVersion": "1.0", "metadataVersion": "1", "data": {"roomId": event_id}}]).encode()


def signed(secret: str, event_id: str, body: bytes, at: datetime.datetime | None = None) -> dict[str, str]:
    at = at or datetime.datetime.now(datetime.UTC)
    return {"content-type": "application/json", "webhook-id": event_id, "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": Webhook(secret).sign(event_id, at, body)}


def forgeries(secret: str) -> list[tuple[str, bytes, dict[str, str]]]:
    """Requests a receiver must refuse: (their event id, body, headers)."""
    stale = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=10)
    return [
        ("forged-secret", notification("forged-secret"), signed(new_secret(), "forged-secret",
                                                                notification("forged-secret"))),
        ("forged-body", notification("forged-body"), signed(secret, "forged-body", notification("something else"))),
        ("forged-stale", notification("forged-stale"), signed(secret, "forged-stale", notification("forged-stale"),
                                                              stale)),
        ("forged-unsigned", notification("forged-unsigned"), {"content-type": "application/json"}),
    ]


def refuses_forgeries_and_takes_the_genuine(send: Callable[[bytes, dict[str, str]], int], secret: str,
                                            handled: Callable[[], list[dict[str, Any]]]) -> None:
    for event_id, body, headers in forgeries(secret):
        assert send(body, headers) == 401, event_id
    genuine = notification("genuine")
    assert send(genuine, signed(secret, "genuine", genuine)) == 200
    wait(lambda: any(e.get("id") == "genuine" for e in handled()), "the genuine request handled")
    assert not [e for e in handled() if str(e.get("id", "")).startswith("forged")]


def post(url: str) -> Callable[[bytes, dict[str, str]], int]:
    def send(body: bytes, headers: dict[str, str]) -> int:
        return httpx.post(url, content=body, headers=headers).status_code
    return send


def delete(server: Server, subscription_id: str) -> None:
    assert server.request("DELETE", f"/events/subscriptions/{subscription_id}?{EVENTS}").status_code == 204


def test_the_javascript_receiver_of_the_docs(server: Server, tmp_path: Path) -> None:
    node = _tool("node")
    _install_sdk()
    secret, port = new_secret(), free_port()
    code = example("js")
    assert code.count(".listen(8080)") == 1
    code = code.replace(DOCS_SECRET, json.dumps(secret)).replace(".listen(8080)", f'.listen({port}, "127.0.0.1")')
    code += "\nfunction handle(event) { console.log(JSON.stringify(event)); }\n"
    (tmp_path / "receiver.mjs").write_text(code)
    (tmp_path / "node_modules").symlink_to(NODE_PROJECT / "node_modules")  # its `standardwebhooks`
    output = tmp_path / "handled.jsonl"
    with open(output, "wb") as out:
        receiver = subprocess.Popen([node, "receiver.mjs"], cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        def listening() -> bool:
            assert receiver.poll() is None, output.read_text()
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", port)) == 0

        wait(listening, "the receiver to listen")

        def handled() -> list[dict[str, Any]]:
            return [json.loads(line) for line in output.read_text().splitlines() if line.startswith("{")]

        url = f"http://127.0.0.1:{port}/openrooms"
        # The handshakes pass, each verified: Event Grid's validation event, CloudEvents' OPTIONS.
        made = [subscribe(server, url, secret), subscribe(server, url, secret, schema="CloudEventSchemaV1_0")]
        assert [m.status_code for m in made] == [201, 201], [m.text for m in made]
        # A create whose secret is not the receiver's fails its handshake: the receiver refused its signature.
        refused = subscribe(server, url, new_secret())
        assert refused.status_code == 400 and refused.json()["error"]["target"] == "endpoint", refused.text

        room_id = create_room(server)
        wait(lambda: len([e for e in handled() if e.get("data", {}).get("roomId") == room_id]) >= 2,
             "the room's event through both subscriptions")
        kinds = {("eventType" in e, "specversion" in e) for e in handled() if e["data"].get("roomId") == room_id}
        assert kinds == {(True, False), (False, True)}  # one Event Grid event, one CloudEvent
        refuses_forgeries_and_takes_the_genuine(post(url), secret, handled)
        for m in made:
            delete(server, m.json()["id"])
    finally:
        receiver.terminate()
        try:
            receiver.wait(10)
        except subprocess.TimeoutExpired:
            receiver.kill()
            receiver.wait()


async def test_the_python_receiver_of_the_docs(server: Server) -> None:
    secret = new_secret()
    handled: list[dict[str, Any]] = []
    namespace: dict[str, Any] = {"handle": handled.append}
    exec(compile(example("python").replace(DOCS_SECRET, json.dumps(secret)), "docs/events.md", "exec"), namespace)
    async with loopback_site(namespace["app"]) as origin:
        url = f"{origin}/openrooms"
        made = [await asyncio.to_thread(subscribe, server, url, secret),  # the handshakes, verified
                await asyncio.to_thread(subscribe, server, url, secret, schema="CloudEventSchemaV1_0")]
        assert [m.status_code for m in made] == [201, 201], [m.text for m in made]
        refused = await asyncio.to_thread(subscribe, server, url, new_secret())
        assert refused.status_code == 400 and refused.json()["error"]["target"] == "endpoint", refused.text

        room_id = await asyncio.to_thread(create_room, server)
        async with asyncio.timeout(30):
            while len([e for e in handled if e["data"].get("roomId") == room_id]) < 2:
                await asyncio.sleep(0.02)
        mine = [e for e in handled if e["data"].get("roomId") == room_id]
        assert sorted(e.get("eventType") or e["type"] for e in mine) == ["OpenRooms.RoomCreated"] * 2
        assert {("eventType" in e, "specversion" in e) for e in mine} == {(True, False), (False, True)}
        await asyncio.to_thread(refuses_forgeries_and_takes_the_genuine, post(url), secret, lambda: handled)
        for m in made:
            await asyncio.to_thread(delete, server, m.json()["id"])
