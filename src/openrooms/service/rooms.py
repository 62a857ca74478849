"""Rooms and their rosters: one method per operation of the ACS Rooms API."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from openrooms.service import errors, events, ids, paging, validity
from openrooms.service.clock import TICKS_PER_DAY, TICKS_PER_SECOND, Clock
from openrooms.service.model import (
    CreateRecord,
    CreateRoom,
    Page,
    Participant,
    Repeatability,
    Role,
    Room,
    UpdateRoom,
)
from openrooms.service.ports import ROOM_STATES, RoomIdTaken, RoomQuery, RoomStore, RosterFull

DEFAULT_ROLE = Role.ATTENDEE
# How long a Repeatability-Request-ID is remembered (and how old a Repeatability-First-Sent may be).
REPEATABILITY_WINDOW = 24 * 3600 * TICKS_PER_SECOND
# How long an expired room stays readable by id before it is purged.
DEFAULT_PURGE_GRACE_DAYS = 30
# Roster limits. ACS publishes no roster cap for rooms (a room call holds 350 interactive participants);
# these keep one request and one room to a size a single transaction handles quickly.
DEFAULT_MAX_PARTICIPANTS_PER_ROOM = 10_000
DEFAULT_MAX_PARTICIPANTS_PER_REQUEST = 1_000
_ID_DRAWS = 8
# The room queries' page tokens say the order they page in, so that no other listing's token is taken for one.
_BY_VALID_FROM = "validFrom"


def _is_tick_count(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 18  # what a store's integer holds


@dataclass(frozen=True, slots=True)
class Upsert:
    """A roster entry to add or re-role; `role` None means the default role."""

    role: str | None = None


@dataclass(frozen=True, slots=True)
class Created:
    """A create's outcome: the room as created, and whether this was a repeat of an earlier create."""

    room: Room
    replayed: bool

    @property
    def room_id(self) -> str:
        return self.room.id


def resolve_role(raw_id: str, name: str | None, roles: Sequence[Role]) -> Role:
    """The role named in a request, if the request's api-version knows it (names compare case-insensitively)."""
    if name is None:
        return DEFAULT_ROLE
    folded = name.casefold()
    for role in roles:
        if role.value.casefold() == folded:
            return role
    raise errors.invalid_role(raw_id, [r.value for r in roles])


