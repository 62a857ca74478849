"""Every Rooms operation through the official Python SDK, sync and async, at each GA api-version."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from azure.communication.rooms import CommunicationRoom, ParticipantRole
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from tests.e2e.rooms_support import (
    MAX_WINDOW,
    NOT_FOUND,
    Rooms,
    assert_sdk_error,
    bad_arguments,
    error_body,
    identifier,
    parse_time,
    participant,
    utc_now,
)
from tests.support import user_id


def whole_and_fraction(text: str) -> tuple[datetime, str]:
    """A wire timestamp split into its whole seconds and its fraction digits, so that the 100 ns ticks
    that datetime cannot hold still compare exactly."""
    match = re.fullmatch(r"([^.]+?)(?:\.(\d+))?\+00:00", text)
    assert match, f"{text!r} is not in the +00:00 form"
    return datetime.fromisoformat(match[1] + "+00:00"), match[2] or ""


def expected_pstn(rooms: Rooms, value: bool) -> bool | None:
    return value if rooms.has_pstn else None


async def test_create_room_defaults(rooms: Rooms) -> None:
    before = utc_now()
    room = await rooms.create_room()
    after = utc_now()

    assert re.fullmatch(r"\d{16,18}", room.id)
    assert room.valid_from == room.created_at
    assert before <= parse_time(room.valid_from) <= after
    start, start_fraction = whole_and_fraction(room.valid_from)
    end, end_fraction = whole_and_fraction(room.valid_until)
    assert (end - start, end_fraction) == (MAX_WINDOW, start_fraction)
    assert room.pstn_dial_out_enabled is expected_pstn(rooms, False)


async def test_create_room_echoes_an_explicit_window_to_the_microsecond(rooms: Rooms) -> None:
    valid_from = (utc_now() + timedelta(days=1)).replace(microsecond=123456)
    valid_until = (valid_from + timedelta(days=30)).replace(microsecond=654321)
    room = await rooms.create_room(valid_from=valid_from, valid_until=valid_until, pstn_dial_out_enabled=True)

    assert parse_time(room.valid_from) == valid_from
    assert parse_time(room.valid_until) == valid_until
    # At 2023-06-14 the field does not exist: the SDK sends it anyway and the server ignores it.
    assert room.pstn_dial_out_enabled is expected_pstn(rooms, True)
    assert await rooms.call("get_room", room.id) == room


async def test_create_room_accepts_a_start_in_the_past_and_exactly_180_days(rooms: Rooms) -> None:
    valid_from = (utc_now() - timedelta(days=3)).replace(microsecond=0)
    room = await rooms.create_room(valid_from=valid_from, valid_until=valid_from + MAX_WINDOW)
    assert (parse_time(room.valid_from), parse_time(room.valid_until)) == (valid_from, valid_from + MAX_WINDOW)


async def test_create_room_with_participants(rooms: Rooms) -> None:
    room = await rooms.create_room(
        participants=[
            participant(1, ParticipantRole.PRESENTER),
            participant(2, ParticipantRole.CONSUMER),
            participant(3, ParticipantRole.ATTENDEE),
            participant(4),  # no role: the SDK sends Attendee
        ]
    )
    assert await rooms.roster(room.id) == {
        user_id(1): "Presenter",
        user_id(2): "Consumer",
        user_id(3): "Attendee",
        user_id(4): "Attendee",
    }


async def test_get_room_returns_the_created_room(rooms: Rooms) -> None:
    created = await rooms.create_room(pstn_dial_out_enabled=True)
    fetched = await rooms.call("get_room", created.id)
    assert isinstance(fetched, CommunicationRoom)
    assert vars(fetched) == vars(created)


async def test_update_room_window(rooms: Rooms) -> None:
    room = await rooms.create_room()
    valid_from = (utc_now() + timedelta(hours=2)).replace(microsecond=5)
    valid_until = valid_from + timedelta(days=2, microseconds=7)

    updated = await rooms.call("update_room", room_id=room.id, valid_from=valid_from, valid_until=valid_until)

    assert (updated.id, updated.created_at) == (room.id, room.created_at)
    assert (parse_time(updated.valid_from), parse_time(updated.valid_until)) == (valid_from, valid_until)
    assert updated.pstn_dial_out_enabled is expected_pstn(rooms, False)
    assert vars(await rooms.call("get_room", room.id)) == vars(updated)


async def test_update_room_pstn_alone_keeps_the_window(rooms: Rooms) -> None:
    room = await rooms.create_room()
    updated = await rooms.call("update_room", room_id=room.id, pstn_dial_out_enabled=True)
    assert (updated.valid_from, updated.valid_until) == (room.valid_from, room.valid_until)
    assert updated.pstn_dial_out_enabled is expected_pstn(rooms, True)

    updated = await rooms.call("update_room", room_id=room.id)  # nothing to change
    assert vars(updated) == {**vars(room), "pstn_dial_out_enabled": expected_pstn(rooms, True)}


async def test_delete_room(rooms: Rooms) -> None:
    room = await rooms.create_room(participants=[participant(1)])
    assert await rooms.call("delete_room", room.id) is None

    for operation, args in [("get_room", (room.id,)), ("delete_room", (room.id,)), ("list_participants", (room.id,))]:
        with pytest.raises(ResourceNotFoundError) as caught:
            await rooms.call(operation, *args)
        assert_sdk_error(caught.value, 404, error_body("NotFound", NOT_FOUND))


async def test_list_rooms_includes_new_rooms(rooms: Rooms) -> None:
    created = [await rooms.create_room(pstn_dial_out_enabled=bool(n % 2)) for n in range(3)]
    listed = {room.id: room for room in await rooms.list_rooms()}
    for room in created:
        assert vars(listed[room.id]) == vars(room)


async def test_participants_add_rerole_and_remove(rooms: Rooms) -> None:
    room = await rooms.create_room(participants=[participant(1, ParticipantRole.PRESENTER)])

    result = await rooms.call(
        "add_or_update_participants",
        room_id=room.id,
        participants=[participant(2, ParticipantRole.CONSUMER), participant(3), participant(1, "Attendee")],
    )
    assert result is None
    assert await rooms.roster(room.id) == {user_id(1): "Attendee", user_id(2): "Consumer", user_id(3): "Attendee"}

    # Participants or bare identifiers; someone never in the room is no error.
    await rooms.call("remove_participants", room_id=room.id, participants=[participant(2), identifier(99)])
    assert await rooms.roster(room.id) == {user_id(1): "Attendee", user_id(3): "Attendee"}

    await rooms.call("remove_participants", room_id=room.id, participants=[identifier(1), identifier(3)])
    assert await rooms.roster(room.id) == {}


async def test_collaborator_role_exists_from_2025_03_13(rooms: Rooms) -> None:
    room = await rooms.create_room()
    add = rooms.call(
        "add_or_update_participants", room_id=room.id, participants=[participant(1, ParticipantRole.COLLABORATOR)]
    )
    if rooms.api_version == "2025-03-13":
        await add
        assert await rooms.roster(room.id) == {user_id(1): "Collaborator"}
        return
    with pytest.raises(HttpResponseError) as caught:
        await add
    assert_sdk_error(
        caught.value,
        400,
        bad_arguments(
            (
                "Invalid participant role. The valid roles are: Presenter, Attendee, Consumer.",
                f"$.participants.{user_id(1)}.role",
            )
        ),
    )
    assert await rooms.roster(room.id) == {}
