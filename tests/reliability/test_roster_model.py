"""Property tests: the roster merge against a plain dict as the reference model, over the real SQLite store,
and the validity-window rules against their statement."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from openrooms.service import errors
from openrooms.service.clock import TICKS_PER_DAY, TICKS_PER_SECOND, FixedClock
from openrooms.service.model import CreateRoom, Role
from openrooms.service.rooms import RoomsService, Upsert
from openrooms.service.validity import window_for_create
from openrooms.store.sqlite import SqliteStore
from tests.support import user_id

ROLES = list(Role)
NOW = 17_000_000_000 * TICKS_PER_SECOND
MAX_ROOM = 12
people = st.integers(min_value=0, max_value=20).map(user_id)
role_names = st.sampled_from([None, *[r.value for r in ROLES], *[r.value.upper() for r in ROLES]])
changes = st.dictionaries(people, st.one_of(st.none(), role_names.map(Upsert)), max_size=8)


class RosterMachine(RuleBasedStateMachine):
    """Any sequence of merges leaves the roster the dict model predicts; a refused merge changes nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.store = SqliteStore.open(None)
        self.service = RoomsService(self.store, FixedClock(NOW), max_participants_per_room=MAX_ROOM,
                                    max_participants_per_request=8)
        self.room_id = self.run(self.service.rooms_create(CreateRoom(), ROLES)).room_id
        self.model: dict[str, Role] = {}

    def run(self, coroutine):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coroutine)

    @rule(change=changes)
    def merge(self, change: dict[str, Upsert | None]) -> None:
        expected = dict(self.model)
        for raw_id, upsert in change.items():
            if upsert is None:
                expected.pop(raw_id, None)
            else:
                expected[raw_id] = Role.ATTENDEE if upsert.role is None else Role(upsert.role.capitalize())
        try:
            self.run(self.service.participants_update(self.room_id, change, ROLES))
        except errors.ServiceError as exc:
            assert len(expected) > MAX_ROOM and len(expected) > len(self.model), exc
            return
        assert len(expected) <= MAX_ROOM or len(expected) <= len(self.model)
        self.model = expected

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def remove_someone(self, data: st.DataObject) -> None:
        raw_id = data.draw(st.sampled_from(sorted(self.model)))
        self.run(self.service.participants_update(self.room_id, {raw_id: None}, ROLES))
        del self.model[raw_id]

    @invariant()
    def roster_matches_the_model(self) -> None:
        page = self.run(self.service.participants_list(self.room_id, page_size=1000))
        # In the order of addition, as a dict keeps its keys: a role change keeps its place, a return goes last.
        assert [(p.raw_id, p.role) for p in page.items] == list(self.model.items())

    def teardown(self) -> None:
        self.run(self.store.close())
        self.loop.close()


TestRosterMerge = RosterMachine.TestCase
TestRosterMerge.settings = settings(max_examples=60, stateful_step_count=25, deadline=None)


@settings(max_examples=300, deadline=None)
@given(valid_from=st.one_of(st.none(), st.integers(-400 * TICKS_PER_DAY, 400 * TICKS_PER_DAY).map(NOW.__add__)),
       length=st.one_of(st.none(), st.integers(-10 * TICKS_PER_DAY, 400 * TICKS_PER_DAY)))
def test_a_created_window_is_accepted_exactly_when_the_rules_allow_it(valid_from: int | None,
                                                                     length: int | None) -> None:
    valid_until = None if length is None else (valid_from if valid_from is not None else NOW) + length
    try:
        window = window_for_create(valid_from, valid_until, NOW)
    except errors.ServiceError:
        # Refused only for a reason the rules name: an end in the past, an end before the start, a window
        # over 180 days, or a start over 180 days ahead.
        reversed_or_too_long = length is not None and (length < 0 or length > 180 * TICKS_PER_DAY)
        start = NOW if valid_from is None else valid_from
        ends_in_past = (start + 180 * TICKS_PER_DAY if valid_until is None else valid_until) < NOW  # default end
        starts_too_late = valid_from is not None and valid_from > NOW + 180 * TICKS_PER_DAY
        assert ends_in_past or reversed_or_too_long or starts_too_late
        return
    assert window.valid_until >= window.valid_from  # an empty window is allowed, as by ACS
    assert window.valid_until - window.valid_from <= 180 * TICKS_PER_DAY
    assert window.valid_until >= NOW
    if valid_from is not None:
        assert window.valid_from == valid_from
    if valid_until is not None:
        assert window.valid_until == valid_until


@pytest.mark.parametrize("count", [8, 9])
async def test_one_request_may_name_up_to_the_limit(count: int) -> None:
    store = SqliteStore.open(None)
    service = RoomsService(store, FixedClock(NOW), max_participants_per_request=8)
    command = CreateRoom(participants={user_id(n): None for n in range(count)})
    if count <= 8:
        await service.rooms_create(command, ROLES)
    else:
        with pytest.raises(errors.ServiceError) as refused:
            await service.rooms_create(command, ROLES)
        assert refused.value.details[0].code == "TooManyParticipants"
    await store.close()
