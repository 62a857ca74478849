"""`openrooms identity ...` run as a real process against a real server."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.cli.conftest import Cli, roster_of
from tests.support import Server


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def new_user(cli: Cli) -> str:
    created = cli.json("identity", "user", "create")
    raw_id: str = created["rawId"]
    assert created == {"properties": {"id": raw_id}, "rawId": raw_id}
    assert raw_id.startswith("8:acs:")
    return raw_id


def test_user_create_makes_distinct_users(cli: Cli) -> None:
    assert new_user(cli) != new_user(cli)


def test_token_issue_for_a_user(cli: Cli) -> None:
    user = new_user(cli)
    issued = cli.json("identity", "token", "issue", "--user", user, "--scope", "chat", "voip",
                      "--expires-in-minutes", "60")
    assert issued["user_id"] == user
    token, expires_on = issued["token"], issued["expires_on"]
    token_claims = claims(token)
    assert token_claims["skypeid"] == user.removeprefix("8:")
    assert token_claims["acsScope"] == "chat,voip"
    assert datetime.fromtimestamp(token_claims["exp"], UTC) == datetime.fromisoformat(expires_on)
    assert token_claims["exp"] - int(token_claims["csi"]) == 60 * 60

    # --scope repeated is the same as space-separated; the default validity is 24 hours.
    again = cli.json("identity", "token", "issue", "--user", user, "--scope", "chat", "--scope", "voip")
    again_claims = claims(again["token"])
    assert again_claims["acsScope"] == "chat,voip"
    assert again_claims["exp"] - int(again_claims["csi"]) == 24 * 60 * 60


def test_token_issue_without_user_creates_one(cli: Cli) -> None:
    issued = cli.json("identity", "token", "issue", "--scope", "voip")
    user = issued["user_id"]
    assert user.startswith("8:acs:")
    assert claims(issued["token"])["skypeid"] == user.removeprefix("8:")
    # The user is real: it can be given another token, then deleted.
    cli.json("identity", "token", "issue", "--user", user, "--scope", "chat")
    assert cli.ok("identity", "user", "delete", "--user", user) == ""


def test_revoke_and_delete(cli: Cli, sdk: Any) -> None:
    user = new_user(cli)
    cli.json("identity", "token", "issue", "--user", user, "--scope", "chat")
    assert cli.ok("identity", "token", "revoke", "--user", user) == ""
    room_id = cli.json("rooms", "create", "--presenter-participants", user)["id"]
    assert roster_of(sdk, room_id) == {user: "Presenter"}
    assert cli.ok("identity", "user", "delete", "--user", user) == ""
    assert roster_of(sdk, room_id) == {}  # a deleted user leaves every room
    stderr = cli.fails("identity", "token", "issue", "--user", user, "--scope", "chat", code=3)
    assert stderr.startswith("error: ") and "(HTTP 404)" in stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["identity", "token", "issue", "--scope", "chat", "--expires-in-minutes", "1441"],
         "error: ValidationError: ExpiresInMinutes value 1441 is invalid. "
         "Value must be within the [60, 1440] interval. (HTTP 400)"),
        (["identity", "user", "delete", "--user", "wrong"], "error: BadRequest: "),
    ],
)
def test_service_errors(cli: Cli, args: list[str], message: str) -> None:
    stderr = cli.fails(*args)
    assert stderr.startswith(message), stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["identity", "token", "issue"], "Missing option '--scope'"),
        (["identity", "token", "revoke"], "Missing option '--user'"),
        (["identity", "user", "delete"], "Missing option '--user'"),
        (["identity", "token", "issue", "--scope", "chat", "--expires-in-minutes", "soon"], "--expires-in-minutes"),
    ],
)
def test_usage_errors(cli: Cli, args: list[str], message: str) -> None:
    assert message in cli.fails(*args, code=2)


def test_table_output(cli: Cli) -> None:
    table = cli.ok("identity", "token", "issue", "--scope", "chat", "-o", "table")
    for key in ("user_id", "token", "expires_on", "8:acs:"):
        assert key in table


def test_identity_over_plain_http(http_server: Server) -> None:
    cli = Cli(http_server)
    user = new_user(cli)
    issued = cli.json("identity", "token", "issue", "--user", user, "--scope", "chat.join")
    assert claims(issued["token"])["acsScope"] == "chat.join"
    cli.ok("identity", "token", "revoke", "--user", user)
    cli.ok("identity", "user", "delete", "--user", user)
