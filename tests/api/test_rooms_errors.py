"""The error catalogue of the Rooms API, as the Python SDK reports it, at each GA api-version.

Each case asserts the status, the error code, the message and every detail exactly, both as the SDK parses
it (`HttpResponseError.error`) and as it came over the wire, with `x-ms-error-code` naming the code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from azure.communication.rooms import ParticipantRole
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from tests.api.inprocess import InProcess
from tests.e2e.rooms_support import (
    MAX_WINDOW,
    NOT_FOUND,
    Rooms,
    assert_sdk_error,
    assert_wire_error,
    bad_arguments,
    error_body,
    participant,
    utc_now,
)
from tests.support import user_id

UNTIL_IN_PAST = ("The time range end is in the past.", "ValidUntil")
RANGE_INCORRECT = ("The time range is incorrect, or larger than 180 days.", "ValidUntil")
FROM_TOO_FAR = ("Value is incorrect or more than 180 days in the future.", "ValidFrom")
BOUNDS_NOT_TOGETHER = ("validFrom and validUntil should be set together.", "")
INVALID_FORMAT = error_body("BadRequest", "Invalid format for communication identifier.")
DAY = timedelta(days=1)

# (valid_from, valid_until) relative to now -> the details of the 400.
WINDOW_ERRORS: dict[str, tuple[Callable[[datetime], tuple[datetime, datetime]], list[tuple[str, str]]]] = {
    "until-in-past": (lambda now: (now - 2 * DAY, now - DAY), [UNTIL_IN_PAST]),
    # An end in the past is reported alone, even when the range is wrong too.
    "until-in-past-wins": (lambda now: (now - 400 * DAY, now - DAY), [UNTIL_IN_PAST]),
    "range-over-180-days": (lambda now: (now + DAY, now + DAY + MAX_WINDOW + timedelta(seconds=1)), [RANGE_INCORRECT]),
    "until-before-from": (lambda now: (now + 10 * DAY, now + 5 * DAY), [RANGE_INCORRECT]),
    "from-too-far": (lambda now: (now + 181 * DAY, now + 182 * DAY), [FROM_TOO_FAR]),
    "from-too-far-and-range": (lambda now: (now + 181 * DAY, now + 400 * DAY), [FROM_TOO_FAR, RANGE_INCORRECT]),
}
MALFORMED_IDS = [
    "wrong_mri",
    "8:acs:123456c",
    "8:acs:nonExistentParticipant",
    "4:+14255550123",
    "8:orgid:45ab2481-1c1c-4005-be24-0ffb879b1130",
    "28:45ab2481-1c1c-4005-be24-0ffb879b1130",
]
WELL_FORMED_UNKNOWN_ROOM = "99999999999999999"
ROOM_ID_ERRORS = {
    "invalid_id": (400, error_body("BadRequest", "Invalid room ID length.")),
    "123": (400, error_body("BadRequest", "Invalid room ID length.")),
    "NotExistingRoomID": (400, error_body("BadRequest", "Invalid room ID.")),
    WELL_FORMED_UNKNOWN_ROOM: (404, error_body("NotFound", NOT_FOUND)),
}


async def expect_error(
    rooms: Rooms, status: int, expected: dict[str, Any], operation: str, *args: Any, **kwargs: Any
) -> None:
    with pytest.raises(HttpResponseError) as caught:
        await rooms.call(operation, *args, **kwargs)
    assert_sdk_error(caught.value, status, expected)
    if status == 404:
        assert isinstance(caught.value, ResourceNotFoundError)


@pytest.mark.parametrize("case", WINDOW_ERRORS, ids=str)
async def test_create_room_window_errors(rooms: Rooms, case: str) -> None:
    window, details = WINDOW_ERRORS[case]
    valid_from, valid_until = window(utc_now())
    await expect_error(
        rooms, 400, bad_arguments(*details), "create_room", valid_from=valid_from, valid_until=valid_until
    )


@pytest.mark.parametrize("case", WINDOW_ERRORS, ids=str)
async def test_update_room_window_errors(rooms: Rooms, case: str) -> None:
    room = await rooms.create_room()
    window, details = WINDOW_ERRORS[case]
    valid_from, valid_until = window(utc_now())
    await expect_error(
        rooms,
        400,
        bad_arguments(*details),
        "update_room",
        room_id=room.id,
        valid_from=valid_from,
        valid_until=valid_until,
    )
    assert vars(await rooms.call("get_room", room.id)) == vars(room)


async def test_update_room_with_one_bound_only(rooms: Rooms) -> None:
    room = await rooms.create_room()
    soon = utc_now() + DAY
    for bound in ("valid_from", "valid_until"):
        await expect_error(
            rooms, 400, bad_arguments(BOUNDS_NOT_TOGETHER), "update_room", room_id=room.id, **{bound: soon}
        )
    assert vars(await rooms.call("get_room", room.id)) == vars(room)


async def test_create_room_default_end_counts_as_a_range(rooms: Rooms) -> None:
    # No validUntil: the end defaults to validFrom + 180 days, which is then checked like a given end.
    await expect_error(rooms, 400, bad_arguments(FROM_TOO_FAR), "create_room", valid_from=utc_now() + 181 * DAY)


@pytest.mark.parametrize("raw_id", MALFORMED_IDS)
async def test_malformed_participant_ids(rooms: Rooms, raw_id: str) -> None:
    # In a create, an id with a user prefix is one of a form not supported, any other has no known format; in a
    # roster update, any id that is no user id is not supported.
    not_supported = error_body("BadRequest", f"Communication identifier {raw_id} is not supported.")
    refused = not_supported if raw_id.startswith("8:acs:") else INVALID_FORMAT
    await expect_error(rooms, 400, refused, "create_room", participants=[participant(raw_id)])
    room = await rooms.create_room(participants=[participant(1)])
    await expect_error(
        rooms, 400, not_supported, "add_or_update_participants", room_id=room.id, participants=[participant(raw_id)]
    )
    await expect_error(
        rooms,
        400,
        error_body("BadRequest", f"Communication identifier {raw_id} is not supported."),
        "remove_participants",
        room_id=room.id,
        participants=[participant(raw_id)],
    )
    assert await rooms.roster(room.id) == {user_id(1): "Attendee"}


@pytest.mark.parametrize("room_id", ROOM_ID_ERRORS)
async def test_room_id_errors_on_every_operation(rooms: Rooms, room_id: str) -> None:
    status, expected = ROOM_ID_ERRORS[room_id]
    soon = utc_now() + DAY
    await expect_error(rooms, status, expected, "get_room", room_id)
    await expect_error(rooms, status, expected, "update_room", room_id=room_id, valid_from=soon, valid_until=soon + DAY)
    await expect_error(rooms, status, expected, "delete_room", room_id)
    await expect_error(rooms, status, expected, "list_participants", room_id)
    await expect_error(
        rooms, status, expected, "add_or_update_participants", room_id=room_id, participants=[participant(1)]
    )
    await expect_error(rooms, status, expected, "remove_participants", room_id=room_id, participants=[participant(1)])


def version_roles(api_version: str) -> str:
    return "Presenter, Attendee, Consumer" + (", Collaborator" if api_version == "2025-03-13" else "")


def invalid_role(api_version: str, raw_id: str) -> dict[str, Any]:
    return bad_arguments(
        (
            f"Invalid participant role. The valid roles are: {version_roles(api_version)}.",
            f"$.participants.{raw_id}.role",
        )
    )


@pytest.mark.parametrize("api_version", ["2023-06-14", "2024-04-15", "2025-03-13"])
def test_invalid_role_on_the_wire(api: InProcess, api_version: str) -> None:
    """The SDK's role enum cannot carry `Kafka`: a raw request can."""
    query = f"?api-version={api_version}"
    body = {"participants": {user_id(1): {"role": "Kafka"}}}
    response = api.request("POST", "/rooms" + query, json.dumps(body).encode())
    assert_wire_error(response, 400, invalid_role(api_version, user_id(1)))

    created = api.request("POST", "/rooms" + query, b"{}")
    assert created.status_code == 201, created.text
    participants_path = f"/rooms/{created.json()['id']}/participants{query}"
    body = {"participants": {user_id(2): {"role": "Presenter"}, user_id(3): {"role": "Kafka"}}}
    response = api.request("PATCH", participants_path, json.dumps(body).encode())
    assert_wire_error(response, 400, invalid_role(api_version, user_id(3)))
    assert api.request("GET", participants_path).json() == {"value": []}


