"""What the service works with: rooms, participants, users, signing keys, commands and pages. Plain data, no I/O.

The store persists these records and returns them; it imports them from here, and from nowhere else in the
service, so that the store sits below the service."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

T = TypeVar("T")


class Role(enum.StrEnum):
    PRESENTER = "Presenter"
    ATTENDEE = "Attendee"
    CONSUMER = "Consumer"
    COLLABORATOR = "Collaborator"


ROLES: Mapping[str, Role] = {role.value: role for role in Role}  # a role by its name, faster than Role(name)


# Rooms and participants are tuples: stores build them by the thousand per page, and a tuple is the cheapest
# immutable record Python has.
class Room(NamedTuple):
    id: str
    created_at: int
    valid_from: int
    valid_until: int
    pstn_dial_out_enabled: bool


class Participant(NamedTuple):
    raw_id: str
    role: Role


@dataclass(frozen=True, slots=True)
class CreateRoom:
    valid_from: int | None = None
    valid_until: int | None = None
    pstn_dial_out_enabled: bool | None = None
    # raw id -> role name as sent (None: the default role). Role names are checked by the service against
    # the roles the request's api-version knows.
    participants: Mapping[str, str | None] | None = None


@dataclass(frozen=True, slots=True)
class UpdateRoom:
    valid_from: int | None = None
    valid_until: int | None = None
    pstn_dial_out_enabled: bool | None = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Repeatability:
    """An idempotent create: the client's request id, when it first sent it, and a fingerprint of the request
    (two requests with the same id must also have the same fingerprint)."""

    request_id: str
    first_sent: int
    fingerprint: str


@dataclass(frozen=True, slots=True)
class CreateRecord:
    """What is kept of an idempotent create, so that a repeat gets the first answer: the room as it was created
    (the room itself may have changed since, or gone). The answer is rendered from it again, for the same
    api-version (the fingerprint covers it), so it is the same answer byte for byte."""

    request_id: str
    fingerprint: str
    room: Room
    created_at: int

    @property
    def room_id(self) -> str:
        return self.room.id


@dataclass(frozen=True, slots=True)
class CommunicationUser:
    raw_id: str
    created_at: int
    # Tokens issued before this instant (ticks) do not verify; None: never revoked.
    tokens_revoked_before: int | None = None


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An RSA key pair that signs access tokens, with a self-signed certificate for the `x5t`/`x5c` of the JWKS
    (PEM text, as stored; `openrooms.service.tokens` reads them)."""

    kid: str  # upper-case hex SHA-1 thumbprint of the certificate, as ACS names its keys
    private_key_pem: str
    certificate_pem: str
    created_at: int


# Room calls (openrooms.calls): where each room's call is held (its events are in the event log).
@dataclass(frozen=True, slots=True)
class CallServer:
    """The media server room of a room's call: created by the first join, found by every instance."""

    room_id: str
    server: str  # the Janus server's WebSocket URL
    janus_room: int
    secret: str
    pin: str
    server_call_id: str
    started_at: int  # ticks
    started_by: str = ""  # the raw id of the participant whose join started the call
    started_by_role: str = ""
    correlation_id: str = ""  # a GUID per call, as ACS's call events carry it
