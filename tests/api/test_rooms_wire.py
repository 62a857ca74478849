"""What the SDK cannot send: raw requests for api-versions, authentication, bodies, idempotency and timestamps."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from azure.core.exceptions import ClientAuthenticationError

from openrooms.config import DEV_SECONDARY_KEY
from tests.api.inprocess import HOST, InProcess
from tests.e2e.rooms_support import (
    MALFORMED_REQUEST,
    NOT_FOUND,
    assert_wire_error,
    bad_arguments,
    error_body,
    make_client,
    room_count,
)
from tests.support import sign_headers, user_id

API = "?api-version=2025-03-13"
ALL_VERSIONS = [
    "2023-03-31-preview",
    "2023-06-14",
    "2023-10-30-preview",
    "2024-04-15",
    "2025-02-28-preview",
    "2025-03-13",
]
OTHER_KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="


def create(server: InProcess, body: dict[str, Any] | bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return server.request("POST", "/rooms" + API, content, headers)


# api-versions ----------------------------------------------------------------------------------------------
def assert_supported_versions_header(response: httpx.Response) -> None:
    assert [v.strip() for v in response.headers["api-supported-versions"].split(",")] == ALL_VERSIONS


@pytest.mark.parametrize("path", ["/rooms", "/rooms/12345678901234567", "/rooms/12345678901234567/participants"])
def test_missing_api_version(api: InProcess, path: str) -> None:
    response = api.request("GET", path)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], response.headers["x-ms-error-code"]) == ("MissingApiVersionParameter",) * 2
    assert all(version in error["message"] for version in ALL_VERSIONS), error["message"]
    assert_supported_versions_header(response)


@pytest.mark.parametrize("version", ["2022-02-01-preview", "2021-04-07-preview1", "2025-13-01", "latest"])
def test_unsupported_api_version(api: InProcess, version: str) -> None:
    response = api.request("GET", f"/rooms?api-version={version}")
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], response.headers["x-ms-error-code"]) == ("UnsupportedApiVersion",) * 2
    assert f"'{version}'" in error["message"]
    assert all(v in error["message"] for v in ALL_VERSIONS), error["message"]
    assert_supported_versions_header(response)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_every_supported_version_answers_with_the_supported_list(api: InProcess, version: str) -> None:
    response = api.request("GET", f"/rooms?api-version={version}&maxpagesize=1")
    assert response.status_code == 200, response.text
    assert_supported_versions_header(response)
    assert response.headers["content-type"] == "application/json; charset=utf-8"


# Authentication --------------------------------------------------------------------------------------------
def assert_denied(response: httpx.Response, message: str | None = None) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["x-ms-error-code"] == "Denied"
    error = response.json()["error"]
    assert set(error) == {"code", "message"} and error["code"] == "Denied"
    if message is not None:
        assert error["message"] == message


def test_unsigned_request_is_denied(api: InProcess) -> None:
    assert_denied(api.request("GET", "/rooms" + API, sign=False))


def test_signature_with_another_key_is_denied(api: InProcess) -> None:
    assert_denied(api.request("GET", "/rooms" + API, key=OTHER_KEY), "Denied by the resource provider.")


def test_tampered_path_is_denied(api: InProcess) -> None:
    headers = sign_headers("GET", "/rooms" + API, HOST)
    response = api.request("GET", "/rooms?api-version=2024-04-15", headers=headers, sign=False)
    assert_denied(response, "Denied by the resource provider.")


def test_body_not_matching_its_content_hash_is_denied(api: InProcess) -> None:
    host = HOST
    headers = sign_headers("POST", "/rooms" + API, host, b'{"pstnDialOutEnabled": false}')
    response = api.request("POST", "/rooms" + API, b'{"pstnDialOutEnabled": true}', headers, sign=False)
    assert_denied(response, "Request 'x-ms-content-sha256' differs from generated content hash.")


@pytest.mark.parametrize(
    ("age", "accepted"),
    [
        (timedelta(minutes=4), True),
        (timedelta(minutes=6), False),
        (timedelta(minutes=-4), True),
        (timedelta(minutes=-6), False),
    ],
)
def test_request_date_must_be_within_five_minutes(api: InProcess, age: timedelta, accepted: bool) -> None:
    date = format_datetime(datetime.now(UTC) - age, usegmt=True)
    headers = sign_headers("GET", "/rooms" + API, HOST, date=date)
    response = api.request("GET", "/rooms" + API, headers=headers, sign=False)
    if accepted:
        assert response.status_code == 200, response.text
    else:
        assert_denied(response)


def test_secondary_key_is_accepted(api: InProcess) -> None:
    response = api.request("GET", "/rooms" + API, key=DEV_SECONDARY_KEY)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("key", [DEV_SECONDARY_KEY, OTHER_KEY])
def test_sdk_with_secondary_or_wrong_key(api: InProcess, key: str) -> None:
    with make_client(api.with_key(key), "sync", None) as client:
        if key == DEV_SECONDARY_KEY:
            assert client.get_room(client.create_room().id).id
            return
        with pytest.raises(ClientAuthenticationError) as caught:
            client.create_room()
    assert caught.value.status_code == 401
    assert caught.value.error is not None and caught.value.error.code == "Denied"


def test_healthz_needs_no_signature(api: InProcess) -> None:
    response = api.request("GET", "/healthz", sign=False)
    assert response.status_code == 200


# Bodies ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "target"),
    [
        (b"{", "$"),
        (b"[]", "$"),
        (b'{"pstnDialOutEnabled": "yes"}', "$.pstnDialOutEnabled"),
        (b'{"validFrom": 5}', "$.validFrom"),
        (b'{"participants": []}', "$.participants"),
        (b'{"participants": {"x": {"role": 5}}}', "$.participants[...].role"),
    ],
)
def test_malformed_json_names_the_path(api: InProcess, body: bytes, target: str) -> None:
    before = room_count(api)
    response = create(api, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["message"]) == ("BadRequest", MALFORMED_REQUEST)
    assert [(d["code"], d["target"]) for d in error["details"]] == [("BadArgument", target)]
    assert response.headers["x-ms-error-code"] == "BadRequest"
    assert room_count(api) == before


def test_malformed_json_in_updates(api: InProcess) -> None:
    room_id = create(api, {}).json()["id"]
    response = api.request("PATCH", f"/rooms/{room_id}{API}", b'{"validUntil": true}')
    assert [d["target"] for d in response.json()["error"]["details"]] == ["$.validUntil"]
    response = api.request("PATCH", f"/rooms/{room_id}/participants{API}", b'{"participants": 1}')
    assert [d["target"] for d in response.json()["error"]["details"]] == ["$.participants"]


@pytest.mark.parametrize("field", ["validFrom", "validUntil"])
def test_timestamp_that_is_not_rfc3339(api: InProcess, field: str) -> None:
    response = create(api, {field: "next tuesday"})
    assert response.status_code == 400
    details = response.json()["error"]["details"]
    assert [(d["code"], d["target"]) for d in details] == [("BadArgument", field[0].upper() + field[1:])]


def test_body_too_large(api: InProcess) -> None:
    padding = "x" * (1024 * 1024)
    response = create(api, {"participants": {}, "padding": padding})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == response.headers["x-ms-error-code"] == "RequestEntityTooLarge"


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/nowhere" + API), ("GET", "/rooms/1234567890123456/x" + API), ("POST", "/")]
)
def test_unknown_path(api: InProcess, method: str, path: str) -> None:
    assert_wire_error(api.request(method, path), 404, error_body("NotFound", NOT_FOUND))


def test_empty_and_null_bodies(api: InProcess) -> None:
    # The shapes the SDKs send: Python nulls, JS an empty roster, .NET an empty object.
    for body in [
        b"",
        b"{}",
        b'{"participants": {}}',
        b'{"validFrom": null, "validUntil": null, "pstnDialOutEnabled": false}',
    ]:
        response = create(api, body)
        assert response.status_code == 201, response.text
        room = response.json()
        assert list(room) == ["id", "createdAt", "validFrom", "validUntil", "pstnDialOutEnabled"]
        assert response.headers["location"] == room["id"]
        assert response.headers["content-type"] == "application/json; charset=utf-8"


# Idempotent create -----------------------------------------------------------------------------------------
def repeatability(request_id: str | None = None) -> dict[str, str]:
    return {
        "Repeatability-Request-ID": request_id or str(uuid.uuid4()),
        "Repeatability-First-Sent": format_datetime(datetime.now(UTC), usegmt=True),
    }


def test_repeated_create_answers_the_first_response(api: InProcess) -> None:
    headers = repeatability()
    body = {"pstnDialOutEnabled": True, "participants": {user_id(1): {"role": "Presenter"}}}
    before = room_count(api)
    first = create(api, body, headers)
    again = create(api, body, headers)

    assert first.status_code == again.status_code == 201, first.text
    assert again.content == first.content
    assert first.headers["repeatability-result"] == again.headers["repeatability-result"] == "accepted"
    assert first.headers["location"] == again.headers["location"] == first.json()["id"]
    assert room_count(api) == before + 1


def test_repeated_request_id_with_another_body_is_rejected(api: InProcess) -> None:
    headers = repeatability()
    first = create(api, {"pstnDialOutEnabled": True}, headers)
    assert first.status_code == 201
    before = room_count(api)
    other = create(api, {"pstnDialOutEnabled": False}, headers)
    assert other.status_code == 409, other.text
    assert other.headers["repeatability-result"] == "rejected"
    assert other.json()["error"]["code"] == other.headers["x-ms-error-code"]
    assert room_count(api) == before


def test_create_without_repeatability_headers_says_nothing_of_it(api: InProcess) -> None:
    response = create(api, {})
    assert response.status_code == 201
    assert "repeatability-result" not in response.headers


# Timestamps ------------------------------------------------------------------------------------------------
def base_second() -> datetime:
    """A whole second one day ahead: far enough to be valid, near enough to leave room for a window."""
    return (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)


def wire(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


@pytest.mark.parametrize(
    ("suffix", "offset", "echoed_suffix"),
    [
        ("Z", timedelta(0), "+00:00"),
        ("+00:00", timedelta(0), "+00:00"),
        (".000Z", timedelta(0), "+00:00"),
        (".5Z", timedelta(0), ".5+00:00"),
        (".1200000Z", timedelta(0), ".12+00:00"),
        (".123456Z", timedelta(0), ".123456+00:00"),
        (".1234567Z", timedelta(0), ".1234567+00:00"),
        (".123456789Z", timedelta(0), ".1234567+00:00"),  # nine digits in, seven kept
        (".0000001Z", timedelta(0), ".0000001+00:00"),
        ("+02:00", timedelta(hours=2), "+00:00"),
        (".25-05:30", timedelta(hours=-5, minutes=-30), ".25+00:00"),
    ],
)
def test_timestamps_are_echoed_in_utc(api: InProcess, suffix: str, offset: timedelta, echoed_suffix: str) -> None:
    local = base_second()  # the wall time as written; the instant is local - offset
    until_local = local + timedelta(days=1)
    response = create(api, {"validFrom": wire(local) + suffix, "validUntil": wire(until_local) + suffix})
    assert response.status_code == 201, response.text
    room = response.json()
    assert room["validFrom"] == wire(local - offset) + echoed_suffix
    assert room["validUntil"] == wire(until_local - offset) + echoed_suffix
    assert room["createdAt"].endswith("+00:00")
    fetched = api.request("GET", f"/rooms/{room['id']}{API}").json()
    assert fetched == room


@pytest.mark.parametrize(
    "text",
    [
        "2030-01-01T00:00:00+99:99",  # offsets run from -23:59 to +23:59
        "2030-01-01T00:00:00+24:00",
        "2030-01-01T00:00:00-05:60",
        "2030-02-30T00:00:00Z",
        "2030-01-01T24:00:00Z",
        "2030-01-01T00:00:00.Z",
        "2030-01-01Z",  # a date alone is read (as midnight UTC), but has no zone
    ],
)
def test_timestamps_that_are_not_instants_are_refused(api: InProcess, text: str) -> None:
    response = create(api, {"validFrom": text})
    assert_wire_error(
        response,
        400,
        bad_arguments((f"'{text}' is not an RFC 3339 date-time (e.g. 2030-01-31T12:00:00Z).", "ValidFrom")),
    )


def test_update_echoes_timestamps_the_same_way(api: InProcess) -> None:
    room_id = create(api, {}).json()["id"]
    start = base_second()
    body = {"validFrom": wire(start) + ".100Z", "validUntil": wire(start + timedelta(days=2)) + ".999999999+00:00"}
    response = api.request(
        "PATCH", f"/rooms/{room_id}{API}", json.dumps(body).encode(), {"content-type": "application/merge-patch+json"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["validFrom"] == wire(start) + ".1+00:00"
    assert response.json()["validUntil"] == wire(start + timedelta(days=2)) + ".9999999+00:00"


def test_window_errors_count_the_sub_second_digits(api: InProcess) -> None:
    # Exactly 180 days is allowed; one tick (100 ns) more is not.
    start = base_second()
    end = start + timedelta(days=180)
    assert create(api, {"validFrom": wire(start) + "Z", "validUntil": wire(end) + "Z"}).status_code == 201
    response = create(api, {"validFrom": wire(start) + "Z", "validUntil": wire(end) + ".0000001Z"})
    assert_wire_error(
        response, 400, bad_arguments(("The time range is incorrect, or larger than 180 days.", "ValidUntil"))
    )


def test_trailing_slash_is_an_unknown_path_not_a_redirect(api: InProcess) -> None:
    response = api.request("GET", "/rooms/12345678901234567/?api-version=2025-03-13")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NotFound"
    assert response.headers["x-ms-error-code"] == "NotFound"
