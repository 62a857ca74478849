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

from openrooms.events.types import NewEvent
from openrooms.service import errors, events, ids, timestamps
from openrooms.service.clock import Clock
from openrooms.service.identity import IdentityService, VerifiedToken
from openrooms.service.model import Participant, Role, Room

# Token scopes that allow joining a call (`voip.join` joins existing calls only, and a room call is one).
JOIN_SCOPES = ("voip", "voip.join")
# Communication Services users (public cloud): `8:acs:<resource id>_<user>`.
ACS_USER_PREFIX = "8:acs:"
# Roles in the order the ACS documentation lists them, strongest first.
ROLES = (Role.PRESENTER, Role.COLLABORATOR, Role.ATTENDEE, Role.CONSUMER)


class Capability(enum.StrEnum):
    """Every name of the ACS Calling SDK's `ParticipantCapabilityName` (`@azure/communication-calling` 2.0.0),
    in the SDK's order."""

    TURN_VIDEO_ON = "turnVideoOn"
    UNMUTE_MIC = "unmuteMic"
    SHARE_SCREEN = "shareScreen"
    REMOVE_PARTICIPANT = "removeParticipant"
    HANG_UP_FOR_EVERYONE = "hangUpForEveryOne"
    ADD_COMMUNICATION_USER = "addCommunicationUser"
    ADD_TEAMS_USER = "addTeamsUser"
    ADD_PHONE_NUMBER = "addPhoneNumber"
    MANAGE_LOBBY = "manageLobby"
    SPOTLIGHT_PARTICIPANT = "spotlightParticipant"
    REMOVE_PARTICIPANTS_SPOTLIGHT = "removeParticipantsSpotlight"
    BLUR_BACKGROUND = "blurBackground"
    START_LIVE_MEETING_CAPTIONS = "startLiveMeetingCaptions"
    START_LIVE_CALLING_CAPTIONS = "startLiveCallingCaptions"
    SET_CAPTION_LANGUAGE = "setCaptionLanguage"
    RAISE_HAND = "raiseHand"
    PSTN_DIAL_OUT = "pstnDialOut"
    MUTE_OTHERS = "muteOthers"
    USE_REACTIONS = "useReactions"
    VIEW_ATTENDEE_NAMES = "viewAttendeeNames"
    START_TOGETHER_MODE = "startTogetherMode"
    JOIN_BREAKOUT_ROOMS = "joinBreakoutRooms"
    FORBID_OTHERS_AUDIO = "forbidOthersAudio"
    FORBID_OTHERS_VIDEO = "forbidOthersVideo"
    REAL_TIME_TEXT = "realTimeText"


class Reason(enum.StrEnum):
    """Why a capability is present or not: values of the ACS Calling SDK's `CapabilityResolutionReason`."""

    CAPABLE = "Capable"
    ROLE_RESTRICTED = "RoleRestricted"  # the participant's role does not have it
    MEETING_RESTRICTED = "MeetingRestricted"  # the role has it, but the room has it turned off
    NOT_APPLICABLE = "CapabilityNotApplicableForTheCallType"  # a room call never has it (a Teams meeting feature)
    FEATURE_NOT_SUPPORTED = "FeatureNotSupported"  # a room call never has it here (openrooms has no such thing)


class Rule(enum.StrEnum):
    """Where a row of the matrix comes from (the last column of docs/admission.md's table)."""

    ACS = "ACS"  # the ACS Rooms concepts page's role table
    POLICY = "openrooms policy"  # ACS documents no per-role rule; openrooms decides
    NEVER = "never in a room call"


class RoomSetting(enum.StrEnum):
    """Room settings that can turn a capability off for every role (named as on the wire)."""

    PSTN_DIAL_OUT_ENABLED = "pstnDialOutEnabled"


@dataclass(frozen=True, slots=True)
class Permission:
    capability: Capability
    description: str
    roles: frozenset[Role]
    requires: RoomSetting | None = None  # the room setting that must be on, for any role
    rule: Rule = Rule.ACS
    # For a capability no role has in a room call: the reason the SDK gives (and `roles` is empty).
    never: Reason | None = None


_P, _COL, _A, _CON = Role.PRESENTER, Role.COLLABORATOR, Role.ATTENDEE, Role.CONSUMER
_SENDERS = frozenset({_P, _COL, _A})
_ALL = frozenset(Role)
_NONE: frozenset[Role] = frozenset()


def _never(capability: Capability, description: str, reason: Reason = Reason.NOT_APPLICABLE) -> Permission:
    return Permission(capability, description, _NONE, rule=Rule.NEVER, never=reason)


