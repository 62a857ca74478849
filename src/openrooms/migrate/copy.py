"""The copy: every room of the source, with its roster, into the target store; then its users as identities.

A room's copy is one transaction when the room is new (`insert_room`, room and roster together) and idempotent
when it exists (the fields, then the roster, each set to the source's): a run stopped anywhere (Ctrl-C, kill -9,
a network error) leaves every room either as it was or copied, and the next run finishes the job. Users are
registered with an insert that skips those that exist, so that step can be repeated too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from openrooms.migrate.plan import Action, RoomPlan, Skip, checked_roster, plan_room, resource_id_of, room_problem
from openrooms.migrate.source import AcsSource, SourceParticipant
from openrooms.migrate.target import MigrationStore, target_rooms, target_roster
from openrooms.service.clock import Clock, SystemClock
from openrooms.service.model import CommunicationUser, Participant, Room
from openrooms.store.protocol import RoomIdTaken

_USER_BATCH = 1000


class ResourceIdConflict(Exception):
    """The target holds data under another resource id; nothing was written."""


@dataclass(frozen=True, slots=True)
class CopyOptions:
    delete_missing: bool = False
    dry_run: bool = False
    users: Sequence[str] = ()  # raw ids of users on no roster (--users-file)
    resource_id: str | None = None  # the source's, when no roster or user names it
    concurrency: int = 16  # rosters read at once


class Progress(Protocol):
    """What the copy tells as it goes (the CLI shows a bar)."""

    def started(self, rooms: int) -> None: ...

    def room_done(self, participants: int) -> None: ...


class _Silent:
    def started(self, rooms: int) -> None:
        pass

    def room_done(self, participants: int) -> None:
        pass


@dataclass(slots=True)
class Report:
    source: str
    dry_run: bool
    delete_missing: bool = False
    resource_id: str | None = None
    source_rooms: int = 0
    changes: list[RoomPlan] = field(default_factory=list)
    unchanged: int = 0
    skipped: list[Skip] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the target, not in the source
    participants: int = 0  # read from the source
    users_registered: int = 0
    users_known: int = 0
    seconds: float = 0.0

    def count(self, action: Action) -> int:
        return sum(1 for plan in self.changes if plan.action is action)

    def to_json(self) -> dict[str, Any]:
        rate = (lambda n: round(n / self.seconds, 1)) if self.seconds > 0 else (lambda n: 0.0)
        return {
            "source": self.source,
            "dryRun": self.dry_run,
            "resourceId": self.resource_id,
            "rooms": {
                "source": self.source_rooms,
                "created": self.count(Action.CREATE),
                "updated": self.count(Action.UPDATE),
                "deleted": self.count(Action.DELETE),
                "unchanged": self.unchanged,
                "skipped": len({s.room_id for s in self.skipped if s.participant is None}),
                "notInSource": len(self.missing),
            },
            "participants": {
                "source": self.participants,
                "added": sum(plan.added for plan in self.changes),
                "roleChanged": sum(plan.rerolled for plan in self.changes),
                "removed": sum(len(plan.removals) for plan in self.changes),
                "skipped": sum(1 for s in self.skipped if s.participant is not None),
            },
            "users": {"registered": self.users_registered, "alreadyRegistered": self.users_known},
            "changes": [plan.to_json() for plan in self.changes],
            "skipped": [skip.to_json() for skip in self.skipped],
            "notInSource": {"deleted" if self.delete_missing else "kept": self.missing},
            "seconds": round(self.seconds, 3),
            "roomsPerSecond": rate(self.source_rooms),
            "participantsPerSecond": rate(self.participants),
        }


async def copy(source: AcsSource, store: MigrationStore, options: CopyOptions = CopyOptions(),
               progress: Progress | None = None, clock: Clock | None = None) -> Report:
    """Copy the source into the store (with `dry_run`: only plan); raises `ResourceIdConflict` before writing
    anything when the target belongs to another resource."""
    progress = progress or _Silent()
    clock = clock or SystemClock()
    started = time.monotonic()
    report = Report(source.endpoint, options.dry_run, options.delete_missing)
    now = clock.now()

    listed = await source.rooms()
    rooms: list[Room] = []
    for room in listed:
        problem = room_problem(room)
        if problem is None:
            rooms.append(room)
        else:
            report.skipped.append(Skip(room.id, problem))
    report.source_rooms = len(listed)
    existing = await target_rooms(store)
    progress.started(len(rooms))

    # The resource id first, from the first room that has a roster: a conflict stops the run before any write.
    rosters: dict[str, list[SourceParticipant] | None] = {}
    resource_ids = {rid for rid in map(resource_id_of, options.users) if rid is not None}
    if options.resource_id is None and not resource_ids:
        for room in rooms:
            rosters[room.id] = await source.roster(room.id)
            found = [rid for p in rosters[room.id] or () if (rid := resource_id_of(p.raw_id)) is not None]
            if found:
                resource_ids.add(found[0])
                break
    if options.resource_id is not None:
        resource_ids.add(options.resource_id.lower())
    if len(resource_ids) > 1:
        raise ResourceIdConflict(f"the users name several resource ids ({', '.join(sorted(resource_ids))}); "
                                 "openrooms serves one")
    if resource_ids:
        wanted = resource_ids.pop()
        stored = await store.adopt_resource_id(wanted, write=not options.dry_run)
        if stored != wanted:
            raise ResourceIdConflict(
                f"the target already serves resource id {stored} and holds rooms or users; the source's users are "
                f"8:acs:{wanted}_..., so they would not be this server's. Migrate into an empty database (or one "
                "that holds only this source's data)."
            )
        report.resource_id = wanted

    users: set[str] = set(options.users)
    semaphore = asyncio.Semaphore(max(1, options.concurrency))

    async def one(room: Room) -> None:
        async with semaphore:
            participants = rosters.pop(room.id) if room.id in rosters else await source.roster(room.id)
            if participants is None:
                report.skipped.append(Skip(room.id, "deleted from the source while it was being copied"))
                progress.room_done(0)
                return
            roster, skipped = checked_roster(room.id, participants)
            report.skipped.extend(skipped)
            report.participants += len(participants)
            users.update(roster)
            plan = await _apply(store, room, roster, existing.get(room.id), options.dry_run, report)
            if plan is not None:
                if plan.action is Action.UNCHANGED:
                    report.unchanged += 1
                else:
                    report.changes.append(plan)
            progress.room_done(len(participants))

    await _gather_all(one, rooms)

    known = {room.id for room in rooms} | {s.room_id for s in report.skipped if s.participant is None}
    report.missing = sorted(room_id for room_id, room in existing.items()
                            if room_id not in known and room.valid_until > now)
    if options.delete_missing:
        for room_id in report.missing:
            if options.dry_run or await store.delete_room(room_id):
                report.changes.append(RoomPlan(room_id, Action.DELETE))

    await _register(store, sorted(users), now, options.dry_run, report)
    report.seconds = time.monotonic() - started
    return report


async def _gather_all(work: Callable[[Room], Any], rooms: list[Room]) -> None:
    """Run `work` for every room; the first failure cancels the rest (and is raised)."""
    try:
        async with asyncio.TaskGroup() as group:
            for room in rooms:
                group.create_task(work(room))
    except* Exception as failures:
        raise failures.exceptions[0] from None


async def _apply(store: MigrationStore, room: Room, roster: dict[str, Any], target: Room | None, dry_run: bool,
                 report: Report) -> RoomPlan | None:
    current = None if target is None else await target_roster(store, room.id)
    plan, skipped = plan_room(room, roster, target, current)
    report.skipped.extend(skipped)
    if dry_run or plan.action is Action.UNCHANGED:
        return plan
    if plan.action is Action.CREATE:
        # In the source's order: openrooms lists a roster in the order of addition, as ACS does.
        participants = [Participant(raw_id, role) for raw_id, role in roster.items()]
        try:
            await store.insert_room(room, participants, None)
            return plan
        except RoomIdTaken:
            # Made by a run that stopped after listing the target, or ended and so not listed: copy onto it.
            target = await store.get_room(room.id)
            if target is None:
                report.skipped.append(Skip(room.id, "openrooms had a room with this id and deleted it; an id is "
                                                    "never issued twice"))
                return None
            return await _apply(store, room, roster, target, dry_run, report)
    if {"validFrom", "validUntil", "pstnDialOutEnabled"} & set(plan.fields):
        updated = await store.update_room(room.id, (room.valid_from, room.valid_until), room.pstn_dial_out_enabled)
        if updated is None:
            report.skipped.append(Skip(room.id, "deleted in openrooms while it was being copied"))
            return None
    if (plan.upserts or plan.removals) and not await store.update_participants(room.id, plan.upserts, plan.removals):
        report.skipped.append(Skip(room.id, "deleted in openrooms while it was being copied"))
        return None
    return plan


async def _register(store: MigrationStore, raw_ids: list[str], now: int, dry_run: bool, report: Report) -> None:
    """Every user as an identity of openrooms (so that it can issue them tokens)."""
    for start in range(0, len(raw_ids), _USER_BATCH):
        batch = raw_ids[start:start + _USER_BATCH]
        if dry_run:
            new = [await store.get_user(raw_id) for raw_id in batch].count(None)
        else:
            new = await store.insert_users([CommunicationUser(raw_id, now) for raw_id in batch])
        report.users_registered += new
        report.users_known += len(batch) - new
