"""A room's call signalling against a real Janus and a real `openrooms serve` (in the tests' network namespace),
spoken by a raw WebSocket client: admission and its codes, and every forbidden request refused."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import websockets
from azure.eventgrid import EventGridEvent, SystemEventNames

from tests.calls.conftest import CallServer
from tests.support import sign_headers

V = "api-version=2026-11-01-openrooms"
ROOMS_V = "api-version=2025-03-13"
IDENTITY_V = "api-version=2025-06-30"
# An offer that sends audio and video (what openrooms reads of an offer is its m-lines).
OFFER = ("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
         "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=sendrecv\r\n"
         "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=sendrecv\r\n")


@dataclass
class Cast:
    server: CallServer

    def api(self, method: str, path: str, body: Any = None, version: str = V) -> httpx.Response:
        path_and_query = f"{path}?{version}"
        host = f"127.0.0.1:{self.server.server.port}"
        content = b"" if body is None else json.dumps(body).encode()
        headers = {**sign_headers(method, path_and_query, host, content), "content-type": "application/json"}
        return httpx.request(method, f"http://{host}{path_and_query}", content=content, headers=headers)

    def user(self, scopes: tuple[str, ...] = ("voip",)) -> tuple[str, str]:
        answer = self.api("POST", "/identities", {"createTokenWithScopes": list(scopes)}, IDENTITY_V).json()
        return answer["identity"]["id"], answer["accessToken"]["token"]

    def room(self, roster: dict[str, str], valid_from: datetime | None = None,
             valid_until: datetime | None = None) -> str:
        body: dict[str, Any] = {"participants": {raw_id: {"role": role} for raw_id, role in roster.items()}}
        if valid_from is not None:
            body["validFrom"] = valid_from.isoformat()
        if valid_until is not None:
            body["validUntil"] = valid_until.isoformat()
        answer = self.api("POST", "/rooms", body, ROOMS_V)
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])

    def ws_url(self, room_id: str) -> str:
        return f"ws://127.0.0.1:{self.server.server.port}/rooms/{room_id}/call/ws?{V}"


@pytest.fixture(scope="module")
def cast(call_server: CallServer) -> Cast:
    return Cast(call_server)


class Client:
    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws

    async def send(self, **message: Any) -> None:
        await self.ws.send(json.dumps(message))

    async def next(self, *types: str) -> dict[str, Any]:
        """The next message of one of `types` (others, such as feed announcements, are skipped)."""
        while True:
            message: dict[str, Any] = json.loads(await self.ws.recv())
            if not types or message["type"] in types:
                return message


@pytest.fixture
async def connect(cast: Cast) -> AsyncIterator[Any]:
    opened: list[websockets.ClientConnection] = []

    async def open_as(room_id: str, token: str) -> tuple[Client, dict[str, Any]]:
        ws = await websockets.connect(cast.ws_url(room_id))
        opened.append(ws)
        client = Client(ws)
        await client.send(type="join", accessToken=token)
        return client, await client.next("joined", "refused")

    yield open_as
    for ws in opened:
        await ws.close()


async def test_a_participant_on_the_roster_joins_with_its_capabilities(cast: Cast, connect: Any) -> None:
    raw_id, token = cast.user()
    room_id = cast.room({raw_id: "Attendee"})
    _, joined = await connect(room_id, token)
    assert joined["type"] == "joined"
    assert joined["participant"] == {"rawId": raw_id, "role": "Attendee"}
    assert joined["capabilities"]["unmuteMic"] is True and joined["capabilities"]["shareScreen"] is False
    call = cast.api("GET", f"/rooms/{room_id}/call").json()
    assert [(p["rawId"], p["role"]) for p in call["participants"]] == [(raw_id, "Attendee")]


async def test_refusals_carry_the_call_end_sub_codes(cast: Cast, connect: Any) -> None:
    invited, _ = cast.user()
    _, stranger_token = cast.user()
    room_id = cast.room({invited: "Presenter"})
    _, refused = await connect(room_id, stranger_token)
    assert (refused["type"], refused["code"], refused["callEndReason"]) == (
        "refused", "NotInvited", {"code": 403, "subCode": 5828})

    early, early_token = cast.user()
    later = datetime.now(UTC) + timedelta(hours=1)
    room_id = cast.room({early: "Presenter"}, valid_from=later, valid_until=later + timedelta(hours=1))
    _, refused = await connect(room_id, early_token)
    assert (refused["code"], refused["callEndReason"]) == ("RoomNotOpenYet", {"code": 403, "subCode": 5829})

    _, refused = await connect(room_id, "not-a-token")
    assert (refused["status"], refused["code"]) == (401, "InvalidAccessToken")


async def test_a_consumer_may_not_publish_and_an_attendee_may_not_share_its_screen(cast: Cast, connect: Any) -> None:
    consumer, consumer_token = cast.user()
    attendee, attendee_token = cast.user()
    room_id = cast.room({consumer: "Consumer", attendee: "Attendee"})
    client, joined = await connect(room_id, consumer_token)
    assert joined["capabilities"]["unmuteMic"] is False
    await client.send(type="publish", feed="camera", jsep={"type": "offer", "sdp": OFFER})
    refused = await client.next("refused", "answer")
    assert (refused["type"], refused["code"]) == ("refused", "Forbidden")
    assert "Consumer may not send audio" in refused["message"]

    client, _ = await connect(room_id, attendee_token)
    await client.send(type="publish", feed="screen", jsep={"type": "offer", "sdp": OFFER})
    refused = await client.next("refused", "answer")
    assert (refused["code"], "share the screen" in refused["message"]) == ("Forbidden", True)
    call = cast.api("GET", f"/rooms/{room_id}/call").json()
    assert all(p["publishes"] == [] for p in call["participants"])


async def test_janus_requests_do_not_pass_through(cast: Cast, connect: Any) -> None:
    raw_id, token = cast.user()
    room_id = cast.room({raw_id: "Presenter"})
    client, _ = await connect(room_id, token)
    await client.send(type="janus", janus="message", body={"request": "destroy", "room": 1})
    refused = await client.next("refused")
    assert refused["code"] == "UnknownRequest"


async def test_only_a_presenter_removes_a_participant_from_the_call(cast: Cast, connect: Any) -> None:
    presenter, presenter_token = cast.user()
    attendee, attendee_token = cast.user()
    other, other_token = cast.user()
    room_id = cast.room({presenter: "Presenter", attendee: "Attendee",
                         other: "Attendee"})
    boss, _ = await connect(room_id, presenter_token)
    peer, _ = await connect(room_id, attendee_token)
    target, _ = await connect(room_id, other_token)
    await peer.send(type="remove", target=other)
    refused = await peer.next("refused", "done")
    assert (refused["type"], refused["code"]) == ("refused", "Forbidden")
    await peer.send(type="mute", target=other)
    assert (await peer.next("refused", "done"))["code"] == "Forbidden"
    assert {p["rawId"] for p in cast.api("GET", f"/rooms/{room_id}/call").json()["participants"]} == {
        presenter, attendee, other}

    await boss.send(type="remove", target=other)
    assert (await boss.next("done", "refused"))["found"] is True
    ended = await target.next("ended")
    assert ended["callEndReason"]["subCode"] == 5300
    assert {p["rawId"] for p in cast.api("GET", f"/rooms/{room_id}/call").json()["participants"]} == {
        presenter, attendee}


# Changes while the call runs ------------------------------------------------------------------------------------
async def ended_of(client: Client) -> dict[str, Any]:
    async with asyncio.timeout(30):  # a guard against a hang, not a measure: the recheck runs every second
        return await client.next("ended")


def patch_roster(cast: Cast, room_id: str, changes: dict[str, Any]) -> None:
    answer = cast.api("PATCH", f"/rooms/{room_id}/participants", {"participants": changes}, ROOMS_V)
    assert answer.status_code == 200, answer.text


async def test_roster_removal_role_change_and_room_deletion_end_the_participants_call(cast: Cast,
                                                                                      connect: Any) -> None:
    removed, removed_token = cast.user()
    promoted, promoted_token = cast.user()
    room_id = cast.room({removed: "Attendee", promoted: "Consumer"})
    gone, _ = await connect(room_id, removed_token)
    changed, _ = await connect(room_id, promoted_token)
    patch_roster(cast, room_id, {removed: None, promoted: {"role": "Presenter"}})
    assert (await ended_of(gone))["callEndReason"] == {"code": 403, "subCode": 5828}
    assert (await ended_of(changed))["callEndReason"]["subCode"] == 5317
    again, joined = await connect(room_id, promoted_token)  # rejoins with the new role
    assert joined["participant"]["role"] == "Presenter"
    assert cast.api("DELETE", f"/rooms/{room_id}", version=ROOMS_V).status_code == 204
    assert (await ended_of(again))["code"] == "RoomNotFound"


async def test_at_valid_until_everyone_leaves_and_the_call_ends(cast: Cast, connect: Any) -> None:
    raw_id, token = cast.user()
    room_id = cast.room({raw_id: "Presenter"}, valid_until=datetime.now(UTC) + timedelta(seconds=3))
    client, joined = await connect(room_id, token)
    assert joined["type"] == "joined"
    assert (await ended_of(client))["callEndReason"] == {"code": 403, "subCode": 5829}
    assert cast.api("GET", f"/rooms/{room_id}/call").status_code == 404


async def test_revoked_tokens_and_a_deleted_user_leave_the_call_and_cannot_come_back(cast: Cast,
                                                                                     connect: Any) -> None:
    revoked, revoked_token = cast.user()
    deleted, deleted_token = cast.user()
    room_id = cast.room({revoked: "Attendee", deleted: "Attendee"})
    first, _ = await connect(room_id, revoked_token)
    second, _ = await connect(room_id, deleted_token)
    assert cast.api("POST", f"/identities/{revoked}/:revokeAccessTokens", version=IDENTITY_V).status_code == 204
    ended = await ended_of(first)
    assert (ended["status"], ended["code"]) == (401, "InvalidAccessToken")
    _, refused = await connect(room_id, revoked_token)
    assert refused["message"] == "The access token is not valid: it was revoked."
    assert cast.api("DELETE", f"/identities/{deleted}", version=IDENTITY_V).status_code == 204
    assert (await ended_of(second))["message"] == "The access token is not valid: its user was deleted."


# The fields of the Event Grid system event models (`AcsCallingEvent` and its subtypes in @azure/eventgrid).
CALLING_EVENT = {"startedBy", "serverCallId", "group", "room", "isTwoParty", "correlationId", "isRoomsCall"}
CALL_EVENT_FIELDS = {
    SystemEventNames.AcsCallStartedEventName: CALLING_EVENT,
    SystemEventNames.AcsCallEndedEventName: CALLING_EVENT | {"endedBy", "reason", "callDurationInSeconds"},
    SystemEventNames.AcsCallParticipantAddedEventName: CALLING_EVENT | {"user", "displayName", "participantId",
                                                                        "userAgent"},
    SystemEventNames.AcsCallParticipantRemovedEventName: CALLING_EVENT | {"user", "displayName", "participantId",
                                                                          "userAgent"},
}


def call_events(cast: Cast, room_id: str, count: int) -> list[EventGridEvent]:
    """The room's call events from `GET /events` (long-polling until `count` are there), as Event Grid parses
    them."""
    served: list[dict[str, Any]] = []
    after = ""
    types = ",".join(CALL_EVENT_FIELDS)
    for _ in range(10):
        page = cast.api("GET", "/events", version=f"{V}&roomId={room_id}&types={types}&wait=3{after}").json()
        served += page["value"]
        if len(served) >= count:
            break
        after = f"&after={served[-1]['cursor']}" if served else ""
    return [EventGridEvent.from_dict(event) for event in served]


async def test_call_events_are_in_the_event_log_as_event_grid_call_events(cast: Cast, connect: Any) -> None:
    presenter, presenter_token = cast.user()
    attendee, attendee_token = cast.user()
    room_id = cast.room({presenter: "Presenter", attendee: "Attendee"})
    first, _ = await connect(room_id, presenter_token)
    async with websockets.connect(cast.ws_url(room_id), user_agent_header="call-test/1.0") as ws:
        second = Client(ws)
        await second.send(type="join", accessToken=attendee_token, displayName="Ann")
        assert (await second.next("joined", "refused"))["type"] == "joined"
        await second.send(type="leave")
        await second.next("ended")
    await first.send(type="leave")
    await first.next("ended")
    events = call_events(cast, room_id, 6)
    names = SystemEventNames
    assert [(e.event_type, e.data["user"]["communicationIdentifier"]["rawId"] if "user" in e.data else None)
            for e in events] == [
        (names.AcsCallStartedEventName, None), (names.AcsCallParticipantAddedEventName, presenter),
        (names.AcsCallParticipantAddedEventName, attendee), (names.AcsCallParticipantRemovedEventName, attendee),
        (names.AcsCallParticipantRemovedEventName, presenter), (names.AcsCallEndedEventName, None)]
    for event in events:
        # A rooms call: `room`, and no `group`.
        assert set(event.data) == CALL_EVENT_FIELDS[SystemEventNames(event.event_type)] - {"group"}
        assert event.data["room"] == {"id": room_id} and event.data["isRoomsCall"] is True
        assert event.data["startedBy"] == {"communicationIdentifier": {
            "rawId": presenter, "kind": "communicationUser", "communicationUser": {"id": presenter}},
            "role": "Presenter"}
    assert len({(e.data["serverCallId"], e.data["correlationId"]) for e in events}) == 1
    added = events[2].data
    assert (added["user"]["role"], added["displayName"], added["userAgent"]) == ("Attendee", "Ann", "call-test/1.0")
    assert added["participantId"] == events[3].data["participantId"] != events[1].data["participantId"]
    ended = events[-1].data
    assert ended["reason"] == {"code": 0, "subCode": 0, "phrase": "AllParticipantsLeft"}
    assert ended["endedBy"]["kind"] == "MicrosoftInternal" and ended["callDurationInSeconds"] > 0
    assert cast.api("GET", f"/rooms/{room_id}/call").status_code == 404  # the last one out ended it
