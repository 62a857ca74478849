"""`openrooms migrate verify`: the source and the target compared room by room, every field and roster entry,
and every roster user registered as an identity."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from openrooms.migrate.plan import FIELDS, wire_fields
from openrooms.migrate.source import AcsSource
from openrooms.migrate.target import MigrationStore, target_rooms, target_roster
from openrooms.service.clock import Clock, SystemClock
from openrooms.service.model import Room


@dataclass(frozen=True, slots=True)
class Difference:
    room_id: str
    what: str  # a field's wire name, "room", or a participant's raw id
    source: object
    target: object

    def __str__(self) -> str:
        return f"room {self.room_id}: {self.what}: source {self.source}, openrooms {self.target}"

    def to_json(self) -> dict[str, object]:
        return {"room": self.room_id, "what": self.what, "source": self.source, "target": self.target}


_ABSENT = "absent"


async def verify(source: AcsSource, store: MigrationStore, *, concurrency: int = 16,
                 clock: Clock | None = None) -> tuple[int, list[Difference]]:
    """How many rooms the source has, and every difference (none: the copy is complete)."""
    now = (clock or SystemClock()).now()
    rooms = {room.id: room for room in await source.rooms()}
    existing = await target_rooms(store, valid_after=now)  # what openrooms' API lists, as the source's does
    differences: list[Difference] = []
    for room_id in sorted(rooms.keys() - existing.keys()):
        differences.append(Difference(room_id, "room", "present", _ABSENT))
    for room_id in sorted(existing.keys() - rooms.keys()):
        differences.append(Difference(room_id, "room", _ABSENT, "present"))
    users: set[str] = set()
    semaphore = asyncio.Semaphore(max(1, concurrency))

    async def compare(room: Room, target: Room) -> None:
        async with semaphore:
            participants = await source.roster(room.id)
        if participants is None:
            differences.append(Difference(room.id, "room", "deleted during the comparison", "present"))
            return
        mine, theirs = wire_fields(room), wire_fields(target)
        differences.extend(Difference(room.id, name, mine[name], theirs[name])
                           for name in FIELDS if mine[name] != theirs[name])
        roster = {p.raw_id: p.role for p in participants}
        copied = {raw_id: role.value for raw_id, role in (await target_roster(store, room.id) or {}).items()}
        for raw_id in sorted(roster.keys() | copied.keys()):
            if roster.get(raw_id) != copied.get(raw_id):
                differences.append(Difference(room.id, raw_id, roster.get(raw_id, _ABSENT),
                                              copied.get(raw_id, _ABSENT)))
        users.update(roster)

    try:
        async with asyncio.TaskGroup() as group:
            for room_id in sorted(rooms.keys() & existing.keys()):
                group.create_task(compare(rooms[room_id], existing[room_id]))
    except* Exception as failures:
        raise failures.exceptions[0] from None
    for raw_id in sorted(users):
        if await store.get_user(raw_id) is None:
            differences.append(Difference("-", raw_id, "user", "not registered as an identity"))
    differences.sort(key=lambda d: (d.room_id, d.what))
    return len(rooms), differences
