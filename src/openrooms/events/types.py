"""The event types and the `data` each carries, as the store writes them and `GET /events` serves them.

Control-plane events are openrooms' own (ACS publishes none for rooms): their types are in the `OpenRooms.`
namespace. Call events are ACS's Event Grid call events, with exactly the `data` fields of the Event Grid SDKs'
system event models (`AcsCallStartedEventData`, `AcsCallEndedEventData`, `AcsCallParticipantAddedEventData`,
`AcsCallParticipantRemovedEventData` of `@azure/eventgrid`), so that an existing Event Grid handler parses
them unchanged; the room calls append them with the call's state changes (`claim_call_server`, `release_call_server`) or
through `RoomStore.append_events`, like any other event.

The service builds an event's `data` from these structs and never sees JSON; the store encodes it once, in the
transaction that writes the change, and serves it back as the stored bytes.
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

# openrooms' control-plane events
ROOM_CREATED = "OpenRooms.RoomCreated"
ROOM_UPDATED = "OpenRooms.RoomUpdated"
ROOM_DELETED = "OpenRooms.RoomDeleted"
PARTICIPANTS_ADDED = "OpenRooms.ParticipantsAdded"
PARTICIPANTS_ROLE_CHANGED = "OpenRooms.ParticipantsRoleChanged"
PARTICIPANTS_REMOVED = "OpenRooms.ParticipantsRemoved"
USER_CREATED = "OpenRooms.UserCreated"
USER_DELETED = "OpenRooms.UserDeleted"
TOKENS_REVOKED = "OpenRooms.TokensRevoked"
JOIN_ADMITTED = "OpenRooms.JoinAdmitted"
JOIN_REFUSED = "OpenRooms.JoinRefused"
KEYS_ROTATED = "OpenRooms.KeysRotated"
ROOM_WINDOW_OPENED = "OpenRooms.RoomWindowOpened"  # time-driven: at the room's validFrom
ROOM_WINDOW_CLOSED = "OpenRooms.RoomWindowClosed"  # at its validUntil
# ACS's Event Grid call events (recorded by room calls)
CALL_STARTED = "Microsoft.Communication.CallStarted"
CALL_ENDED = "Microsoft.Communication.CallEnded"
CALL_PARTICIPANT_ADDED = "Microsoft.Communication.CallParticipantAdded"
CALL_PARTICIPANT_REMOVED = "Microsoft.Communication.CallParticipantRemoved"

TYPES = (
    ROOM_CREATED, ROOM_UPDATED, ROOM_DELETED, PARTICIPANTS_ADDED, PARTICIPANTS_ROLE_CHANGED, PARTICIPANTS_REMOVED,
    USER_CREATED, USER_DELETED, TOKENS_REVOKED, JOIN_ADMITTED, JOIN_REFUSED, KEYS_ROTATED,
    ROOM_WINDOW_OPENED, ROOM_WINDOW_CLOSED,
    CALL_STARTED, CALL_ENDED, CALL_PARTICIPANT_ADDED, CALL_PARTICIPANT_REMOVED,
)
DATA_VERSION = "1.0"


class NewEvent(msgspec.Struct, frozen=True):
    """An event to append: built by the service, written by the store in the transaction of its change. Its id
    is derived from its place in the log when it is read (`events.log.event_id`): nothing to draw per write."""

    type: str
    subject: str  # e.g. "rooms/<room id>", "identities/<raw id>"
    room_id: str | None  # what `GET /events?roomId=` and webhook room filters match
    time: int  # ticks
    data: msgspec.Struct


class StoredEvent(NamedTuple):
    """An event as the log holds it: its place in the log and its `data` as encoded when it was written."""

    position: tuple[int, int]  # the log's order (see `RoomStore.list_events`)
    type: str
    subject: str
    room_id: str | None
    time: int
    data: bytes  # JSON


class _Data(msgspec.Struct, rename="camel", omit_defaults=True):
    pass


# openrooms' own data ----------------------------------------------------------------------------------------
class ParticipantData(_Data):
    raw_id: str
    role: str


class RoomFields(_Data):
    valid_from: str
    valid_until: str
    pstn_dial_out_enabled: bool


class RoomCreatedData(_Data):
    room_id: str
    created_date_time: str
    valid_from: str
    valid_until: str
    pstn_dial_out_enabled: bool
    participants: list[ParticipantData]


class RoomUpdatedData(_Data):
    room_id: str
    changed: list[str]  # the wire names of the fields whose values changed
    before: RoomFields
    after: RoomFields


class RoomDeletedData(_Data):
    room_id: str


class ParticipantsData(_Data):
    """ParticipantsAdded (the roles given), ParticipantsRemoved (the roles they had)."""

    room_id: str
    participants: list[ParticipantData]
    reason: str | None = None  # ParticipantsRemoved only: "Removed" or "UserDeleted"


class RoleChange(_Data):
    raw_id: str
    before: str
    after: str


class ParticipantsRoleChangedData(_Data):
    room_id: str
    participants: list[RoleChange]


class UserData(_Data):
    """UserCreated, UserDeleted (with the rooms it left)."""

    raw_id: str
    rooms: list[str] | None = None


class TokensRevokedData(_Data):
    raw_id: str
    revoked_before: str


class JoinAdmittedData(_Data):
    room_id: str
    raw_id: str
    role: str


class JoinRefusedData(_Data):
    room_id: str
    raw_id: str | None  # None when the token did not tell who it was
    status: int
    code: str
    reason: str


class KeysRotatedData(_Data):
    names: list[str]  # "primary", "secondary"; never the keys


class RoomWindowData(_Data):
    """RoomWindowOpened (due at `validFrom`) and RoomWindowClosed (due at `validUntil`)."""

    room_id: str
    valid_from: str
    valid_until: str
    due_date_time: str  # the instant the event is for; the event's own time is when it was emitted
    late: bool  # emitted more than a second after it was due (no instance was running then)


# ACS's call event data: the fields of the Event Grid system event models -----------------------------------
class CommunicationUserIdentifierModel(msgspec.Struct):
    id: str


class CommunicationIdentifierModel(msgspec.Struct, omit_defaults=True):
    rawId: str
    kind: str | None = None  # "communicationUser", "phoneNumber", ...
    communicationUser: CommunicationUserIdentifierModel | None = None


class AcsCallParticipant(msgspec.Struct):
    communicationIdentifier: CommunicationIdentifierModel
    role: str  # "Attendee", "Presenter", "Consumer", "Collaborator", "Organizer"


class AcsCallGroup(msgspec.Struct):
    id: str


class AcsCallRoom(msgspec.Struct):
    id: str


class AcsCallEndReason(msgspec.Struct):
    code: int
    subCode: int
    phrase: str


class AcsCallEndedBy(msgspec.Struct):
    communicationIdentifier: CommunicationIdentifierModel
    kind: str  # "Participant", "MicrosoftInternal"
    name: str


class AcsCallStartedEventData(msgspec.Struct, omit_defaults=True):
    startedBy: AcsCallParticipant
    serverCallId: str
    correlationId: str
    group: AcsCallGroup | None = None
    room: AcsCallRoom | None = None
    isTwoParty: bool | None = None
    isRoomsCall: bool | None = None


class AcsCallEndedEventData(msgspec.Struct, omit_defaults=True):
    startedBy: AcsCallParticipant
    serverCallId: str
    correlationId: str
    endedBy: AcsCallEndedBy
    reason: AcsCallEndReason
    callDurationInSeconds: float
    group: AcsCallGroup | None = None
    room: AcsCallRoom | None = None
    isTwoParty: bool | None = None
    isRoomsCall: bool | None = None


class AcsCallParticipantEventData(msgspec.Struct, omit_defaults=True):
    """CallParticipantAdded and CallParticipantRemoved."""

    startedBy: AcsCallParticipant
    serverCallId: str
    correlationId: str
    user: AcsCallParticipant
    displayName: str
    participantId: str
    userAgent: str
    group: AcsCallGroup | None = None
    room: AcsCallRoom | None = None
    isTwoParty: bool | None = None
    isRoomsCall: bool | None = None
