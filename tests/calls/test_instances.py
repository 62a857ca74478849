"""Two openrooms instances on one PostgreSQL database hold one room's call on one Janus: participants connected
to different instances are in the same call, and a roster change made on either instance reaches the call at
once (PostgreSQL LISTEN/NOTIFY wakes the recheck; its own turn is 30 s, longer than the guard below)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import websockets

from tests.calls.conftest import JANUS_SECRET, CallServer, Namespace, server_inside
from tests.calls.test_signalling import Cast, Client


@pytest.fixture(scope="module")
def instances(netns: Namespace, janus_url: str, postgres_url: str,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cast, Cast]]:
    flags = ("--database-url", postgres_url, "--janus-url", janus_url, "--janus-api-secret", JANUS_SECRET)
    with server_inside(netns, tmp_path_factory.mktemp("a"), *flags, tls=False) as a, \
            server_inside(netns, tmp_path_factory.mktemp("b"), *flags, tls=False) as b:
        yield Cast(CallServer(a, janus_url)), Cast(CallServer(b, janus_url))


@pytest.fixture
async def opened() -> AsyncIterator[list[websockets.ClientConnection]]:
    connections: list[websockets.ClientConnection] = []
    yield connections
    for ws in connections:
        await ws.close()


async def join(cast: Cast, room_id: str, token: str, opened: list[Any]) -> tuple[Client, dict[str, Any]]:
    ws = await websockets.connect(cast.ws_url(room_id))
    opened.append(ws)
    client = Client(ws)
    await client.send(type="join", accessToken=token)
    return client, await client.next("joined", "refused")


async def test_one_call_across_instances_and_a_change_on_the_other_instance_applies_at_once(
        instances: tuple[Cast, Cast], opened: list[Any]) -> None:
    a, b = instances
    first, first_token = a.user()
    second, second_token = b.user()
    room_id = b.room({first: "Presenter", second: "Attendee"})
    on_a, joined_a = await join(a, room_id, first_token, opened)
    on_b, joined_b = await join(b, room_id, second_token, opened)
    assert (joined_a["type"], joined_b["type"]) == ("joined", "joined")
    call_a = a.api("GET", f"/rooms/{room_id}/call").json()
    assert call_a == b.api("GET", f"/rooms/{room_id}/call").json()
    assert {p["rawId"] for p in call_a["participants"]} == {first, second}

    # A Presenter on instance A removes the participant served by instance B (through Janus).
    await on_a.send(type="remove", target=second)
    async with asyncio.timeout(10):
        assert (await on_b.next("ended"))["callEndReason"]["subCode"] == 5300
    # Instance B takes the participant on A off the roster: A ends its call at once.
    answer = b.api("PATCH", f"/rooms/{room_id}/participants", {"participants": {first: None}},
                   "api-version=2025-03-13")
    assert answer.status_code == 200, answer.text
    async with asyncio.timeout(10):  # far less than the 30 s turn: the notification did it
        ended = await on_a.next("ended")
    assert ended["callEndReason"] == {"code": 403, "subCode": 5828}
    assert "listening to the store's change notifications" in a.server.server.log()
