"""`openrooms keys ...`: show and rotate the access keys in the database a server uses, while it serves."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from openrooms.config import Settings
from openrooms.service import keys as access_keys
from openrooms.service.clock import SystemClock
from openrooms.store.protocol import RoomStore

keys_app = typer.Typer(help="Show and rotate the access keys (takes effect on running servers within a second).",
                       no_args_is_help=True)
T = TypeVar("T")

LocationOption = Annotated[
    Path | None,
    typer.Option(help="Folder of the server's database (default: the per-user data folder).",
                 envvar="OPENROOMS_LOCATION", show_default=False),
]
DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(help="The server's PostgreSQL database (postgresql://...) instead of --location.",
                 envvar="OPENROOMS_DATABASE_URL", show_default=False),
]
EndpointOption = Annotated[
    str | None,
    typer.Option(help="Endpoint to put in the printed connection string (default: https://127.0.0.1:8765/).",
                 envvar="OPENROOMS_PUBLIC_URL", show_default=False),
]


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(2)


def _with_store(location: Path | None, database_url: str | None, action: Callable[[RoomStore], Awaitable[T]]) -> T:
    from openrooms.store import open_store

    settings = Settings().replace(location=location, database_url=database_url)
    if not settings.database_url and not (settings.database_path and settings.database_path.exists()):
        raise _fail(f"no database at {settings.database_path}; start `openrooms serve` there first")

    async def run() -> T:
        store = open_store(settings, migrate_schema=False)
        try:
            return await action(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except Exception as exc:  # schema too old, database unreachable, ...: say so, without a traceback
        raise _fail(f"cannot use the database: {exc}") from None


def _connection_string(endpoint: str | None, key: str) -> str:
    return f"endpoint={endpoint or Settings().endpoint};accesskey={key}"


@keys_app.command("rotate")
def rotate(
    primary: Annotated[bool, typer.Option("--primary", help="Replace the primary key.")] = False,
    secondary: Annotated[bool, typer.Option("--secondary", help="Replace the secondary key.")] = False,
    location: LocationOption = None,
    database_url: DatabaseUrlOption = None,
    endpoint: EndpointOption = None,
) -> None:
    """Replace one key with a new random one; the other keeps working, unless it is the well-known development
    key (then it is replaced too). Prints the new connection string."""
    if primary == secondary:
        raise _fail("say which key to rotate: --primary or --secondary")
    name = "primary" if primary else "secondary"
    new = _with_store(location, database_url,
                      lambda store: access_keys.rotate(store, name, SystemClock().now()))
    typer.echo(_connection_string(endpoint, new[name]))
    for other in new.keys() - {name}:
        typer.echo(f"the {other} key was the well-known development key (or none): replaced with a new random "
                   "one too; `openrooms keys show` prints it", err=True)


@keys_app.command("show")
def show(location: LocationOption = None, database_url: DatabaseUrlOption = None,
         endpoint: EndpointOption = None) -> None:
    """Print the connection string of each stored key."""
    stored = _with_store(location, database_url, lambda store: store.get_access_keys())
    if not stored:
        raise _fail("no keys are stored yet; `openrooms serve` stores them on its first start")
    for name in access_keys.NAMES:
        if name in stored:
            typer.echo(f"{name:<10} {_connection_string(endpoint, stored[name])}")
