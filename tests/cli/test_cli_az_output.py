"""Each twin command prints, byte for byte, what `az communication rooms/identity` prints for it.

az (azure-cli 2.91.0, extension `communication` 1.14.0) returns the SDK's result object from its custom command
and prints azure-cli-core's `todict` of it: an SDK object's public attributes with camelCase names, enums as
their value, and a plain dict (token issue builds one) with its keys as they are; then `json.dumps` with the
keys sorted and a two-space indent. The expected texts here are built from the SDK's own objects by hand.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from tests.cli.conftest import Cli
from tests.cli.test_cli_identity import claims
from tests.support import user_id


def az_text(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def az_room(room: Any) -> dict[str, Any]:
    return {"createdAt": room.created_at, "id": room.id, "pstnDialOutEnabled": room.pstn_dial_out_enabled,
            "validFrom": room.valid_from, "validUntil": room.valid_until}


def az_identifier(raw_id: str) -> dict[str, Any]:
    # CommunicationUserIdentifier: `raw_id` and `properties` are instance attributes; `kind` is a class one.
    return {"properties": {"id": raw_id}, "rawId": raw_id}


def test_rooms_create_get_update_list_print_the_sdk_room(cli: Cli, sdk: Any) -> None:
    created = cli.ok("rooms", "create", "--presenter-participants", user_id(300))
    room_id = json.loads(created)["id"]
    assert created == az_text(az_room(sdk.get_room(room_id)))
    assert list(json.loads(created)) == ["createdAt", "id", "pstnDialOutEnabled", "validFrom", "validUntil"]
    assert cli.ok("rooms", "get", "--room", room_id) == az_text(az_room(sdk.get_room(room_id)))
    updated = cli.ok("rooms", "update", "--room", room_id, "--pstn-dial-out-enabled", "true")
    assert updated == az_text(az_room(sdk.get_room(room_id)))
    # A listing: one array, the same text as az's once it is complete.
    assert cli.ok("rooms", "list") == az_text([az_room(room) for room in sdk.list_rooms()])


def test_participant_get_prints_the_sdk_participants(cli: Cli) -> None:
    room_id = cli.json("rooms", "create", "--presenter-participants", user_id(301),
                       "--consumer-participants", user_id(302))["id"]
    expected = [{"communicationIdentifier": az_identifier(user_id(301)), "role": "Presenter"},
                {"communicationIdentifier": az_identifier(user_id(302)), "role": "Consumer"}]
    printed = cli.ok("rooms", "participant", "get", "--room", room_id)
    assert sorted(json.loads(printed), key=lambda p: p["communicationIdentifier"]["rawId"]) == expected
    assert printed == az_text(json.loads(printed))  # sorted keys, az's indent
    empty = cli.json("rooms", "create")["id"]
    assert cli.ok("rooms", "participant", "get", "--room", empty) == "[]\n"


def test_user_create_prints_the_sdk_identifier(cli: Cli) -> None:
    printed = cli.ok("identity", "user", "create")
    raw_id = json.loads(printed)["rawId"]
    assert raw_id.startswith("8:acs:")
    assert printed == az_text(az_identifier(raw_id))


def test_token_issue_prints_the_object_az_builds(cli: Cli) -> None:
    for args in ([], ["--user", cli.json("identity", "user", "create")["rawId"]]):
        printed = cli.ok("identity", "token", "issue", "--scope", "chat", *args)
        issued = json.loads(printed)
        assert printed == az_text(issued)
        assert list(issued) == ["expires_on", "token", "user_id"]
        if args:
            assert issued["user_id"] == args[1]
        token_claims = claims(issued["token"])
        assert token_claims["skypeid"] == issued["user_id"].removeprefix("8:")
        # str() of the SDK's expiry, which is the service's ISO 8601 text.
        assert datetime.fromisoformat(issued["expires_on"]) == datetime.fromtimestamp(token_claims["exp"], UTC)


def test_commands_az_asks_to_confirm_take_yes(cli: Cli, sdk: Any) -> None:
    # az asks before these (confirmation=True) unless given --yes / -y; a script for az passes it.
    user = cli.json("identity", "user", "create")["rawId"]
    room_id = cli.json("rooms", "create", "--attendee-participants", user, user_id(303))["id"]
    assert cli.ok("rooms", "participant", "remove", "--room", room_id, "--participants", user_id(303), "-y") == ""
    assert cli.ok("identity", "token", "revoke", "--user", user, "--yes") == ""
    assert cli.ok("identity", "user", "delete", "--user", user, "--yes") == ""
    assert cli.ok("rooms", "delete", "--room", room_id, "--yes") == ""
    assert "NotFound" in cli.fails("rooms", "get", "--room", room_id, code=3)  # az's exit code for a 404


def test_query_and_tsv_as_az_applies_them(cli: Cli, sdk: Any) -> None:
    # The commands a script for az writes most: `--query id -o tsv` and friends.
    user = cli.ok("identity", "user", "create", "--query", "rawId", "-o", "tsv").rstrip("\n")
    assert user.startswith("8:acs:") and "\t" not in user
    room_id = cli.ok("rooms", "create", "--presenter-participants", user, "--query", "id", "-o", "tsv")
    room_id = room_id.rstrip("\n")
    room = sdk.get_room(room_id)
    # tsv: a row per result, the object's values sorted by key; a bool inside a row as Python writes it.
    assert cli.ok("rooms", "get", "--room", room_id, "-o", "tsv") == "\t".join(
        [room.created_at, room.id, "False", room.valid_from, room.valid_until]) + "\n"
    # An object the query builds keeps the query's order in tsv; JSON still sorts the keys.
    query = "{b: id, a: pstnDialOutEnabled}"
    assert cli.ok("rooms", "get", "--room", room_id, "--query", query, "-o", "tsv") == f"{room_id}\tFalse\n"
    assert cli.ok("rooms", "get", "--room", room_id, "--query", query) == az_text({"a": False, "b": room_id})
    # A nested object is an empty cell.
    assert cli.ok("rooms", "participant", "get", "--room", room_id, "-o", "tsv") == "\tPresenter\n"
    assert cli.ok("rooms", "participant", "get", "--room", room_id, "--query",
                  "[].communicationIdentifier.rawId") == az_text([user])
    listed = cli.ok("rooms", "list", "--query", "[].id", "-o", "tsv").splitlines()
    assert listed == [r.id for r in sdk.list_rooms()]
    token = cli.ok("identity", "token", "issue", "--user", user, "--scope", "voip", "--query", "token", "-o", "tsv")
    assert claims(token.rstrip("\n"))["acsScope"] == "voip"
    # Nothing to print: a query that matches nothing, and -o none.
    assert cli.ok("rooms", "get", "--room", room_id, "--query", "noSuchKey") == ""
    assert cli.ok("rooms", "get", "--room", room_id, "-o", "none") == ""
    # A query that does not parse is a usage error, before any request.
    assert "is not a JMESPath expression" in cli.fails("rooms", "get", "--room", "1", "--query", "[[", code=2)
