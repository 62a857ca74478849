"""What a copy changes, room by room: pure functions of the source's room and roster and the target's."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from openrooms.migrate.source import SourceParticipant
from openrooms.service import ids, timestamps
from openrooms.service.errors import ServiceError
from openrooms.service.model import ROLES, Role, Room


class Action(enum.StrEnum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Skip:
    """Something of the source that was not copied, and why."""

    room_id: str
    reason: str
    participant: str | None = None

    def to_json(self) -> dict[str, str]:
        answer = {"room": self.room_id, "reason": self.reason}
        if self.participant is not None:
            answer["participant"] = self.participant
        return answer


@dataclass(slots=True)
class RoomPlan:
    room_id: str
    action: Action
    room: Room | None = None  # the source's (None: a room to delete)
    roster: dict[str, Role] = field(default_factory=dict)  # the source's, as it will be copied
    fields: list[str] = field(default_factory=list)  # wire names of the fields that change
    upserts: dict[str, Role] = field(default_factory=dict)  # participants added or given another role
    removals: list[str] = field(default_factory=list)
    added: int = 0
    rerolled: int = 0

    def to_json(self) -> dict[str, object]:
        answer: dict[str, object] = {"room": self.room_id, "action": self.action.value}
        if self.fields:
            answer["fields"] = self.fields
        if self.action is not Action.DELETE:
            answer["participants"] = {"added": self.added, "roleChanged": self.rerolled,
                                      "removed": len(self.removals)}
        return answer


FIELDS = ("createdAt", "validFrom", "validUntil", "pstnDialOutEnabled")


def wire_fields(room: Room) -> dict[str, str | bool]:
    """A room's fields as the API shows them."""
    return {
        "createdAt": timestamps.format(room.created_at),
        "validFrom": timestamps.format(room.valid_from),
        "validUntil": timestamps.format(room.valid_until),
        "pstnDialOutEnabled": room.pstn_dial_out_enabled,
    }


def room_problem(room: Room) -> str | None:
    """Why openrooms cannot hold this room as it is, or None."""
    try:
        ids.check_room_id(room.id)
    except ServiceError as exc:
        return f"its id is not one openrooms accepts: {exc.message}"
    if room.valid_until <= room.valid_from:
        return "its validUntil is not after its validFrom"
    return None


def checked_roster(room_id: str, participants: Iterable[SourceParticipant]) -> tuple[dict[str, Role], list[Skip]]:
    """The roster as openrooms will hold it, and the participants it cannot."""
    roster: dict[str, Role] = {}
    skipped: list[Skip] = []
    for participant in participants:
        role = ROLES.get(participant.role)
        if not ids.is_user_id(participant.raw_id):
            skipped.append(Skip(room_id, "not an ACS user id (8:acs:<resource id>_<user>)", participant.raw_id))
        elif role is None:
            skipped.append(Skip(room_id, f"unknown role {participant.role!r}", participant.raw_id))
        else:
            roster[participant.raw_id] = role
    return roster, skipped


def plan_room(room: Room, roster: Mapping[str, Role], target: Room | None,
              target_roster: Mapping[str, Role] | None) -> tuple[RoomPlan, list[Skip]]:
    """What copying `room` with `roster` onto the target's room (None: it has none) changes."""
    if target is None:
        return RoomPlan(room.id, Action.CREATE, room, dict(roster), list(FIELDS), dict(roster),
                        added=len(roster)), []
    skipped: list[Skip] = []
    mine, theirs = wire_fields(room), wire_fields(target)
    changed = [name for name in FIELDS if mine[name] != theirs[name]]
    if "createdAt" in changed:
        changed.remove("createdAt")
        skipped.append(Skip(room.id, f"createdAt differs ({theirs['createdAt']} in openrooms, {mine['createdAt']} "
                                     "in the source) and cannot be changed"))
    current = target_roster or {}
    upserts = {raw_id: role for raw_id, role in roster.items() if current.get(raw_id) is not role}
    removals = sorted(raw_id for raw_id in current if raw_id not in roster)
    added = sum(1 for raw_id in upserts if raw_id not in current)
    action = Action.UPDATE if changed or upserts or removals else Action.UNCHANGED
    return RoomPlan(room.id, action, room, dict(roster), changed, upserts, removals, added,
                    len(upserts) - added), skipped


def resource_id_of(raw_id: str) -> str | None:
    """The resource id in an `8:acs:<resource id>_<user>` id (lower case)."""
    if not ids.is_user_id(raw_id):
        return None
    return raw_id.split(":", 2)[2].split("_", 1)[0].lower()
