"""What each change's event says: built by the service from its own types, handed to the store with the change.

Where the event depends on the database as the change finds it (a room's fields before an update, which
participants a roster change adds or only re-roles), the service hands the store a function of what the store
found, and the store calls it inside the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from openrooms.events import types as t
from openrooms.service import timestamps
from openrooms.service.clock import TICKS_PER_SECOND

if TYPE_CHECKING:
    from openrooms.service.model import Participant, Role, Room
    from openrooms.service.ports import RosterChange


def _event(type_: str, subject: str, room_id: str | None, now: int, data: msgspec.Struct) -> t.NewEvent:
    return t.NewEvent(type_, subject, room_id, now, data)


def _room_subject(room_id: str) -> str:
    return "rooms/" + room_id


def _user_subject(raw_id: str) -> str:
    return "identities/" + raw_id


def _participants(participants: Sequence[Participant]) -> list[t.ParticipantData]:
    if not participants:
        return []
    return [t.ParticipantData(p.raw_id, p.role.value) for p in participants]


def room_created(room: Room, participants: Sequence[Participant]) -> t.NewEvent:
    created = timestamps.format(room.created_at)
    valid_from = created if room.valid_from == room.created_at else timestamps.format(room.valid_from)  # the default
    valid_until = timestamps.format(room.valid_until)
    data = t.RoomCreatedData(room.id, created, valid_from, valid_until, room.pstn_dial_out_enabled,
                             _participants(participants))
    return _event(t.ROOM_CREATED, _room_subject(room.id), room.id, room.created_at, data)


def _fields(room: Room) -> t.RoomFields:
    return t.RoomFields(
        timestamps.format(room.valid_from), timestamps.format(room.valid_until), room.pstn_dial_out_enabled
    )


class RoomUpdate:
    """The event of an update, from the room before and after it; none if no field's value changed."""

    def __init__(self, now: int) -> None:
        self._now = now

    def __call__(self, before: Room, after: Room) -> list[t.NewEvent]:
        changed = [name for name, a, b in (("validFrom", before.valid_from, after.valid_from),
                                            ("validUntil", before.valid_until, after.valid_until),
                                            ("pstnDialOutEnabled", before.pstn_dial_out_enabled,
                                             after.pstn_dial_out_enabled)) if a != b]
        if not changed:
            return []
        data = t.RoomUpdatedData(after.id, changed, _fields(before), _fields(after))
        return [_event(t.ROOM_UPDATED, _room_subject(after.id), after.id, self._now, data)]


def room_deleted(room_id: str, now: int) -> t.NewEvent:
    return _event(t.ROOM_DELETED, _room_subject(room_id), room_id, now, t.RoomDeletedData(room_id))


class RosterUpdate:
    """The events of a roster change: one per kind of change that happened (added, role changed, removed)."""

    def __init__(self, room_id: str, now: int) -> None:
        self._room_id = room_id
        self._now = now

    def __call__(self, change: RosterChange) -> list[t.NewEvent]:
        room_id, subject, now = self._room_id, _room_subject(self._room_id), self._now
        events = []
        if change.added:
            events.append(_event(t.PARTICIPANTS_ADDED, subject, room_id, now,
                                 t.ParticipantsData(room_id, _participants(change.added))))
        if change.role_changed:
            events.append(_event(t.PARTICIPANTS_ROLE_CHANGED, subject, room_id, now, t.ParticipantsRoleChangedData(
                room_id, [t.RoleChange(raw_id, old.value, new.value) for raw_id, old, new in change.role_changed])))
        if change.removed:
            events.append(_event(t.PARTICIPANTS_REMOVED, subject, room_id, now,
                                 t.ParticipantsData(room_id, _participants(change.removed), "Removed")))
        return events


def user_created(raw_id: str, now: int) -> t.NewEvent:
    return _event(t.USER_CREATED, _user_subject(raw_id), None, now, t.UserData(raw_id))


class UserDeletion:
    """The events of a user's deletion: UserDeleted, and a ParticipantsRemoved for each room it left."""

    def __init__(self, raw_id: str, now: int) -> None:
        self._raw_id = raw_id
        self._now = now

    def __call__(self, left: Sequence[tuple[str, Role]]) -> list[t.NewEvent]:
        raw_id, now = self._raw_id, self._now
        events = [_event(t.USER_DELETED, _user_subject(raw_id), None, now,
                         t.UserData(raw_id, sorted(room_id for room_id, _ in left)))]
        for room_id, role in sorted(left):
            events.append(_event(t.PARTICIPANTS_REMOVED, _room_subject(room_id), room_id, now, t.ParticipantsData(
                room_id, [t.ParticipantData(raw_id, role.value)], "UserDeleted")))
        return events