# Atomicity: one bad entry among good ones, and nothing is applied ------------------------------------------
async def test_create_room_with_one_bad_participant_creates_nothing(rooms: Rooms) -> None:
    before = {room.id for room in await rooms.list_rooms()}
    await expect_error(
        rooms,
        400,
        INVALID_FORMAT,
        "create_room",
        participants=[participant(1), participant("wrong_mri"), participant(2)],
    )
    assert {room.id for room in await rooms.list_rooms()} == before


async def test_roster_update_with_one_bad_entry_changes_nothing(rooms: Rooms) -> None:
    room = await rooms.create_room(participants=[participant(1, ParticipantRole.PRESENTER), participant(2)])
    roster = await rooms.roster(room.id)

    await expect_error(
        rooms,
        400,
        error_body("BadRequest", "Communication identifier wrong_mri is not supported."),
        "add_or_update_participants",
        room_id=room.id,
        participants=[participant(1, ParticipantRole.CONSUMER), participant("wrong_mri"), participant(3)],
    )
    await expect_error(
        rooms,
        400,
        error_body("BadRequest", "Communication identifier wrong_mri is not supported."),
        "remove_participants",
        room_id=room.id,
        participants=[participant(1), participant("wrong_mri")],
    )
    assert await rooms.roster(room.id) == roster


def test_mixed_roster_update_with_a_bad_role_changes_nothing(api: InProcess) -> None:
    query = "?api-version=2025-03-13"
    created = api.request(
        "POST", "/rooms" + query, json.dumps({"participants": {user_id(1): {"role": "Presenter"}}}).encode()
    )
    participants_path = f"/rooms/{created.json()['id']}/participants{query}"
    body = {"participants": {user_id(1): None, user_id(2): {"role": "Consumer"}, user_id(3): {"role": "Kafka"}}}
    response = api.request("PATCH", participants_path, json.dumps(body).encode())
    assert_wire_error(response, 400, invalid_role("2025-03-13", user_id(3)))
    assert api.request("GET", participants_path).json() == {
        "value": [{"rawId": user_id(1), "role": "Presenter"}]
    }
