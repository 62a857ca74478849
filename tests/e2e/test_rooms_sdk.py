"""Each Rooms client variant against a real `openrooms serve`: every GA api-version, sync and async, over HTTPS
(connection string, trusting the server's CA) and plain HTTP (constructor), on each store. Each runs the
quickstart flow and a handful of error shapes; every other rule is checked once per version and flavour in
process (tests/api), where a socket adds nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from azure.communication.rooms import ParticipantRole
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError

from tests.e2e.rooms_support import (
    MAX_WINDOW,
    NOT_FOUND,
    Rooms,
    assert_sdk_error,
    bad_arguments,
    error_body,
    identifier,
    make_client,
    parse_time,
    participant,
    utc_now,
)
from tests.support import Server, user_id


async def test_quickstart_flow(rooms: Rooms) -> None:
    valid_from = (utc_now() + timedelta(days=1)).replace(microsecond=123456)
    room = await rooms.create_room(valid_from=valid_from, valid_until=valid_from + MAX_WINDOW,
                                   participants=[participant(1, ParticipantRole.PRESENTER), participant(2)])
    assert parse_time(room.valid_from) == valid_from
    assert vars(await rooms.call("get_room", room.id)) == vars(room)

    updated = await rooms.call("update_room", room_id=room.id, valid_from=valid_from,
                               valid_until=valid_from + timedelta(days=2))
    assert parse_time(updated.valid_until) == valid_from + timedelta(days=2)
    assert room.id in {listed.id for listed in await rooms.list_rooms()}

    await rooms.call("add_or_update_participants", room_id=room.id,
                     participants=[participant(3, ParticipantRole.CONSUMER), participant(2, "Presenter")])
    await rooms.call("remove_participants", room_id=room.id, participants=[identifier(1)])
    assert await rooms.roster(room.id) == {user_id(2): "Presenter", user_id(3): "Consumer"}

    assert await rooms.call("delete_room", room.id) is None
    with pytest.raises(ResourceNotFoundError) as caught:
        await rooms.call("get_room", room.id)
    assert_sdk_error(caught.value, 404, error_body("NotFound", NOT_FOUND))


async def test_error_shapes(rooms: Rooms) -> None:
    cases: list[tuple[int, dict[str, Any], str, dict[str, Any]]] = [
        (400, bad_arguments(("The time range end is in the past.", "ValidUntil")), "create_room",
         {"valid_from": utc_now() - timedelta(days=2), "valid_until": utc_now() - timedelta(days=1)}),
        (400, error_body("BadRequest", "Invalid format for communication identifier."), "create_room",
         {"participants": [participant("wrong_mri")]}),
        (400, error_body("BadRequest", "Invalid room ID length."), "get_room", {"room_id": "123"}),
        (404, error_body("NotFound", NOT_FOUND), "delete_room", {"room_id": "99999999999999999"}),
    ]
    for status, expected, operation, kwargs in cases:
        with pytest.raises(HttpResponseError) as caught:
            await rooms.call(operation, **kwargs)
        assert_sdk_error(caught.value, status, expected)


@pytest.mark.parametrize("transport", ["https", "http"])
def test_a_wrong_key_is_denied(request: pytest.FixtureRequest, store_kind: str, transport: str) -> None:
    server: Server = request.getfixturevalue(f"{transport}_server")
    wrong = Server(server.process, server.port, server.location, server.tls,
                   access_key="MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
    with make_client(wrong, "sync", None) as client, pytest.raises(ClientAuthenticationError) as caught:
        client.create_room()
    assert caught.value.status_code == 401
    assert caught.value.error is not None and caught.value.error.code == "Denied"