# THE permission matrix: which roles have which capability, one row per name of the SDK's list, in its order.
# Consumers only receive audio, video and screen share.
PERMISSIONS: tuple[Permission, ...] = (
    Permission(Capability.TURN_VIDEO_ON, "turn their camera on", _SENDERS),
    Permission(Capability.UNMUTE_MIC, "unmute their microphone", _SENDERS),
    Permission(Capability.SHARE_SCREEN, "share their screen", frozenset({_P, _COL})),
    Permission(Capability.REMOVE_PARTICIPANT, "remove participants from the call", frozenset({_P})),
    _never(Capability.HANG_UP_FOR_EVERYONE,
           "end the call for everyone (not supported in rooms: the application's server ends a room's call)"),
    Permission(Capability.ADD_COMMUNICATION_USER, "add Communication Services users to the call", frozenset({_P})),
    _never(Capability.ADD_TEAMS_USER, "add Teams users (openrooms has no Teams identities)",
           Reason.FEATURE_NOT_SUPPORTED),
    Permission(Capability.ADD_PHONE_NUMBER, "add phone numbers to the call (PSTN)", frozenset({_P}),
               requires=RoomSetting.PSTN_DIAL_OUT_ENABLED),
    _never(Capability.MANAGE_LOBBY, "manage a lobby (Teams meetings; a room has no lobby)"),
    Permission(Capability.SPOTLIGHT_PARTICIPANT, "spotlight participants", frozenset({_P}), rule=Rule.POLICY),
    Permission(Capability.REMOVE_PARTICIPANTS_SPOTLIGHT, "remove a participant's spotlight", frozenset({_P}),
               rule=Rule.POLICY),
    Permission(Capability.BLUR_BACKGROUND, "blur their camera's background", _SENDERS, rule=Rule.POLICY),
    _never(Capability.START_LIVE_MEETING_CAPTIONS, "start live captions in Teams meetings"),
    Permission(Capability.START_LIVE_CALLING_CAPTIONS, "start live captions in the call", _SENDERS,
               rule=Rule.POLICY),
    Permission(Capability.SET_CAPTION_LANGUAGE, "set the captions' language", _SENDERS, rule=Rule.POLICY),
    Permission(Capability.RAISE_HAND, "raise their hand", _SENDERS, rule=Rule.POLICY),
    Permission(Capability.PSTN_DIAL_OUT, "dial out to phone numbers (PSTN)", frozenset({_P}),
               requires=RoomSetting.PSTN_DIAL_OUT_ENABLED),
    Permission(Capability.MUTE_OTHERS, "mute other participants", frozenset({_P})),
    Permission(Capability.USE_REACTIONS, "send reactions", _SENDERS, rule=Rule.POLICY),
    Permission(Capability.VIEW_ATTENDEE_NAMES, "see the other participants' names", _ALL),
    _never(Capability.START_TOGETHER_MODE, "start together mode (Teams meetings)"),
    _never(Capability.JOIN_BREAKOUT_ROOMS, "join breakout rooms (Teams meetings)"),
    _never(Capability.FORBID_OTHERS_AUDIO, "forbid others' audio (Teams meetings)"),
    _never(Capability.FORBID_OTHERS_VIDEO, "forbid others' video (Teams meetings)"),
    Permission(Capability.REAL_TIME_TEXT, "send real-time text", _SENDERS, rule=Rule.POLICY),
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
        if permission.never is not None:
            state = CapabilityState(False, permission.never)
        elif role not in permission.roles:
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
        "| capability | what it allows | " + " | ".join(role.value for role in ROLES) + " | rule |",
        "|---|---|" + "---|" * (len(ROLES) + 1),
    ]
    for permission in PERMISSIONS:
        marks = []
        for role in ROLES:
            mark = "✔" if role in permission.roles else "—"
            if permission.never is not None:
                mark = f"— (`{permission.never}`)"
            if role in permission.roles and permission.requires is not None:
                mark += f" (if `{permission.requires}`)"
            marks.append(mark)
        lines.append(f"| `{permission.capability}` | {permission.description} | " + " | ".join(marks)
                     + f" | {permission.rule} |")
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
        Communication Services user 403/5830, scope 403, room id 400, room 404, roster 403/5828, window 403/5829).
        Each answer to a verified token is recorded in the event log (JoinAdmitted, or JoinRefused with the reason);
        refusals of tokens that do not verify, and of malformed room ids, are not: anyone could fill the log with
        them."""
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
        if not (token.raw_id.startswith(ACS_USER_PREFIX) and ids.is_user_id(token.raw_id)):
            raise errors.admission_not_acs_user(token.raw_id)
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
