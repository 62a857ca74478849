"""`openrooms rooms ...` run as a real process against a real server, checked with the Rooms SDK."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import Cli, roster_of, run_openrooms
from tests.support import Server, refusing_port, running_server, user_id

ROOM_KEYS = ["createdAt", "id", "pstnDialOutEnabled", "validFrom", "validUntil"]  # sorted, as az prints them


def iso(moment: datetime) -> str:
    return moment.isoformat()


def future(days: float) -> datetime:
    return (datetime.now(UTC) + timedelta(days=days)).replace(second=0, microsecond=0)


def same_instant(wire: str, expected: datetime) -> bool:
    return datetime.fromisoformat(wire) == expected


def test_create_prints_the_room_as_the_rest_api_does(cli: Cli, sdk: Any) -> None:
    start, end = future(1), future(30)
    room = cli.json("rooms", "create", "--valid-from", start.strftime("%Y-%m-%dT%H:%M"),
                    "--valid-until", end.strftime("%Y-%m-%dT%H:%M"), "--pstn-dial-out-enabled", "true",
                    "--presenter-participants", user_id(1), user_id(2),
                    "--attendee-participants", user_id(3),
                    "--consumer-participants", user_id(4),
                    "--collaborator-participants", user_id(5))
    assert list(room) == ROOM_KEYS
    # A time without a zone is UTC, as az reads it.
    assert same_instant(room["validFrom"], start) and same_instant(room["validUntil"], end)
    assert room["pstnDialOutEnabled"] is True
    stored = sdk.get_room(room["id"])
    assert (stored.created_at, stored.valid_from, stored.valid_until) == (
        room["createdAt"], room["validFrom"], room["validUntil"])
    assert roster_of(sdk, room["id"]) == {user_id(1): "Presenter", user_id(2): "Presenter",
                                          user_id(3): "Attendee", user_id(4): "Consumer",
                                          user_id(5): "Collaborator"}


def test_create_without_options_uses_the_service_defaults(cli: Cli) -> None:
    room = cli.json("rooms", "create")
    valid_from, valid_until = (datetime.fromisoformat(room[k]) for k in ("validFrom", "validUntil"))
    assert valid_until - valid_from == timedelta(days=180)
    assert room["pstnDialOutEnabled"] is False


def test_repeated_and_space_separated_values_are_the_same(cli: Cli, sdk: Any) -> None:
    room = cli.json("rooms", "create", "--attendee-participants", user_id(10),
                    "--attendee-participants", user_id(11), user_id(12), "--output", "json",
                    f"--consumer-participants={user_id(13)}", user_id(14))
    assert roster_of(sdk, room["id"]) == {**{user_id(n): "Attendee" for n in (10, 11, 12)},
                                          user_id(13): "Consumer", user_id(14): "Consumer"}


def test_times_with_zones_and_seconds(cli: Cli) -> None:
    start = future(2)
    room = cli.json("rooms", "create", "--valid-from", start.astimezone(timezone_plus(2)).isoformat(),
                    "--valid-until", iso(start + timedelta(hours=1, seconds=30.25)))
    assert same_instant(room["validFrom"], start)
    assert same_instant(room["validUntil"], start + timedelta(hours=1, seconds=30.25))


def timezone_plus(hours: int) -> Any:
    from datetime import timezone

    return timezone(timedelta(hours=hours))


def test_get_update_delete(cli: Cli, sdk: Any) -> None:
    room = cli.json("rooms", "create")
    assert cli.json("rooms", "get", "--room", room["id"]) == room

    start, end = future(3), future(4)
    updated = cli.json("rooms", "update", "--room", room["id"], "--valid-from", iso(start),
                       "--valid-until", iso(end), "--pstn-dial-out-enabled", "TRUE")
    assert updated["id"] == room["id"] and updated["createdAt"] == room["createdAt"]
    assert same_instant(updated["validFrom"], start) and same_instant(updated["validUntil"], end)
    assert updated["pstnDialOutEnabled"] is True

    # Only the flag: the window stays.
    flag_only = cli.json("rooms", "update", "--room", room["id"], "--pstn-dial-out-enabled", "false")
    assert flag_only == {**updated, "pstnDialOutEnabled": False}
    assert sdk.get_room(room["id"]).pstn_dial_out_enabled is False

    assert cli.ok("rooms", "delete", "--room", room["id"]) == ""
    stderr = cli.fails("rooms", "get", "--room", room["id"], code=3)
    assert stderr == "error: NotFound: The server cannot find the requested resource. (HTTP 404)\n"


def test_participants_add_update_get_remove(cli: Cli, sdk: Any) -> None:
    room_id = cli.json("rooms", "create", "--presenter-participants", user_id(20))["id"]
    assert cli.ok("rooms", "participant", "add-or-update", "--room", room_id,
                  "--consumer-participants", user_id(20), "--attendee-participants", user_id(21), user_id(22)) == ""
    listed = cli.json("rooms", "participant", "get", "--room", room_id)
    assert sorted((p["communicationIdentifier"]["rawId"], p["role"]) for p in listed) == [
        (user_id(20), "Consumer"), (user_id(21), "Attendee"), (user_id(22), "Attendee")]
    assert cli.ok("rooms", "participant", "remove", "--room", room_id,
                  "--participants", user_id(20), user_id(21), user_id(99)) == ""
    assert roster_of(sdk, room_id) == {user_id(22): "Attendee"}
    cli.ok("rooms", "participant", "remove", "--room", room_id, "--participants", user_id(22))
    assert cli.json("rooms", "participant", "get", "--room", room_id) == []


def test_list_streams_every_page_and_honours_max_items(cli: Cli, sdk: Any) -> None:
    created = [cli.json("rooms", "create")["id"] for _ in range(4)]
    everything = cli.json("rooms", "list")
    assert all(list(room) == ROOM_KEYS for room in everything)
    ids = [room["id"] for room in everything]
    assert set(created) <= set(ids)
    assert ids == [room.id for room in sdk.list_rooms()]  # the page size is 3: the SDK follows nextLink too
    assert [room["id"] for room in cli.json("rooms", "list", "--max-items", "2")] == ids[:2]


def test_table_output(cli: Cli) -> None:
    room = cli.json("rooms", "create", "--presenter-participants", user_id(30))
    table = cli.ok("rooms", "get", "--room", room["id"], "--output", "table")
    for key in ROOM_KEYS:
        assert key in table
    assert room["id"] in table and room["validUntil"] in table
    participants = cli.ok("rooms", "participant", "get", "--room", room["id"], "-o", "table")
    assert user_id(30) in participants and "Presenter" in participants
    listing = cli.ok("rooms", "list", "-o", "table")
    assert room["id"] in listing


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["rooms", "get", "--room", "123"], "error: BadRequest: Invalid room ID length. (HTTP 400)"),
        (["rooms", "get", "--room", "NotExistingRoomID"], "error: BadRequest: Invalid room ID. (HTTP 400)"),
        (["rooms", "delete", "--room", "99999999999999999"],
         "error: NotFound: The server cannot find the requested resource. (HTTP 404)"),
        (["rooms", "update", "--room", "99999999999999999", "--pstn-dial-out-enabled", "true"],
         "error: NotFound: The server cannot find the requested resource. (HTTP 404)"),
        (["rooms", "participant", "get", "--room", "99999999999999999"],
         "error: NotFound: The server cannot find the requested resource. (HTTP 404)"),
        (["rooms", "create", "--attendee-participants", "wrong_mri"],
         "error: BadRequest: Invalid format for communication identifier. (HTTP 400)"),
        (["rooms", "create", "--valid-until", "2020-01-01T00:00"],
         "error: BadRequest: The request could not be understood by the server due to malformed syntax. "
         "BadArgument: The time range end is in the past. (target ValidUntil) (HTTP 400)"),
    ],
)
def test_service_errors_print_code_and_message(cli: Cli, args: list[str], message: str) -> None:
    # Exit code 3 for a 404, as az; 1 for any other refusal.
    assert cli.fails(*args, code=3 if "(HTTP 404)" in message else 1).strip() == message


def test_participant_errors(cli: Cli, sdk: Any) -> None:
    room_id = cli.json("rooms", "create", "--presenter-participants", user_id(40))["id"]
    stderr = cli.fails("rooms", "participant", "remove", "--room", room_id, "--participants", "wrong_mri")
    assert stderr.strip() == "error: BadRequest: Communication identifier wrong_mri is not supported. (HTTP 400)"
    stderr = cli.fails("rooms", "participant", "add-or-update", "--room", room_id,
                       "--presenter-participants", user_id(41), "8:acs:123456c")
    assert "Communication identifier 8:acs:123456c is not supported." in stderr
    assert roster_of(sdk, room_id) == {user_id(40): "Presenter"}  # nothing applied
    stderr = cli.fails("rooms", "update", "--room", room_id, "--valid-from", iso(future(1)))
    assert "validFrom and validUntil should be set together." in stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["rooms", "create", "--pstn-dial-out-enabled", "yes"], "--pstn-dial-out-enabled is true or false"),
        (["rooms", "create", "--valid-from", "tomorrow"], "--valid-from 'tomorrow' is not an ISO 8601 time"),
        (["rooms", "update", "--room", "1", "--valid-until", "14/07/2022"], "--valid-until '14/07/2022'"),
        (["rooms", "participant", "add-or-update", "--room", "1"], "name at least one participant"),
        (["rooms", "get"], "Missing option '--room'"),
        (["rooms", "participant", "remove", "--room", "1"], "Missing option '--participants'"),
        (["rooms", "list", "--max-items", "0"], "--max-items"),
        (["rooms", "get", "--room", "1", "--output", "yaml"], "--output"),
    ],
)
def test_usage_errors_exit_2_before_any_request(cli: Cli, args: list[str], message: str) -> None:
    assert message in cli.fails(*args, code=2)


def test_connection_string_errors(tmp_path: Path) -> None:
    result = run_openrooms("rooms", "list", "--connection-string", "endpoint=https://x/")
    assert result.returncode == 2
    assert "endpoint=https://<host>/;accesskey=<base64 key>" in result.stderr
    result = run_openrooms("rooms", "list", "--connection-string", "endpoint=ftp://x;accesskey=a2V5")
    assert result.returncode == 2 and "not an http(s) URL" in result.stderr


def test_wrong_key_is_denied(https_server: Server) -> None:
    wrong = f"endpoint={https_server.endpoint};accesskey=d3Jvbmcta2V5LXdyb25nLWtleQ=="
    result = run_openrooms("rooms", "list", "--connection-string", wrong, "--ca-cert", https_server.ca)
    assert result.returncode == 1
    assert result.stderr.startswith("error: Denied: ") and result.stderr.rstrip().endswith("(HTTP 401)")


def test_untrusted_certificate_then_insecure(https_server: Server) -> None:
    result = run_openrooms("rooms", "list", "--connection-string", https_server.connection_string)
    assert result.returncode == 1
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr and "--ca-cert" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_openrooms("rooms", "list", "--connection-string", https_server.connection_string, "--insecure")
    assert result.returncode == 0, result.stderr
    assert isinstance(json.loads(result.stdout), list)
    assert result.stderr.startswith("warning: --insecure")


def test_unreachable_server() -> None:
    with refusing_port() as port:
        endpoint = f"http://127.0.0.1:{port}/"
        result = run_openrooms("rooms", "get", "--room", "1", "--connection-string",
                               f"endpoint={endpoint};accesskey=a2V5")
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: cannot reach {endpoint}")
    assert "Traceback" not in result.stderr


def test_connection_string_from_the_environment(https_server: Server) -> None:
    env = {"AZURE_COMMUNICATION_CONNECTION_STRING": https_server.connection_string}
    created = run_openrooms("rooms", "create", "--ca-cert", https_server.ca, env=env)
    assert created.returncode == 0, created.stderr
    room_id = json.loads(created.stdout)["id"]
    # --connection-string wins over the environment.
    wrong = {"AZURE_COMMUNICATION_CONNECTION_STRING": "endpoint=https://127.0.0.1:1/;accesskey=a2V5"}
    got = run_openrooms("rooms", "get", "--room", room_id, "--ca-cert", https_server.ca,
                        "--connection-string", https_server.connection_string, env=wrong)
    assert got.returncode == 0 and json.loads(got.stdout)["id"] == room_id


def test_local_defaults_find_the_server_and_its_ca(tmp_path: Path) -> None:
    # Without a connection string the command goes where `openrooms serve` would listen, with the development
    # key, trusting the CA in the server's data folder. OPENROOMS_* moves that place as it moves the server.
    with running_server(tmp_path / "local", "--in-memory") as server:
        env = {"OPENROOMS_PORT": str(server.port), "OPENROOMS_LOCATION": str(server.location)}
        result = run_openrooms("rooms", "create", env=env)
        assert result.returncode == 0, result.stderr
        room_id = json.loads(result.stdout)["id"]
        assert server.request("GET", f"/rooms/{room_id}?api-version=2025-03-13").status_code == 200


def test_debug_shows_the_http_exchange(cli: Cli) -> None:
    room_id = cli.json("rooms", "create")["id"]
    result = cli.run("rooms", "get", "--room", room_id, "--debug")
    assert result.returncode == 0
    assert json.loads(result.stdout)["id"] == room_id
    assert f"/rooms/{room_id}?api-version=" in result.stderr
    assert re.search(r"Response status: '?200", result.stderr)
    assert '"pstnDialOutEnabled":' in result.stderr  # the response body
    quiet = cli.run("rooms", "get", "--room", room_id)
    assert quiet.stderr == ""


def test_plain_http_server(http_server: Server) -> None:
    cli = Cli(http_server)
    assert http_server.connection_string.startswith("endpoint=http://")
    room = cli.json("rooms", "create", "--presenter-participants", user_id(50))
    assert cli.json("rooms", "get", "--room", room["id"]) == room
    assert cli.json("rooms", "participant", "get", "--room", room["id"]) == [
        {"communicationIdentifier": {"properties": {"id": user_id(50)}, "rawId": user_id(50)}, "role": "Presenter"}]
    assert room["id"] in [r["id"] for r in cli.json("rooms", "list")]
    cli.ok("rooms", "delete", "--room", room["id"])
    assert "NotFound" in cli.fails("rooms", "get", "--room", room["id"], code=3)
