"""What the store keeps of room calls: where each room's call is held, and the record of call events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol


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


@dataclass(frozen=True, slots=True)
class CallEvent:
    """One call event, with the fields of ACS's Event Grid call events (`Microsoft.Communication.CallStarted`,
    `CallEnded`, `CallParticipantAdded`, `CallParticipantRemoved`)."""

    event_type: str
    server_call_id: str
    room_id: str
    at: int  # ticks
    raw_id: str | None = None
    role: str | None = None
    display_name: str | None = None
    duration_ticks: int | None = None
    end_reason: str | None = None
    sub_code: int | None = None
    seq: int = 0  # the store's order (0 before it is stored)


class CallStore(Protocol):
    async def claim_call_server(self, candidate: CallServer) -> CallServer:
        """Store `candidate` unless the room has one already; answer the one stored."""
        ...

    async def get_call_server(self, room_id: str) -> CallServer | None: ...

    async def release_call_server(self, room_id: str, server_call_id: str) -> bool:
        """Forget the room's call server if it is still that call's; True when this call removed it."""
        ...

    async def add_call_event(self, event: CallEvent) -> None: ...

    async def list_call_events(self, room_id: str) -> list[CallEvent]: ...

    def listen_changes(self) -> AsyncIterator[str]:
        """The store's change notifications, from any instance: first `""` once listening, then `room:<id>` or
        `user:<raw id>` per change; a store without notifications never yields."""
        ...
