"""Admission to a room's call: may this user join this room now, and with which capabilities?

An openrooms extension (ACS enforces this inside its calling service; off Azure nobody does). The user proves who
it is with its ACS access token; the room's roster gives its role, the room's window says when, and the permission
matrix below says what the role may do. `docs/admission.md` shows the matrix; a test regenerates that table from
`PERMISSIONS` and compares, so the two cannot drift apart.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from openrooms.events import build as events
from openrooms.events.types import NewEvent
from openrooms.service import errors, ids, timestamps
from openrooms.service.clock import Clock
from openrooms.service.identity import IdentityService, VerifiedToken
from openrooms.service.model import Participant, Role, Room

# Token scopes that allow joining a call (`voip.join` joins existing calls only, and a room call is one).
JOIN_SCOPES = ("voip", "voip.join")
# Roles in the order the ACS documentation lists them, strongest first.
ROLES = (Role.PRESENTER, Role.COLLABORATOR, Role.ATTENDEE, Role.CONSUMER)


class Capability(enum.StrEnum):
    """Capability names of the ACS Calling SDK's capabilities feature (`ParticipantCapabilityType`)."""

    TURN_VIDEO_ON = "turnVideoOn"
    UNMUTE_MIC = "unmuteMic"
    SHARE_SCREEN = "shareScreen"
    RAISE_HAND = "raiseHand"
    REACTION = "reaction"
    CHAT = "chat"
    MUTE_OTHERS = "muteOthers"
    REMOVE_PARTICIPANT = "removeParticipant"
    SPOTLIGHT_PARTICIPANT = "spotlightParticipant"
    HANG_UP_FOR_EVERYONE = "hangUpForEveryOne"
    ADD_PHONE_NUMBER = "addPhoneNumber"


class Reason(enum.StrEnum):
    """Why a capability is present or not: values of the ACS Calling SDK's `CapabilityResolutionReason`."""

    CAPABLE = "Capable"
    ROLE_RESTRICTED = "RoleRestricted"  # the participant's role does not have it
    MEETING_RESTRICTED = "MeetingRestricted"  # the role has it, but the room has it turned off


class RoomSetting(enum.StrEnum):
    """Room settings that can turn a capability off for every role (named as on the wire)."""

    PSTN_DIAL_OUT_ENABLED = "pstnDialOutEnabled"


@dataclass(frozen=True, slots=True)
class Permission:
    capability: Capability
    description: str
    roles: frozenset[Role]
    requires: RoomSetting | None = None  # the room setting that must be on, for any role


_P, _COL, _A, _CON = Role.PRESENTER, Role.COLLABORATOR, Role.ATTENDEE, Role.CONSUMER

# THE permission matrix: which roles have which capability. Consumers only receive audio, video and screen share.
PERMISSIONS: tuple[Permission, ...] = (
    Permission(Capability.TURN_VIDEO_ON, "turn their camera on", frozenset({_P, _COL, _A})),
    Permission(Capability.UNMUTE_MIC, "unmute their microphone", frozenset({_P, _COL, _A})),
    Permission(Capability.SHARE_SCREEN, "share their screen", frozenset({_P, _COL})),
    Permission(Capability.RAISE_HAND, "raise their hand", frozenset({_P, _COL, _A})),
    Permission(Capability.REACTION, "send reactions", frozenset({_P, _COL, _A})),
    Permission(Capability.CHAT, "send chat messages in the call", frozenset({_P, _COL, _A})),
    Permission(Capability.MUTE_OTHERS, "mute other participants", frozenset({_P})),
    Permission(Capability.REMOVE_PARTICIPANT, "remove participants from the call", frozenset({_P})),
    Permission(Capability.SPOTLIGHT_PARTICIPANT, "spotlight participants", frozenset({_P})),
    Permission(Capability.HANG_UP_FOR_EVERYONE, "end the call for everyone", frozenset({_P})),
    Permission(Capability.ADD_PHONE_NUMBER, "dial out to phone numbers (PSTN)", frozenset({_P}),
               requires=RoomSetting.PSTN_DIAL_OUT_ENABLED),
)


@dataclass(frozen=True, slots=True)
class CapabilityState:
    """As the ACS Calling SDK reports a capability: present or not, and why."""

    is_present: bool
    reason: Reason


