"""What the stores keep of room calls: one media server room per room's call, claimed once by whichever
instance comes first, and the call events in the order they were written."""

from __future__ import annotations

from openrooms.calls.model import CallEvent, CallServer
from openrooms.store.protocol import RoomStore


def server(room_id: str, call_id: str) -> CallServer:
    return CallServer(room_id, "ws://janus.test:8188/", 42, "secret-" + call_id, "pin-" + call_id, call_id, 1000)


async def test_the_first_claim_wins_and_a_release_names_its_call(store: RoomStore) -> None:
    first, second = server("12345678901234567", "a"), server("12345678901234567", "b")
    assert await store.get_call_server(first.room_id) is None
    assert await store.claim_call_server(first) == first
    assert await store.claim_call_server(second) == first  # the room's call is already held
    assert await store.get_call_server(first.room_id) == first
    assert await store.release_call_server(first.room_id, "b") is False  # not that call's any more
    assert await store.release_call_server(first.room_id, "a") is True
    assert await store.get_call_server(first.room_id) is None
    assert await store.claim_call_server(second) == second


async def test_call_events_are_kept_per_room_in_order(store: RoomStore) -> None:
    events = [
        CallEvent("CallStarted", "c1", "12345678901234567", 10),
        CallEvent("CallParticipantAdded", "c1", "12345678901234567", 11, raw_id="8:acs:x_1", role="Presenter",
                  display_name="Ann"),
        CallEvent("CallParticipantAdded", "c9", "76543210987654321", 12, raw_id="8:acs:x_2", role="Attendee"),
        CallEvent("CallParticipantRemoved", "c1", "12345678901234567", 20, raw_id="8:acs:x_1", role="Presenter",
                  duration_ticks=9, end_reason="left"),
        CallEvent("CallEnded", "c1", "12345678901234567", 21, duration_ticks=11, end_reason="AllParticipantsLeft",
                  sub_code=5000),
    ]
    for event in events:
        await store.add_call_event(event)
    kept = await store.list_call_events("12345678901234567")
    assert [e.event_type for e in kept] == ["CallStarted", "CallParticipantAdded", "CallParticipantRemoved",
                                           "CallEnded"]
    assert [e.seq for e in kept] == sorted(e.seq for e in kept)
    assert (kept[1].raw_id, kept[1].role, kept[1].display_name) == ("8:acs:x_1", "Presenter", "Ann")
    assert (kept[2].duration_ticks, kept[2].end_reason, kept[3].sub_code) == (9, "left", 5000)