def tokens_revoked(raw_id: str, now: int) -> t.NewEvent:
    data = t.TokensRevokedData(raw_id, timestamps.format(now))
    return _event(t.TOKENS_REVOKED, _user_subject(raw_id), None, now, data)


def join_admitted(room_id: str, participant: Participant, now: int) -> t.NewEvent:
    return _event(t.JOIN_ADMITTED, _room_subject(room_id), room_id, now,
                  t.JoinAdmittedData(room_id, participant.raw_id, participant.role.value))


def join_refused(room_id: str, raw_id: str | None, status: int, code: str, reason: str, now: int) -> t.NewEvent:
    return _event(t.JOIN_REFUSED, _room_subject(room_id), room_id, now,
                  t.JoinRefusedData(room_id, raw_id, status, code, reason))


def keys_rotated(names: Sequence[str], now: int) -> t.NewEvent:
    return _event(t.KEYS_ROTATED, "keys", None, now, t.KeysRotatedData(list(names)))


# Room calls: ACS's Event Grid call events -------------------------------------------------------------------
_ACS_USER_PREFIXES = ("8:acs:", "8:spool:")
CALL_ENDED_BY = "openrooms"  # who ends a call that no participant ended (ACS: "MicrosoftInternal")
SUB_CODE_ALL_LEFT = 0
SUB_CODE_ENDED_FOR_EVERYONE = 5000


def _identifier(raw_id: str) -> t.CommunicationIdentifierModel:
    if raw_id.startswith(_ACS_USER_PREFIXES):
        return t.CommunicationIdentifierModel(raw_id, "communicationUser", t.CommunicationUserIdentifierModel(raw_id))
    return t.CommunicationIdentifierModel(raw_id, "unknown")


def _call_participant(raw_id: str, role: str) -> t.AcsCallParticipant:
    return t.AcsCallParticipant(_identifier(raw_id), role)


class CallEvents:
    """The events of one room call, from what its stored server row tells (who started it, its ids)."""

    def __init__(self, room_id: str, server_call_id: str, correlation_id: str, started_by: str,
                 started_by_role: str, started_at: int) -> None:
        self._room_id = room_id
        self._subject = "call/" + server_call_id
        self._started_at = started_at
        self._common: dict[str, Any] = {
            "startedBy": _call_participant(started_by, started_by_role), "serverCallId": server_call_id,
            "correlationId": correlation_id, "room": t.AcsCallRoom(room_id), "isTwoParty": False, "isRoomsCall": True,
        }

    def _event(self, type_: str, now: int, data: msgspec.Struct) -> t.NewEvent:
        return _event(type_, self._subject, self._room_id, now, data)

    def started(self) -> t.NewEvent:
        return self._event(t.CALL_STARTED, self._started_at, t.AcsCallStartedEventData(**self._common))

    def ended(self, reason: str, now: int) -> t.NewEvent:
        """`reason`: AllParticipantsLeft, RoomEnded, RoomDeleted or EndedByApplication (the end reason's phrase)."""
        sub_code = SUB_CODE_ALL_LEFT if reason == "AllParticipantsLeft" else SUB_CODE_ENDED_FOR_EVERYONE
        ended_by = t.AcsCallEndedBy(t.CommunicationIdentifierModel(CALL_ENDED_BY, "unknown"), "MicrosoftInternal",
                                    CALL_ENDED_BY)
        data = t.AcsCallEndedEventData(endedBy=ended_by, reason=t.AcsCallEndReason(0, sub_code, reason),
                                       callDurationInSeconds=(now - self._started_at) / TICKS_PER_SECOND,
                                       **self._common)
        return self._event(t.CALL_ENDED, now, data)

    def participant(self, type_: str, raw_id: str, role: str, display_name: str | None, participant_id: str,
                    user_agent: str, now: int) -> t.NewEvent:
        """CallParticipantAdded or CallParticipantRemoved."""
        data = t.AcsCallParticipantEventData(user=_call_participant(raw_id, role), displayName=display_name or "",
                                             participantId=participant_id, userAgent=user_agent, **self._common)
        return self._event(type_, now, data)
