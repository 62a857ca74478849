"""`openrooms identity ...`: the twin of `az communication identity ...` (users and access tokens).

Each command takes az's options and prints what az prints (see `client.az_json`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import typer

from openrooms.cli.client import Client, YesOption, client_command

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


@client_command(user_app, "create")
def user_create(*, client: Client) -> None:
    """Create a user; prints {"properties": {"id"}, "rawId"}, as az prints the SDK's identifier."""
    with client.identity() as identity:
        user = identity.create_user()
    client.print(user)


@client_command(user_app, "delete", prints=False)
def user_delete(user: UserOption, yes: YesOption = False, *, client: Client) -> None:
    """Delete a user: revokes its tokens and removes it from every room. Prints nothing, like az."""
    with client.identity() as identity:
        identity.delete_user(_user(user))


@client_command(token_app, "issue")
def token_issue(
    scope: Annotated[list[str], typer.Option("--scope", metavar="SCOPE...",
                                             help=f"Scopes (space-separated or repeated): {SCOPES}.",
                                             show_default=False)],
    user: Annotated[str | None, typer.Option("--user", help="The user's raw id; without it a new user is "
                                             "created with the token.", show_default=False)] = None,
    expires_in_minutes: Annotated[int | None, typer.Option("--expires-in-minutes",
                                                           help="Validity, 60 to 1440 (default: 1440). "
                                                           "Not in az.", show_default=False)] = None,
    *,
    client: Client,
) -> None:
    """Issue an access token; prints {"expires_on", "token", "user_id"}, as az does."""
    options: dict[str, Any] = {}
    if expires_in_minutes is not None:
        options["token_expires_in"] = timedelta(minutes=expires_in_minutes)
    with client.identity() as identity:
        if user is None:
            identifier, token = identity.create_user_and_token(scope, **options)
            user = identifier.properties["id"]
        else:
            token = identity.get_token(_user(user), scope, **options)
    # The object az's `token issue` builds: the SDK's expiry as str() makes it.
    client.print({"user_id": user, "token": token.token, "expires_on": str(token.expires_on)})


@client_command(token_app, "revoke", prints=False)
def token_revoke(user: UserOption, yes: YesOption = False, *, client: Client) -> None:
    """Revoke every access token issued to a user so far. Prints nothing, like az."""
    with client.identity() as identity:
        identity.revoke_tokens(_user(user))
