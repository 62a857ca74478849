"""Admission to a room's call: the permission matrix, every refusal, the grant's expiry, and the LiveKit token
(in-memory store, fixed clock: the window's end and token expiry are reached by moving the clock)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
from livekit.api import TokenVerifier

from openrooms.http import versions
from openrooms.http.pipeline import Credential, credential_for
from openrooms.livekit import LiveKitBridge
from openrooms.service import timestamps
from openrooms.service.admission import (
    PERMISSIONS,
    Admission,
    AdmissionService,
    Capability,
    CapabilityState,
    Reason,
    capabilities_of,
    permission_table_markdown,
)
from openrooms.service.clock import TICKS_PER_SECOND, FixedClock
from openrooms.service.errors import ServiceError
from openrooms.service.identity import IdentityService
from openrooms.service.model import CommunicationUser, CreateRoom, Role, Room, UpdateRoom
from openrooms.service.rooms import RoomsService, Upsert
from openrooms.store.sqlite import SqliteStore

START = 1_790_000_000 * TICKS_PER_SECOND
MINUTE = 60 * TICKS_PER_SECOND
HOUR = 60 * MINUTE
DOC = Path(__file__).parents[2] / "docs" / "admission.md"
LIVEKIT_KEY = "openrooms-test-key"
LIVEKIT_SECRET = "a-livekit-api-secret-of-32-chars-or-more"

# The ACS Rooms permission matrix, as the ACS documentation states it: Presenter everything; Collaborator mic,
# camera and screen share; Attendee mic and camera; Consumer receives only. Dial-out also needs the room's
# pstnDialOutEnabled. (Written out here, not read from the code, so that a change of the code's matrix fails.)
EVERYDAY = {Capability.TURN_VIDEO_ON, Capability.UNMUTE_MIC, Capability.RAISE_HAND, Capability.REACTION,
            Capability.CHAT}
ACS_ROLE_CAPABILITIES: dict[Role, set[Capability]] = {
    Role.PRESENTER: set(Capability),
    Role.COLLABORATOR: EVERYDAY | {Capability.SHARE_SCREEN},
    Role.ATTENDEE: EVERYDAY,
    Role.CONSUMER: set(),
}


def expected_capabilities(role: Role, pstn_dial_out_enabled: bool) -> dict[str, tuple[bool, str]]:
    """What the join answer must say for `role`: present or not, and why."""
    expected = {}
    for capability in Capability:
        if capability not in ACS_ROLE_CAPABILITIES[role]:
            expected[capability.value] = (False, "RoleRestricted")
        elif capability is Capability.ADD_PHONE_NUMBER and not pstn_dial_out_enabled:
            expected[capability.value] = (False, "MeetingRestricted")
        else:
            expected[capability.value] = (True, "Capable")
    return expected


def as_wire(capabilities: dict[Capability, CapabilityState]) -> dict[str, tuple[bool, str]]:
    return {c.value: (s.is_present, s.reason.value) for c, s in capabilities.items()}


# The matrix ----------------------------------------------------------------------------------------------------
def test_docs_show_the_matrix_the_code_enforces() -> None:
    doc = DOC.read_text()
    match = re.search(r"<!-- permission-matrix:start -->\n(.*?)<!-- permission-matrix:end -->", doc, re.DOTALL)
    assert match is not None, "docs/admission.md lost its permission-matrix markers"
    assert match.group(1) == permission_table_markdown()


def test_every_capability_is_in_the_matrix_once() -> None:
    assert [p.capability for p in PERMISSIONS] == list(Capability)


@pytest.mark.parametrize("pstn", [True, False], ids=["pstn-on", "pstn-off"])
@pytest.mark.parametrize("role", list(Role))
def test_matrix_is_the_acs_matrix(role: Role, pstn: bool) -> None:
    room = Room("12345678901234567", START, START, START + HOUR, pstn_dial_out_enabled=pstn)
    assert as_wire(capabilities_of(role, room)) == expected_capabilities(role, pstn)


# Routing: which API version family and which credential the join path needs ------------------------------------
def test_the_join_path_has_its_own_version_family_and_needs_a_user_token() -> None:
    assert versions.family_for_path("/rooms/12345678901234567:join") is versions.ADMISSION
    assert versions.family_for_path("/rooms/12345678901234567") is versions.ROOMS
    assert versions.family_for_path("/rooms") is versions.ROOMS
    assert credential_for("POST", "/rooms/12345678901234567:join") is Credential.USER_TOKEN
    assert credential_for("GET", "/rooms/12345678901234567:join") is Credential.ACCESS_KEY
    assert credential_for("POST", "/rooms/12345678901234567/participants:join") is Credential.ACCESS_KEY
    assert credential_for("POST", "/rooms") is Credential.ACCESS_KEY
    assert credential_for("GET", "/healthz") is Credential.NONE


# Admission -----------------------------------------------------------------------------------------------------
@dataclass
class World:
    clock: FixedClock
    identity: IdentityService
    rooms: RoomsService
    admission: AdmissionService
    store: SqliteStore

    async def user(self, scopes: Sequence[str] = ("voip",), minutes: int = 1440) -> tuple[str, str]:
        user, token = await self.identity.create_user(scopes, minutes)
        assert token is not None
        return user.raw_id, token.token

    async def room(self, roster: dict[str, Role], valid_from: int | None = None, valid_until: int | None = None,
                   pstn: bool = True) -> str:
        command = CreateRoom(valid_from, valid_until, pstn, {raw_id: role.value for raw_id, role in roster.items()})
        created = await self.rooms.rooms_create(command, list(Role))
        return created.room_id


@pytest.fixture
async def world() -> AsyncIterator[World]:
    store = SqliteStore.open(None)
    clock = FixedClock(START)
    identity = IdentityService(store, clock)
    yield World(clock, identity, RoomsService(store, clock), AdmissionService(identity, store, clock), store)
    await store.close()


async def refusal(world: World, token: str, room_id: str) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        await world.admission.admit(token, room_id)
    return caught.value


@pytest.mark.parametrize("pstn", [True, False], ids=["pstn-on", "pstn-off"])
@pytest.mark.parametrize("role", list(Role))
async def test_a_participant_inside_the_window_is_admitted_with_its_role(world: World, role: Role,
                                                                        pstn: bool) -> None:
    raw_id, token = await world.user()
    room_id = await world.room({raw_id: role}, valid_until=START + 2 * HOUR, pstn=pstn)
    admission = await world.admission.admit(token, room_id)
    assert (admission.room.id, admission.participant.raw_id, admission.participant.role) == (room_id, raw_id, role)
    assert as_wire(dict(admission.capabilities)) == expected_capabilities(role, pstn)


@pytest.mark.parametrize("scopes", [["voip"], ["voip.join"], ["chat", "voip.join"], ["voip", "chat"]])
async def test_voip_and_voip_join_tokens_join(world: World, scopes: list[str]) -> None:
    raw_id, token = await world.user(scopes)
    room_id = await world.room({raw_id: Role.ATTENDEE})
    assert (await world.admission.admit(token, room_id)).participant.raw_id == raw_id


@pytest.mark.parametrize("scopes", [["chat"], ["chat.join"], ["chat.join.limited"]])
async def test_tokens_without_a_calling_scope_are_refused(world: World, scopes: list[str]) -> None:
    raw_id, token = await world.user(scopes)
    room_id = await world.room({raw_id: Role.PRESENTER})
    error = await refusal(world, token, room_id)
    assert (error.status, error.code) == (403, "InsufficientScope")
    assert error.message == (f"The access token's scopes ({', '.join(scopes)}) do not allow joining calls; "
                             "issue a token with the scope voip or voip.join.")


async def test_the_grant_ends_with_the_room_when_the_room_ends_first(world: World) -> None:
    raw_id, token = await world.user(minutes=1440)
    room_id = await world.room({raw_id: Role.PRESENTER}, valid_from=START - HOUR, valid_until=START + 2 * HOUR)
    assert (await world.admission.admit(token, room_id)).grant_expires_at == START + 2 * HOUR


async def test_the_grant_ends_with_the_token_when_the_token_expires_first(world: World) -> None:
    raw_id, token = await world.user(minutes=60)
    room_id = await world.room({raw_id: Role.PRESENTER}, valid_until=START + 5 * HOUR)
    assert (await world.admission.admit(token, room_id)).grant_expires_at == START + HOUR


async def test_before_valid_from_the_room_is_not_open_yet(world: World) -> None:
    raw_id, token = await world.user()
    room_id = await world.room({raw_id: Role.PRESENTER}, valid_from=START + HOUR, valid_until=START + 2 * HOUR)
    error = await refusal(world, token, room_id)
    assert (error.status, error.code, error.target) == (403, "RoomNotOpenYet", "validFrom")
    assert error.message == f"Room {room_id} opens at 2026-09-21T15:13:20+00:00 (validFrom); join from then on."
    world.clock.advance(HOUR - 1)
    assert (await refusal(world, token, room_id)).code == "RoomNotOpenYet"
    world.clock.advance(1)  # validFrom itself is inside the window
    assert (await world.admission.admit(token, room_id)).participant.role is Role.PRESENTER


async def test_the_refusal_writes_validfrom_as_the_room_does(world: World) -> None:
    raw_id, token = await world.user()
    valid_from = START + HOUR + 1_234_500  # a fraction of a second, with a trailing zero to trim
    room_id = await world.room({raw_id: Role.PRESENTER}, valid_from=valid_from, valid_until=START + 2 * HOUR)
    assert timestamps.format(valid_from) == "2026-09-21T15:13:20.12345+00:00"
    assert (await refusal(world, token, room_id)).message == (
        f"Room {room_id} opens at {timestamps.format(valid_from)} (validFrom); join from then on.")


async def test_from_valid_until_on_the_room_has_ended(world: World) -> None:
    raw_id, token = await world.user()
    room_id = await world.room({raw_id: Role.ATTENDEE}, valid_from=START, valid_until=START + 10 * MINUTE)
    world.clock.advance(10 * MINUTE - 1)
    assert (await world.admission.admit(token, room_id)).grant_expires_at == START + 10 * MINUTE
    world.clock.advance(1)  # validUntil is the first instant outside the window
    error = await refusal(world, token, room_id)
    assert (error.status, error.code, error.target) == (403, "RoomEnded", "validUntil")
    assert error.message == (f"Room {room_id} ended at 2026-09-21T14:23:20+00:00 (validUntil); "
                             "its call can no longer be joined.")


async def test_an_expired_token_is_refused(world: World) -> None:
    raw_id, token = await world.user(minutes=60)
    room_id = await world.room({raw_id: Role.PRESENTER})
    world.clock.advance(HOUR)
    error = await refusal(world, token, room_id)
    assert (error.status, error.code, error.message) == (
        401, "InvalidAccessToken", "The access token is not valid: it has expired.")


async def test_a_revoked_token_is_refused_and_a_new_one_joins(world: World) -> None:
    raw_id, token = await world.user()
    room_id = await world.room({raw_id: Role.PRESENTER})
    await world.identity.revoke_tokens(raw_id)
    error = await refusal(world, token, room_id)
    assert (error.status, error.code, error.message) == (
        401, "InvalidAccessToken", "The access token is not valid: it was revoked.")
    world.clock.advance(1)
    fresh = await world.identity.issue_token(raw_id, ["voip"])
    assert (await world.admission.admit(fresh.token, room_id)).participant.raw_id == raw_id


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c"])
async def test_a_malformed_token_is_refused(world: World, token: str) -> None:
    room_id = await world.room({})
    assert (await refusal(world, token, room_id)).status == 401


async def test_a_token_of_another_server_is_refused(world: World) -> None:
    other_store = SqliteStore.open(None)
    try:
        other = IdentityService(other_store, world.clock)
        _, token = await other.create_user(["voip"])
        assert token is not None
        error = await refusal(world, token.token, await world.room({}))
        assert (error.status, error.code) == (401, "InvalidAccessToken")
    finally:
        await other_store.close()


async def test_a_deleted_user_is_refused(world: World) -> None:
    raw_id, token = await world.user()
    room_id = await world.room({raw_id: Role.PRESENTER})
    await world.identity.delete_user(raw_id)
    assert (await refusal(world, token, room_id)).message == "The access token is not valid: its user was deleted."


async def test_a_user_not_on_the_roster_is_not_invited(world: World) -> None:
    invited, _ = await world.user()
    stranger, token = await world.user()
    room_id = await world.room({invited: Role.PRESENTER})
    error = await refusal(world, token, room_id)
    assert (error.status, error.code) == (403, "NotInvited")
    assert error.message == (f"{stranger} is not a participant of room {room_id}: only users on the room's roster "
                             "may join its call.")


async def test_no_such_room(world: World) -> None:
    _, token = await world.user()
    room_id = await world.room({})
    await world.rooms.rooms_delete(room_id)
    for missing in (room_id, "12345678901234567"):
        error = await refusal(world, token, missing)
        assert (error.status, error.code, error.message) == (
            404, "RoomNotFound", f"Room {missing} does not exist (or was deleted or purged).")


async def test_a_malformed_room_id_is_a_bad_request(world: World) -> None:
    _, token = await world.user()
    assert (await refusal(world, token, "12")).status == 400


async def test_token_is_checked_before_the_room(world: World) -> None:
    """A caller without a valid token learns nothing about rooms."""
    error = await refusal(world, "not-a-jwt", "12345678901234567")
    assert error.status == 401


async def test_a_role_change_or_removal_takes_effect_at_the_next_admission(world: World) -> None:
    raw_id, token = await world.user()
    room_id = await world.room({raw_id: Role.CONSUMER})
    assert not (await world.admission.admit(token, room_id)).has(Capability.UNMUTE_MIC)
    await world.rooms.participants_update(room_id, {raw_id: Upsert("Presenter")}, list(Role))
    promoted = await world.admission.admit(token, room_id)
    assert (promoted.participant.role, promoted.has(Capability.MUTE_OTHERS)) == (Role.PRESENTER, True)
    await world.rooms.participants_update(room_id, {raw_id: None}, list(Role))
    assert (await refusal(world, token, room_id)).code == "NotInvited"


async def test_a_room_setting_change_takes_effect_at_the_next_admission(world: World) -> None:
    raw_id, token = await world.user()
    room_id = await world.room({raw_id: Role.PRESENTER}, pstn=False)
    assert (await world.admission.admit(token, room_id)).capabilities[Capability.ADD_PHONE_NUMBER] == \
        CapabilityState(False, Reason.MEETING_RESTRICTED)
    await world.rooms.rooms_update(room_id, UpdateRoom(pstn_dial_out_enabled=True))
    assert (await world.admission.admit(token, room_id)).has(Capability.ADD_PHONE_NUMBER)


async def test_the_roster_lookup_finds_ids_among_near_neighbours(world: World) -> None:
    """Raw ids that differ only in their last characters, more of them than one lookup step reads."""
    base = f"8:acs:{await world.identity.resource_id()}_neighbour"  # users of this resource get tokens
    on_roster = [base + suffix for suffix in ("", "0", "00", "01", "1", *(f"0{i:02d}" for i in range(20)), "2")]
    off_roster = [base + suffix for suffix in ("000x", "02", "1x", "3")]
    for raw_id in {*on_roster, *off_roster}:
        await world.store.insert_user(CommunicationUser(raw_id, START))
    room_id = await world.room(dict.fromkeys(on_roster, Role.ATTENDEE))
    for raw_id in on_roster:
        token = await world.identity.issue_token(raw_id, ["voip"])
        assert (await world.admission.admit(token.token, room_id)).participant.raw_id == raw_id
    for raw_id in off_roster:
        token = await world.identity.issue_token(raw_id, ["voip"])
        assert (await refusal(world, token.token, room_id)).code == "NotInvited"


# LiveKit ---------------------------------------------------------------------------------------------------------
async def admitted(world: World, role: Role, pstn: bool, valid_until: int = START + 2 * HOUR) -> Admission:
    raw_id, token = await world.user()
    room_id = await world.room({raw_id: role}, valid_until=valid_until, pstn=pstn)
    return await world.admission.admit(token, room_id)


PUBLISH_SOURCES = {
    Role.PRESENTER: {"camera", "microphone", "screen_share", "screen_share_audio"},
    Role.COLLABORATOR: {"camera", "microphone", "screen_share", "screen_share_audio"},
    Role.ATTENDEE: {"camera", "microphone"},
    Role.CONSUMER: set(),
}


@pytest.mark.parametrize("pstn", [True, False], ids=["pstn-on", "pstn-off"])
@pytest.mark.parametrize("role", list(Role))
async def test_livekit_grants_follow_the_role(world: World, role: Role, pstn: bool) -> None:
    admission = await admitted(world, role, pstn)
    grant = LiveKitBridge("wss://livekit.test", LIVEKIT_KEY, LIVEKIT_SECRET, world.clock).grant(admission)
    claims = TokenVerifier(LIVEKIT_KEY, LIVEKIT_SECRET).verify(grant.token)
    video = claims.video
    assert video is not None and claims.sip is not None
    assert (claims.identity, video.room, video.room_join) == (admission.participant.raw_id, admission.room.id, True)
    assert video.can_subscribe is True
    assert video.can_publish is (role is not Role.CONSUMER)
    assert set(video.can_publish_sources or ()) == PUBLISH_SOURCES[role]
    assert bool(video.can_publish_data) is (role is not Role.CONSUMER)
    assert bool(video.room_admin) is (role is Role.PRESENTER)
    assert claims.sip.call is (role is Role.PRESENTER and pstn)
    assert claims.attributes == {"acs.role": role.value}


async def test_livekit_token_lives_until_the_grant_expires(world: World) -> None:
    admission = await admitted(world, Role.ATTENDEE, True, valid_until=START + 30 * MINUTE)
    grant = LiveKitBridge("wss://livekit.test", LIVEKIT_KEY, LIVEKIT_SECRET, world.clock).grant(admission)
    assert grant.expires_at == admission.grant_expires_at == START + 30 * MINUTE
    # LiveKit's library dates tokens by the wall clock; their lifetime is the time left in the grant.
    payload = jwt.decode(grant.token, LIVEKIT_SECRET, algorithms=["HS256"], issuer=LIVEKIT_KEY)
    assert payload["exp"] - payload["nbf"] in (30 * 60 - 1, 30 * 60)


async def test_livekit_token_of_another_secret_does_not_verify(world: World) -> None:
    admission = await admitted(world, Role.ATTENDEE, True)
    grant = LiveKitBridge("wss://livekit.test", LIVEKIT_KEY, LIVEKIT_SECRET, world.clock).grant(admission)
    with pytest.raises(jwt.InvalidSignatureError):
        TokenVerifier(LIVEKIT_KEY, "another-livekit-api-secret-32-chars-long").verify(grant.token)