class RoomsService:
    def __init__(
        self,
        store: RoomStore,
        clock: Clock,
        *,
        page_size: int = paging.DEFAULT_PAGE_SIZE,
        purge_grace_days: int = DEFAULT_PURGE_GRACE_DAYS,
        max_participants_per_room: int = DEFAULT_MAX_PARTICIPANTS_PER_ROOM,
        max_participants_per_request: int = DEFAULT_MAX_PARTICIPANTS_PER_REQUEST,
        on_window: Callable[[int, int, int], None] | None = None,
    ) -> None:
        self._store = store
        self._on_window = on_window  # told (validFrom, validUntil, now) of each window set (the window events)
        self._clock = clock
        self._page_size = page_size
        self._purge_grace = purge_grace_days * TICKS_PER_DAY
        self._max_per_room = max_participants_per_room
        self._max_per_request = max_participants_per_request

    def _check_request_size(self, count: int) -> None:
        if count > self._max_per_request:
            raise errors.too_many_participants_in_request(count, self._max_per_request)

    async def rooms_create(
        self,
        command: CreateRoom,
        roles: Sequence[Role],
        repeatability: Repeatability | None = None,
    ) -> Created:
        """Create a room. With `repeatability`, a repeat of the same request gets the room the first one
        created, as it was then, and creates nothing."""
        now = self._clock.now()
        if repeatability is not None:
            if now - repeatability.first_sent > REPEATABILITY_WINDOW:
                raise errors.repeatability_expired(repeatability.request_id, REPEATABILITY_WINDOW // TICKS_PER_SECOND)
            earlier = await self._store.get_create_record(repeatability.request_id)
            if earlier is not None:
                return self._replay(earlier, repeatability)

        requested = command.participants or {}
        self._check_request_size(len(requested))
        if len(requested) > self._max_per_room:
            raise errors.room_roster_full(len(requested), self._max_per_room)
        roster = []
        for raw_id, role in requested.items():
            ids.check_participant_id(raw_id)
            roster.append(Participant(raw_id, resolve_role(raw_id, role, roles)))
        window = validity.window_for_create(command.valid_from, command.valid_until, now)

        for _ in range(_ID_DRAWS):
            room = Room(
                id=ids.new_room_id(),
                created_at=now,
                valid_from=window.valid_from,
                valid_until=window.valid_until,
                pstn_dial_out_enabled=bool(command.pstn_dial_out_enabled),
            )
            record = None
            if repeatability is not None:
                record = CreateRecord(repeatability.request_id, repeatability.fingerprint, room, now)
            try:
                earlier = await self._store.insert_room(room, roster, record, [events.room_created(room, roster)])
            except RoomIdTaken:
                continue
            if earlier is not None and repeatability is not None:
                # Another request with the same id won the race: answer as its repeat.
                return self._replay(earlier, repeatability)
            if self._on_window is not None:
                self._on_window(room.valid_from, room.valid_until, now)
            return Created(room, replayed=False)
        raise RuntimeError("could not draw an unused room id")  # 1 in 10^100 odds: a broken random source

    @staticmethod
    def _replay(earlier: CreateRecord, repeatability: Repeatability) -> Created:
        if earlier.fingerprint != repeatability.fingerprint:
            raise errors.repeatability_conflict(repeatability.request_id)
        return Created(earlier.room, replayed=True)

    async def rooms_get(self, room_id: str) -> Room:
        ids.check_room_id(room_id)
        room = await self._store.get_room(room_id)
        if room is None:
            raise errors.not_found()
        return room

    async def rooms_update(self, room_id: str, command: UpdateRoom) -> Room:
        ids.check_room_id(room_id)
        now = self._clock.now()
        window = validity.window_for_update(command.valid_from, command.valid_until, now)
        room = await self._store.update_room(
            room_id,
            None if window is None else (window.valid_from, window.valid_until),
            command.pstn_dial_out_enabled,
            events.RoomUpdate(now),
        )
        if room is None:
            raise errors.not_found()
        if window is not None and self._on_window is not None:
            self._on_window(room.valid_from, room.valid_until, now)
        return room

    async def rooms_delete(self, room_id: str) -> None:
        ids.check_room_id(room_id)
        if not await self._store.delete_room(room_id, [events.room_deleted(room_id, self._clock.now())]):
            raise errors.not_found()

    async def rooms_list(self, cursor: str | None = None, page_size: int | None = None) -> Page[Room]:
        """Rooms whose window has not ended, newest first."""
        limit = paging.page_size(page_size, self._page_size)
        after = None
        if cursor is not None:
            created, room_id = paging.decode_cursor(cursor, 2)
            if not (created.isascii() and created.isdigit() and len(created) <= 18):  # what a store's integer holds
                raise errors.invalid_page_token()
            after = (int(created), room_id)
        rooms = await self._store.list_rooms(self._clock.now(), after, limit + 1)
        if len(rooms) <= limit:
            return Page(rooms, None)
        last = rooms[limit - 1]
        return Page(rooms[:limit], paging.encode_cursor(last.created_at, last.id))

    async def rooms_query(
        self, *, states: Collection[str] | None = None, participant: str | None = None, id_prefix: str | None = None,
        cursor: str | None = None, page_size: int | None = None,
    ) -> Page[Room]:
        """Rooms by the start of their window, then id (openrooms extension, docs/rooms.md): every stored room, or
        only those in one of `states` now (of ROOM_STATES), with `participant` (a raw id) on the roster, or whose id
        starts with `id_prefix`; all the conditions given hold. `cursor`: a page's `next_cursor`, whose rooms follow
        (the states are taken anew for each page)."""
        limit = paging.page_size(page_size, self._page_size)
        wanted = None
        if states is not None:
            for state in states:
                if state not in ROOM_STATES:
                    raise errors.invalid_room_state(state, ROOM_STATES)
            wanted = frozenset(states) or None
        if participant is not None and not ids.is_user_id(participant):
            raise errors.invalid_participant_filter(participant)
        longest = max(ids.ROOM_ID_LENGTHS)
        if id_prefix is not None and not (id_prefix.isascii() and id_prefix.isdigit() and len(id_prefix) <= longest):
            raise errors.invalid_room_id_prefix(id_prefix, longest)
        after = None
        if cursor is not None:
            order, valid_from, room_id = paging.decode_cursor(cursor, 3)
            if order != _BY_VALID_FROM or not _is_tick_count(valid_from):
                raise errors.invalid_page_token()
            after = (int(valid_from), room_id)
        query = RoomQuery(self._clock.now(), wanted, participant, id_prefix)
        rooms = await self._store.query_rooms(query, after, limit + 1)
        if len(rooms) <= limit:
            return Page(rooms, None)
        last = rooms[limit - 1]
        return Page(rooms[:limit], paging.encode_cursor(_BY_VALID_FROM, last.valid_from, last.id))

    async def count_in_state(self, state: str, limit: int) -> int:
        """How many rooms are in `state` (of ROOM_STATES) now, counted up to `limit` (`limit`: that many or more)."""
        if state not in ROOM_STATES:
            raise errors.invalid_room_state(state, ROOM_STATES)
        return await self._store.count_rooms(RoomQuery(self._clock.now(), frozenset({state})), limit)

    async def participants_list(
        self, room_id: str, cursor: str | None = None, page_size: int | None = None
    ) -> Page[Participant]:
        ids.check_room_id(room_id)
        limit = paging.page_size(page_size, self._page_size)
        start = 0
        if cursor is not None:  # where the next page starts in the roster's order of addition
            (place,) = paging.decode_cursor(cursor, 1)
            if not (place.isascii() and place.isdigit() and len(place) <= 18):  # what a store's integer holds
                raise errors.invalid_page_token()
            start = int(place)
        page = await self._store.list_participants(room_id, start, limit)
        if page is None:
            raise errors.not_found()
        return Page(page.participants, None if page.next_start is None else paging.encode_cursor(page.next_start))

    async def participants_update(
        self, room_id: str, changes: Mapping[str, Upsert | None], roles: Sequence[Role]
    ) -> None:
        """Merge `changes` into the roster: an `Upsert` adds or re-roles, None removes (a no-op for someone
        not in the room). Every entry is checked before anything is applied."""
        ids.check_room_id(room_id)
        self._check_request_size(len(changes))
        upserts: dict[str, Role] = {}
        removals: list[str] = []
        for raw_id, change in changes.items():
            ids.check_roster_change_id(raw_id)
            if change is None:
                removals.append(raw_id)
            else:
                upserts[raw_id] = resolve_role(raw_id, change.role, roles)
        try:
            updated = await self._store.update_participants(
                room_id, upserts, removals, max_participants=self._max_per_room,
                events=events.RosterUpdate(room_id, self._clock.now()),
            )
        except RosterFull as exc:
            raise errors.room_roster_full(exc.size, self._max_per_room) from None
        if not updated:
            raise errors.not_found()

    async def purge_expired(self) -> tuple[int, int]:
        now = self._clock.now()
        return await self._store.purge(now - self._purge_grace, now - REPEATABILITY_WINDOW)
