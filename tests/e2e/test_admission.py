"""Admission to a room's call against a real `openrooms serve`: users and tokens from the official Identity SDK,
rooms from the official Rooms SDK, `POST /rooms/{roomId}:join` over raw HTTP, LiveKit tokens checked with
LiveKit's own verifier.

Real time allows windows that opened in the past or open in the future; a room whose window has ended cannot be
created, so "too late" and expired tokens are covered at the service level (tests/unit/test_admission.py).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.communication.identity import (
    CommunicationIdentityClient,
    CommunicationTokenScope,
    CommunicationUserIdentifier,
)
from azure.communication.rooms import ParticipantRole, RoomParticipant, RoomsClient
from livekit.api import TokenVerifier

from openrooms.service.model import Role
from tests.support import Server, running_server
from tests.unit.test_admission import expected_capabilities

API_VERSION = "2026-11-01-openrooms"
LIVEKIT_URL = "wss://livekit.openrooms.test"
LIVEKIT_KEY = "openrooms-e2e"
LIVEKIT_SECRET = "an-e2e-livekit-api-secret-of-40-characters"
SCOPES = {
    "voip": CommunicationTokenScope.VOIP,
    "voip.join": CommunicationTokenScope.VOIP_JOIN,
    "chat": CommunicationTokenScope.CHAT,
}
SDK_ROLE = {
    Role.PRESENTER: ParticipantRole.PRESENTER,
    Role.COLLABORATOR: ParticipantRole.COLLABORATOR,
    Role.ATTENDEE: ParticipantRole.ATTENDEE,
    Role.CONSUMER: ParticipantRole.CONSUMER,
}
PUBLISH_SOURCES = {
    Role.PRESENTER: {"camera", "microphone", "screen_share", "screen_share_audio"},
    Role.COLLABORATOR: {"camera", "microphone", "screen_share", "screen_share_audio"},
    Role.ATTENDEE: {"camera", "microphone"},
    Role.CONSUMER: set(),
}


@dataclass
class Member:
    user: CommunicationUserIdentifier
    tokens: dict[str, tuple[str, datetime]]  # scope name -> (token, its expiry)


@dataclass
class Cast:
    """One server with LiveKit configured, a user per role with a token per scope, and rooms at window positions."""

    server: Server
    identity: CommunicationIdentityClient
    rooms: RoomsClient
    members: dict[Role, Member]
    room_ids: dict[str, str]  # window position -> room id

    def join(self, room_id: str, token: str | None, *, api_version: str | None = API_VERSION,
             headers: dict[str, str] | None = None) -> httpx.Response:
        query = f"?api-version={api_version}" if api_version else ""
        auth = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return self.server.request("POST", f"/rooms/{room_id}:join{query}", sign=False,
                                   headers={**auth, **(headers or {})})

    def wire_room(self, room_id: str) -> dict[str, Any]:
        """The room as the Rooms API writes it (its timestamps exactly as on the wire)."""
        answer = self.server.request("GET", f"/rooms/{room_id}?api-version=2025-03-13")
        assert answer.status_code == 200
        body: dict[str, Any] = answer.json()
        return body


def new_member(identity: CommunicationIdentityClient) -> Member:
    user = identity.create_user()
    tokens = {}
    for name, scope in SCOPES.items():
        token = identity.get_token(user, scopes=[scope])
        # The SDK hands over `expiresOn` as the string it received, despite AccessToken's int annotation.
        tokens[name] = (token.token, at(str(token.expires_on)))
    return Member(user, tokens)


@pytest.fixture(scope="module")
def cast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cast]:
    flags = ("--livekit-url", LIVEKIT_URL, "--livekit-api-key", LIVEKIT_KEY, "--livekit-api-secret", LIVEKIT_SECRET)
    with running_server(tmp_path_factory.mktemp("admission"), *flags) as server:
        identity = CommunicationIdentityClient.from_connection_string(server.connection_string,
                                                                      connection_verify=server.ca)
        rooms = RoomsClient.from_connection_string(server.connection_string, connection_verify=server.ca)
        members = {role: new_member(identity) for role in Role}
        roster = [RoomParticipant(communication_identifier=m.user, role=SDK_ROLE[r]) for r, m in members.items()]
        now = datetime.now(UTC)
        windows = {
            # open now; the window ends before the tokens expire (24 h)
            "open-pstn": (now - timedelta(hours=1), now + timedelta(hours=2), True),
            # open now; the tokens expire before the window ends
            "open-no-pstn": (now - timedelta(minutes=5), now + timedelta(days=2), False),
            "not-yet-open": (now + timedelta(days=1), now + timedelta(days=2), True),
        }
        room_ids = {
            position: rooms.create_room(valid_from=start, valid_until=end, pstn_dial_out_enabled=pstn,
                                        participants=roster).id
            for position, (start, end, pstn) in windows.items()
        }
        yield Cast(server, identity, rooms, members, room_ids)


def error_of(answer: httpx.Response) -> tuple[int, str, str]:
    body = answer.json()["error"]
    assert answer.headers["x-ms-error-code"] == body["code"]
    return answer.status_code, body["code"], body["message"]


def at(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp)


@pytest.mark.parametrize("position", ["open-pstn", "open-no-pstn", "not-yet-open"])
@pytest.mark.parametrize("scope", list(SCOPES))
@pytest.mark.parametrize("role", list(Role))
def test_admission_by_role_window_and_scope(cast: Cast, role: Role, scope: str, position: str) -> None:
    member = cast.members[role]
    token, token_expires_on = member.tokens[scope]
    room_id = cast.room_ids[position]
    answer = cast.join(room_id, token)

    if scope == "chat":
        assert error_of(answer) == (403, "InsufficientScope", "The access token's scopes (chat) do not allow "
                                    "joining calls; issue a token with the scope voip or voip.join.")
        return
    room = cast.wire_room(room_id)
    if position == "not-yet-open":
        assert error_of(answer) == (
            403, "RoomNotOpenYet", f"Room {room_id} opens at {room['validFrom']} (validFrom); join from then on.")
        return

    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["roomId"] == room_id
    assert body["participant"] == {"rawId": member.user.raw_id, "role": role.value}
    assert (body["validFrom"], body["validUntil"], body["pstnDialOutEnabled"]) == (
        room["validFrom"], room["validUntil"], room["pstnDialOutEnabled"])
    capabilities = {name: (c["isPresent"], c["reason"]) for name, c in body["capabilities"].items()}
    assert capabilities == expected_capabilities(role, room["pstnDialOutEnabled"])
    grant_expires = min(at(room["validUntil"]), token_expires_on)
    assert at(body["grantExpiresAt"]) == grant_expires

    livekit = body["livekit"]
    assert (livekit["url"], livekit["room"], livekit["identity"]) == (LIVEKIT_URL, room_id, member.user.raw_id)
    assert at(livekit["expiresAt"]) == grant_expires
    claims = TokenVerifier(LIVEKIT_KEY, LIVEKIT_SECRET).verify(livekit["token"])
    video = claims.video
    assert video is not None and claims.sip is not None
    assert (claims.identity, video.room, video.room_join, video.can_subscribe) == (
        member.user.raw_id, room_id, True, True)
    assert set(video.can_publish_sources or ()) == PUBLISH_SOURCES[role]
    assert video.can_publish is bool(PUBLISH_SOURCES[role])
    assert bool(video.room_admin) is (role is Role.PRESENTER)
    assert bool(video.can_publish_data) is (role is not Role.CONSUMER)
    assert claims.sip.call is (role is Role.PRESENTER and room["pstnDialOutEnabled"])
    # Capped by the window or the token, whichever ends first: never later than the grant.
    payload = jwt_payload(livekit["token"])
    assert grant_expires - timedelta(minutes=1) < datetime.fromtimestamp(payload["exp"], UTC) <= grant_expires


def jwt_payload(token: str) -> dict[str, Any]:
    import jwt

    payload: dict[str, Any] = jwt.decode(token, LIVEKIT_SECRET, algorithms=["HS256"], issuer=LIVEKIT_KEY)
    return payload


def test_a_revoked_token_is_refused_and_a_new_one_joins(cast: Cast) -> None:
    member = new_member(cast.identity)
    room_id = cast.rooms.create_room(participants=[RoomParticipant(communication_identifier=member.user)]).id
    token, _ = member.tokens["voip"]
    assert cast.join(room_id, token).status_code == 200
    cast.identity.revoke_tokens(member.user)
    refused = cast.join(room_id, token)
    assert error_of(refused) == (401, "InvalidAccessToken", "The access token is not valid: it was revoked.")
    assert refused.headers["www-authenticate"] == 'Bearer realm="openrooms", error="invalid_token"'
    fresh = cast.identity.get_token(member.user, scopes=[CommunicationTokenScope.VOIP_JOIN])
    assert cast.join(room_id, fresh.token).json()["participant"]["role"] == "Attendee"


def test_a_deleted_user_is_refused(cast: Cast) -> None:
    member = new_member(cast.identity)
    room_id = cast.rooms.create_room(participants=[RoomParticipant(communication_identifier=member.user)]).id
    cast.identity.delete_user(member.user)
    assert error_of(cast.join(room_id, member.tokens["voip"][0])) == (
        401, "InvalidAccessToken", "The access token is not valid: its user was deleted.")


def test_a_user_not_on_the_roster_is_not_invited(cast: Cast) -> None:
    stranger = new_member(cast.identity)
    room_id = cast.room_ids["open-pstn"]
    answer = cast.join(room_id, stranger.tokens["voip"][0])
    assert error_of(answer) == (
        403, "NotInvited", f"{stranger.user.raw_id} is not a participant of room {room_id}: only users on the "
        "room's roster may join its call.")
    assert answer.json()["error"]["callEndReason"] == {"code": 403, "subCode": 5828}


def test_no_such_room(cast: Cast) -> None:
    token = cast.members[Role.PRESENTER].tokens["voip"][0]
    deleted = cast.rooms.create_room().id
    cast.rooms.delete_room(deleted)
    for room_id in (deleted, "99999999999999999"):
        assert error_of(cast.join(room_id, token)) == (
            404, "RoomNotFound", f"Room {room_id} does not exist (or was deleted or purged).")
    assert cast.join("12", token).status_code == 400


@pytest.mark.parametrize("token", ["not-a-jwt", "eyJhbGciOiJub25lIn0.e30."])
def test_a_token_that_is_no_token_of_this_server_is_refused(cast: Cast, token: str) -> None:
    status, code, _ = error_of(cast.join(cast.room_ids["open-pstn"], token))
    assert (status, code) == (401, "InvalidAccessToken")


def test_the_access_key_does_not_admit(cast: Cast) -> None:
    """An HMAC-signed request proves who runs the application, not which user joins."""
    room_id = cast.room_ids["open-pstn"]
    signed = cast.server.request("POST", f"/rooms/{room_id}:join?api-version={API_VERSION}")
    status, code, message = error_of(signed)
    assert (status, code) == (401, "InvalidAccessToken")
    assert "Authorization: Bearer <token>" in message
    assert signed.headers["www-authenticate"].startswith("Bearer ")
    assert error_of(cast.join(room_id, None))[:2] == (401, "InvalidAccessToken")


def test_join_has_its_own_api_version(cast: Cast) -> None:
    room_id = cast.room_ids["open-pstn"]
    token = cast.members[Role.ATTENDEE].tokens["voip"][0]
    missing = cast.join(room_id, token, api_version=None)
    assert error_of(missing)[:2] == (400, "MissingApiVersionParameter")
    assert missing.headers["api-supported-versions"] == API_VERSION
    rooms_version = cast.join(room_id, token, api_version="2025-03-13")
    assert error_of(rooms_version)[:2] == (400, "UnsupportedApiVersion")
    # ... and the Rooms API keeps its own versions.
    got = cast.server.request("GET", f"/rooms/{room_id}?api-version={API_VERSION}")
    assert error_of(got)[:2] == (400, "UnsupportedApiVersion")
    assert API_VERSION not in got.headers["api-supported-versions"]


def test_a_role_change_or_removal_takes_effect_at_the_next_join(cast: Cast) -> None:
    member = new_member(cast.identity)
    room_id = cast.rooms.create_room(participants=[
        RoomParticipant(communication_identifier=member.user, role=ParticipantRole.CONSUMER)]).id
    token = member.tokens["voip"][0]
    assert cast.join(room_id, token).json()["capabilities"]["unmuteMic"] == {
        "isPresent": False, "reason": "RoleRestricted"}
    cast.rooms.add_or_update_participants(room_id=room_id, participants=[
        RoomParticipant(communication_identifier=member.user, role=ParticipantRole.COLLABORATOR)])
    promoted = cast.join(room_id, token).json()
    assert promoted["participant"]["role"] == "Collaborator"
    assert promoted["capabilities"]["shareScreen"] == {"isPresent": True, "reason": "Capable"}
    cast.rooms.remove_participants(room_id=room_id, participants=[member.user])
    assert error_of(cast.join(room_id, token))[:2] == (403, "NotInvited")


def test_without_livekit_the_answer_has_no_livekit_token(https_server: Server) -> None:
    identity = CommunicationIdentityClient.from_connection_string(https_server.connection_string,
                                                                  connection_verify=https_server.ca)
    rooms = RoomsClient.from_connection_string(https_server.connection_string, connection_verify=https_server.ca)
    user, token = identity.create_user_and_token(scopes=[CommunicationTokenScope.VOIP])
    room_id = rooms.create_room(participants=[
        RoomParticipant(communication_identifier=user, role=ParticipantRole.PRESENTER)]).id
    answer = https_server.request("POST", f"/rooms/{room_id}:join?api-version={API_VERSION}", sign=False,
                                  headers={"Authorization": f"Bearer {token.token}"})
    assert answer.status_code == 200
    assert answer.json()["participant"]["role"] == "Presenter"
    assert "livekit" not in answer.json()


@pytest.mark.parametrize(("flags", "message"), [
    (["--livekit-url", LIVEKIT_URL], "--livekit-url, --livekit-api-key and --livekit-api-secret go together."),
    (["--livekit-url", LIVEKIT_URL, "--livekit-api-key", "k", "--livekit-api-secret", "short"],
     "--livekit-api-secret must be at least 32 characters (LiveKit refuses shorter secrets)."),
])
def test_serve_refuses_an_incomplete_livekit_configuration(tmp_path: Path, flags: list[str], message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "openrooms", "serve", "--location", str(tmp_path), *flags],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {message}"
