"""Limits: every oversize request gets a clear ACS error envelope, never a 500, and changes nothing."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Server, running_server, user_id

V = "api-version=2025-03-13"


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(
        tmp_path_factory.mktemp("limits"), "--max-participants-per-room", "5",
        "--max-participants-per-request", "3", "--max-body-bytes", "300000", tls=False,
    ) as server:
        yield server


def roster_body(numbers: range, role: str | None = "Attendee") -> bytes:
    participants = {user_id(n): None if role is None else {"role": role} for n in numbers}
    return json.dumps({"participants": participants}).encode()


def error_of(response: object) -> dict[str, object]:
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"}, body
    return body["error"]  # type: ignore[no-any-return]


def roster(server: Server, room_id: str) -> set[str]:
    response = server.request("GET", f"/rooms/{room_id}/participants?{V}")
    assert response.status_code == 200, response.text
    return {p["rawId"] for p in response.json()["value"]}


def test_a_create_naming_more_participants_than_one_request_may_is_refused(small_server: Server) -> None:
    response = small_server.request("POST", f"/rooms?{V}", roster_body(range(4)))
    assert response.status_code == 400
    error = error_of(response)
    assert error["details"][0]["code"] == "TooManyParticipants"  # type: ignore[index]
    assert "at most 3" in error["details"][0]["message"]  # type: ignore[index]


def test_a_roster_cannot_grow_past_the_room_limit_and_a_refused_change_changes_nothing(small_server: Server) -> None:
    created = small_server.request("POST", f"/rooms?{V}", roster_body(range(3)))
    assert created.status_code == 201, created.text
    room_id = created.json()["id"]
    path = f"/rooms/{room_id}/participants?{V}"
    assert small_server.request("PATCH", path, roster_body(range(3, 5)),
                                {"content-type": "application/merge-patch+json"}).status_code == 200
    assert roster(small_server, room_id) == {user_id(n) for n in range(5)}

    # One removal and two additions: 6 > 5, refused whole (the removal is not applied either).
    change = json.dumps({"participants": {user_id(0): None, user_id(10): {}, user_id(11): {}}}).encode()
    refused = small_server.request("PATCH", path, change, {"content-type": "application/merge-patch+json"})
    assert refused.status_code == 400
    details = error_of(refused)["details"]
    assert details[0]["code"] == "TooManyParticipants" and "at most 5" in details[0]["message"]  # type: ignore[index]
    assert roster(small_server, room_id) == {user_id(n) for n in range(5)}

    # Re-roling someone in a full room, and swapping one person for another, still work.
    swap = json.dumps({"participants": {user_id(0): None, user_id(10): {"role": "Presenter"}}}).encode()
    merge_patch = {"content-type": "application/merge-patch+json"}
    assert small_server.request("PATCH", path, swap, merge_patch).status_code == 200
    assert roster(small_server, room_id) == {user_id(n) for n in (1, 2, 3, 4, 10)}


def test_a_body_over_the_limit_is_413_in_the_envelope(small_server: Server) -> None:
    response = small_server.request("POST", f"/rooms?{V}", b" " * 300_001)
    assert response.status_code == 413
    assert error_of(response)["code"] == "RequestEntityTooLarge"


def test_json_nested_deeper_than_the_decoder_goes_is_a_400(small_server: Server) -> None:
    # An unknown field is skipped, nesting and all: the decoder recursed until Python's limit (was a 500).
    deep = b'{"unknownField": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    for path in (f"/rooms?{V}", "/identities?api-version=2023-10-01"):
        response = small_server.request("POST", path, deep)
        assert response.status_code == 400, response.text
        assert "nested too deeply" in json.dumps(error_of(response))


def test_long_strings_and_many_keys_are_refused_not_crashed_on(small_server: Server) -> None:
    long_id = json.dumps({"participants": {"8:acs:" + "a" * 200_000: {}}}).encode()
    response = small_server.request("POST", f"/rooms?{V}", long_id)
    assert response.status_code == 400
    many = roster_body(range(20_000), role=None)[:299_000]  # truncated: also malformed
    assert small_server.request("PATCH", f"/rooms/1234567890123456/participants?{V}", many).status_code == 400


def _raw_status(port: int, headers: list[tuple[str, str]]) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        request = "GET /healthz HTTP/1.1\r\nHost: x\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
        try:
            conn.sendall(request.encode())
            return conn.recv(100).split(b"\r\n")[0].decode()
        except OSError:
            return "connection closed"


@pytest.mark.parametrize("server_name", ["granian", "uvicorn"])
def test_header_limits_are_the_http_servers_and_never_a_500(tmp_path: Path, server_name: str) -> None:
    with running_server(tmp_path, "--server", server_name, tls=False) as server:
        assert _raw_status(server.port, [("x-big", "a" * 60_000)]).endswith("200 OK")
        for headers in ([("x-big", "a" * 2_000_000)], [(f"x-h{i}", "v") for i in range(120)]):
            status = _raw_status(server.port, headers)
            assert " 5" not in status[8:], status  # 200/400/431, or the connection closed: never 5xx
        assert server.request("GET", f"/rooms?{V}").status_code == 200  # and it keeps serving