def room_setting(room: Room, setting: RoomSetting) -> bool:
    match setting:
        case RoomSetting.PSTN_DIAL_OUT_ENABLED:
            return room.pstn_dial_out_enabled


def capabilities_of(role: Role, room: Room) -> dict[Capability, CapabilityState]:
    """Every capability of the matrix, resolved for `role` in `room`, in the matrix's order."""
    resolved = {}
    for permission in PERMISSIONS:
        if role not in permission.roles:
            state = CapabilityState(False, Reason.ROLE_RESTRICTED)
        elif permission.requires is not None and not room_setting(room, permission.requires):
            state = CapabilityState(False, Reason.MEETING_RESTRICTED)
        else:
            state = CapabilityState(True, Reason.CAPABLE)
        resolved[permission.capability] = state
    return resolved


def permission_table_markdown() -> str:
    """The matrix as the Markdown table of `docs/admission.md` (a test keeps the doc equal to this)."""
    lines = [
        "| capability | what it allows | " + " | ".join(role.value for role in ROLES) + " |",
        "|---|---|" + "---|" * len(ROLES),
    ]
    for permission in PERMISSIONS:
        marks = []
        for role in ROLES:
            mark = "✔" if role in permission.roles else "—"
            if role in permission.roles and permission.requires is not None:
                mark += f" (if `{permission.requires}`)"
            marks.append(mark)
        lines.append(f"| `{permission.capability}` | {permission.description} | " + " | ".join(marks) + " |")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class Admission:
    """A yes: who joins which room, as what, able to do what, and until when the answer holds."""

    room: Room
    participant: Participant
    capabilities: Mapping[Capability, CapabilityState]
    # min(room's validUntil, token's expiry): after it, ask again.
    grant_expires_at: int

    def has(self, capability: Capability) -> bool:
        return self.capabilities[capability].is_present


class RosterStore(Protocol):
    """What admission reads of the room store."""

    async def get_room(self, room_id: str) -> Room | None: ...

    async def get_participant(self, room_id: str, raw_id: str) -> Participant | None: ...

    async def append_events(self, events: Sequence[NewEvent]) -> None: ...


class AdmissionService:
    def __init__(self, identity: IdentityService, store: RosterStore, clock: Clock) -> None:
        self._identity = identity
        self._store = store
        self._clock = clock

    async def admit(self, access_token: str, room_id: str) -> Admission:
        """Admit the token's user to the room's call, or raise the refusal (checked in this order: token 401,
        scope 403, room id 400, room 404, roster 403, window 403). Each answer to a verified token is recorded in
        the event log (JoinAdmitted, or JoinRefused with the reason); refusals of tokens that do not verify, and
        of malformed room ids, are not: anyone could fill the log with them."""
        token = await self._identity.verify_token(access_token)
        try:
            admission = await self._decide(token, room_id)
        except errors.ServiceError as exc:
            if _well_formed(room_id):
                await self._store.append_events([events.join_refused(
                    room_id, token.raw_id, exc.status, exc.code, exc.message, self._clock.now())])
            raise
        await self._store.append_events([events.join_admitted(room_id, admission.participant, self._clock.now())])
        return admission

    async def _decide(self, token: VerifiedToken, room_id: str) -> Admission:
        if not any(scope in JOIN_SCOPES for scope in token.scopes):
            raise errors.admission_scope_insufficient(token.scopes, JOIN_SCOPES)
        ids.check_room_id(room_id)
        room = await self._store.get_room(room_id)
        if room is None:
            raise errors.admission_room_not_found(room_id)
        participant = await self._store.get_participant(room_id, token.raw_id)
        if participant is None:
            raise errors.admission_not_invited(token.raw_id, room_id)
        now = self._clock.now()
        if now < room.valid_from:
            raise errors.admission_room_not_open(room_id, timestamps.format(room.valid_from))
        if now >= room.valid_until:
            raise errors.admission_room_ended(room_id, timestamps.format(room.valid_until))
        return Admission(
            room=room,
            participant=participant,
            capabilities=capabilities_of(participant.role, room),
            grant_expires_at=min(room.valid_until, token.expires_at),
        )


def _well_formed(room_id: str) -> bool:
    try:
        ids.check_room_id(room_id)
    except errors.ServiceError:
        return False
    return True
