"""Requests as the az extension and the SDKs send them, answered in process: the bodies on the wire are those the
real service answered in its recordings (the az extension's tests/latest/recordings, the JS Identity SDK's
recordings and tests), byte for byte where the recording has them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from openrooms.config import Settings
from openrooms.http.app import create_app
from openrooms.http.pipeline import Pipeline
from openrooms.service.clock import TICKS_PER_SECOND, FixedClock
from openrooms.store.sqlite import SqliteStore
from tests.support import sign_headers, user_id

HOST = "test"
ROOMS = "api-version=2025-03-13"
IDENTITY = "api-version=2023-10-01"
NOW = datetime(2023, 3, 30, 12, 0, tzinfo=UTC)
MERGE_PATCH = "application/merge-patch+json"


@pytest.fixture
async def app() -> AsyncIterator[Pipeline]:
    store = SqliteStore.open(None)
    clock = FixedClock(int(NOW.timestamp()) * TICKS_PER_SECOND)
    yield create_app(Settings(in_memory=True), store=store, clock=clock)
    await store.close()


async def call(app: Pipeline, method: str, path_and_query: str, body: Any = None,
               content_type: str = "application/json") -> httpx.Response:
    content = b"" if body is None else json.dumps(body).encode()
    headers = {**sign_headers(method, path_and_query, HOST, content, date=format_datetime(NOW, usegmt=True)),
               "Content-Type": content_type}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{HOST}") as client:
        return await client.request(method, path_and_query, content=content, headers=headers)


def assert_error(response: httpx.Response, status: int, body: dict[str, Any]) -> None:
    assert (response.status_code, response.json()) == (status, body)
    assert response.headers["x-ms-error-code"] == body["error"]["code"]


async def new_room(app: Pipeline) -> str:
    created = await call(app, "POST", f"/rooms?{ROOMS}", {"validFrom": None, "validUntil": None,
                                                          "pstnDialOutEnabled": False})
    assert created.status_code == 201
    return str(created.json()["id"])


# Times as az sends them ---------------------------------------------------------------------------------------
async def test_az_update_with_a_date_only_valid_until(app: Pipeline) -> None:
    """`az communication rooms update --valid-from 2022-11-22T19:14:59.829926+00:00 --valid-until 2022-11-23`
    (test_rooms_update_expired_validUntil): the date is read as a date, and its end is in the past."""
    room_id = await new_room(app)
    response = await call(app, "PATCH", f"/rooms/{room_id}?{ROOMS}", {
        "validFrom": "2022-11-22T19:14:59.829926+00:00", "validUntil": "2022-11-23", "pstnDialOutEnabled": None,
    }, MERGE_PATCH)
    assert_error(response, 400, {"error": {
        "code": "BadRequest", "message": "The request could not be understood by the server due to malformed syntax.",
        "details": [{"code": "BadArgument", "message": "The time range end is in the past.", "target": "ValidUntil"}],
    }})


async def test_az_create_with_the_forms_of_its_help(app: Pipeline) -> None:
    """az's help writes `2023-03-31T10:21` (minutes, no zone: UTC); a date alone is that day's midnight, UTC."""
    response = await call(app, "POST", f"/rooms?{ROOMS}", {
        "validFrom": "2023-03-31T10:21", "validUntil": "2023-04-01", "pstnDialOutEnabled": False,
    })
    assert response.status_code == 201
    room = response.json()
    assert (room["validFrom"], room["validUntil"]) == ("2023-03-31T10:21:00+00:00", "2023-04-01T00:00:00+00:00")


async def test_other_time_forms_keep_their_answer(app: Pipeline) -> None:
    room_id = await new_room(app)
    response = await call(app, "PATCH", f"/rooms/{room_id}?{ROOMS}",
                          {"validFrom": "2023-03-31T10:21", "validUntil": "2023-03-31T11"}, MERGE_PATCH)
    assert_error(response, 400, {"error": {
        "code": "BadRequest", "message": "The request could not be understood by the server due to malformed syntax.",
        "details": [{"code": "BadArgument", "target": "ValidUntil",
                     "message": "'2023-03-31T11' is not an RFC 3339 date-time (e.g. 2030-01-31T12:00:00Z)."}],
    }})


# Participant ids as az sends them ------------------------------------------------------------------------------
async def test_az_participant_add_with_an_acs_id_of_no_user_form(app: Pipeline) -> None:
    """test_rooms_add_invalid_consumer_participant: `--consumer-participants 8:acs:123456c`."""
    room_id = await new_room(app)
    response = await call(app, "PATCH", f"/rooms/{room_id}/participants?{ROOMS}",
                          {"participants": {"8:acs:123456c": {"role": "Consumer"}}}, MERGE_PATCH)
    assert_error(response, 400, {"error": {"code": "BadRequest",
                                           "message": "Communication identifier 8:acs:123456c is not supported."}})
    created = await call(app, "POST", f"/rooms?{ROOMS}", {"participants": {
        user_id(1): {"role": "Presenter"}, "8:acs:123456c": {"role": "Consumer"}}})
    assert_error(created, 400, {"error": {"code": "BadRequest",
                                          "message": "Communication identifier 8:acs:123456c is not supported."}})


async def test_sdk_roster_update_with_an_id_of_no_user_form(app: Pipeline) -> None:
    """The Python SDK's test_add_or_update_participants_incorrectMri: in a roster update, `wrong_mri` too is
    "not supported" (in a create it has an "invalid format", below)."""
    room_id = await new_room(app)
    response = await call(app, "PATCH", f"/rooms/{room_id}/participants?{ROOMS}", {"participants": {
        "wrong_mri": {"role": "Attendee"}, user_id(1): {"role": "Presenter"}}}, MERGE_PATCH)
    assert_error(response, 400, {"error": {"code": "BadRequest",
                                           "message": "Communication identifier wrong_mri is not supported."}})


async def test_az_create_with_an_id_of_no_known_format(app: Pipeline) -> None:
    """test_rooms_create_with_invalid_participants_MRI: `--presenter-participants acs:8-invalidMRI`."""
    response = await call(app, "POST", f"/rooms?{ROOMS}", {
        "validFrom": None, "validUntil": None, "pstnDialOutEnabled": False,
        "participants": {"acs:8-invalidMRI": {"role": "Presenter"}},
    })
    assert_error(response, 400, {"error": {"code": "BadRequest",
                                           "message": "Invalid format for communication identifier."}})


# Identity, as the JS SDK's tests call it -----------------------------------------------------------------------
def identity_path(raw_id: str, operation: str = "") -> str:
    # The SDKs percent-encode the id in the path.
    return f"/identities/{raw_id.replace(':', '%3A')}{operation}?{IDENTITY}"


async def test_get_token_with_no_scopes(app: Pipeline) -> None:
    created = await call(app, "POST", f"/identities?{IDENTITY}")
    raw_id = created.json()["identity"]["id"]
    response = await call(app, "POST", identity_path(raw_id, "/:issueAccessToken"), {"scopes": []})
    assert_error(response, 400, {"error": {"code": "ValidationError",
                                           "message": "Invalid scopes - Scopes field is required.",
                                           "target": "scopes"}})


async def test_a_user_of_another_resource(app: Pipeline) -> None:
    fake_user = "8:acs:00000000-0000-0000-0000-000000000000_00000000-0000-0000-0000-000000000000"
    not_owned = {"error": {"code": "IdentityNotOwned", "message": "Provided identity doesn't belong to the resource."}}
    for method, operation, body in (("POST", "/:issueAccessToken", {"scopes": ["chat", "voip"]}),
                                    ("POST", "/:revokeAccessTokens", None), ("DELETE", "", None)):
        assert_error(await call(app, method, identity_path(fake_user, operation), body), 401, not_owned)
