"""`openrooms identity ...`: the twin of `az communication identity ...` (users and access tokens)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import typer

from openrooms.cli.client import (
    AzStyleCommand,
    CaCertOption,
    ConnectionStringOption,
    DebugOption,
    InsecureOption,
    Output,
    OutputOption,
    connect,
    print_one,
    reported_errors,
    to_wire_time,
)

identity_app = typer.Typer(help="Manage users and access tokens (twin of `az communication identity`).",
                           no_args_is_help=True)
user_app = typer.Typer(help="Create and delete users.", no_args_is_help=True)
token_app = typer.Typer(help="Issue and revoke access tokens.", no_args_is_help=True)
identity_app.add_typer(user_app, name="user")
identity_app.add_typer(token_app, name="token")

UserOption = Annotated[str, typer.Option("--user", help="The user's raw id (8:acs:...).", show_default=False)]
SCOPES = "chat, voip, chat.join, chat.join.limited, voip.join"


def _user(raw_id: str) -> Any:
    from azure.communication.identity import CommunicationUserIdentifier

    return CommunicationUserIdentifier(raw_id)


@user_app.command("create", cls=AzStyleCommand)
def user_create(
    connection_string: ConnectionStringOption = None,
    ca_cert: CaCertOption = None,
    insecure: InsecureOption = False,
    output: OutputOption = Output.json,
    debug: DebugOption = False,
) -> None:
    """Create a user; prints {"identity": {"id"}} as the REST API answers."""
    connection = connect(connection_string, ca_cert, insecure, debug)
    with reported_errors(connection), connection.identity() as client:
        user = client.create_user()
    print_one({"identity": {"id": user.properties["id"]}}, output)


@user_app.command("delete", cls=AzStyleCommand)
def user_delete(
    user: UserOption,
    connection_string: ConnectionStringOption = None,
    ca_cert: CaCertOption = None,
    insecure: InsecureOption = False,
    debug: DebugOption = False,
) -> None:
    """Delete a user: revokes its tokens and removes it from every room. Prints nothing, like az."""
    connection = connect(connection_string, ca_cert, insecure, debug)
    with reported_errors(connection), connection.identity() as client:
        client.delete_user(_user(user))


@token_app.command("issue", cls=AzStyleCommand)
def token_issue(
    scope: Annotated[list[str], typer.Option("--scope", metavar="SCOPE...",
                                             help=f"Scopes (space-separated or repeated): {SCOPES}.",
                                             show_default=False)],
    user: Annotated[str | None, typer.Option("--user", help="The user's raw id; without it a new user is "
                                             "created with the token.", show_default=False)] = None,
    expires_in_minutes: Annotated[int | None, typer.Option("--expires-in-minutes",
                                                           help="Validity, 60 to 1440 (default: 1440).",
                                                           show_default=False)] = None,
    connection_string: ConnectionStringOption = None,
    ca_cert: CaCertOption = None,
    insecure: InsecureOption = False,
    output: OutputOption = Output.json,
    debug: DebugOption = False,
) -> None:
    """Issue an access token; prints {"identity": {"id"}, "accessToken": {"token", "expiresOn"}}."""
    options: dict[str, Any] = {}
    if expires_in_minutes is not None:
        options["token_expires_in"] = timedelta(minutes=expires_in_minutes)
    connection = connect(connection_string, ca_cert, insecure, debug)
    with reported_errors(connection), connection.identity() as client:
        if user is None:
            identifier, token = client.create_user_and_token(scope, **options)
            user = identifier.properties["id"]
        else:
            token = client.get_token(_user(user), scope, **options)
    result = {"identity": {"id": user}, "accessToken": {"token": token.token,
                                                        "expiresOn": to_wire_time(token.expires_on)}}
    print_one(result, output)


@token_app.command("revoke", cls=AzStyleCommand)
def token_revoke(
    user: UserOption,
    connection_string: ConnectionStringOption = None,
    ca_cert: CaCertOption = None,
    insecure: InsecureOption = False,
    debug: DebugOption = False,
) -> None:
    """Revoke every access token issued to a user so far. Prints nothing, like az."""
    connection = connect(connection_string, ca_cert, insecure, debug)
    with reported_errors(connection), connection.identity() as client:
        client.revoke_tokens(_user(user))
