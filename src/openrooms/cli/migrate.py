"""`openrooms migrate`: take over an ACS resource's rooms and users (docs/migrating-from-acs.md)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.text import Text

from openrooms.config import Settings

SOURCE_ENV = "OPENROOMS_MIGRATE_SOURCE_CONNECTION_STRING"
EXIT_DIFFERENCES = 1
EXIT_USAGE = 2

migrate_app = typer.Typer(help="Take over an ACS resource's rooms and users.", no_args_is_help=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)
stdout = Console(highlight=False, soft_wrap=True)

SourceOption = Annotated[
    str | None,
    typer.Option("--from-connection-string",
                 help=f"The ACS resource to copy from: endpoint=https://...;accesskey=... (default: ${SOURCE_ENV}). "
                 "Never printed.", envvar=SOURCE_ENV, show_default=False, show_envvar=False),
]
LocationOption = Annotated[
    Path | None,
    typer.Option(help="Folder of the openrooms database to write to, as for serve (default: a per-user data "
                 "folder).", envvar="OPENROOMS_LOCATION", show_default=False),
]
DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(help="PostgreSQL to write to, as for serve (default: the SQLite file in --location).",
                 envvar="OPENROOMS_DATABASE_URL", show_default=False),
]
ConcurrencyOption = Annotated[
    int, typer.Option(min=1, max=256, help="Rosters read from the source at once."),
]
RetriesOption = Annotated[
    int, typer.Option(min=0, help="Retries of a source request that is throttled (429), fails (5xx) or loses "
                      "its connection."),
]
RetryBackoffOption = Annotated[
    float, typer.Option(min=0, help="Seconds before the second retry, doubled for each next one (a 429's "
                        "Retry-After wins)."),
]
SourceCaOption = Annotated[
    Path | None,
    typer.Option("--source-ca-cert", help="Trust this CA certificate (PEM) for the source, e.g. a proxy's.",
                 exists=True, dir_okay=False, show_default=False),
]
ReportOption = Annotated[
    Path | None, typer.Option(help="Also write the outcome to this file as JSON.", dir_okay=False,
                              show_default=False),
]


def _fail(message: str) -> typer.Exit:
    stderr.print(f"[red]error:[/red] {message}", markup=True)
    return typer.Exit(EXIT_USAGE)


def _source(connection_string: str | None, retries: int, backoff: float, ca: Path | None) -> Any:
    from openrooms.migrate.source import AcsSource, Retries, parse_connection_string

    if not connection_string:
        raise _fail(f"give the source with --from-connection-string or ${SOURCE_ENV}")
    try:
        connection = parse_connection_string(connection_string)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    return AcsSource(connection, Retries(total=retries, backoff_factor=backoff), ca_file=ca)


def _target(location: Path | None, database_url: str | None, *, dry_run: bool = False) -> Any:
    from openrooms.migrate.target import TargetError, open_target

    try:
        return open_target(Settings().replace(location=location, database_url=database_url), dry_run=dry_run)
    except TargetError as exc:
        raise _fail(str(exc)) from None


class _Rate(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed or 0
        return Text(f"{speed:,.0f} rooms/s, {task.fields.get('participants', 0):,} participants")


class _Bar:
    """The copy's progress as a Rich bar on stderr: rooms done of all, participants done, the rate."""

    def __init__(self, description: str) -> None:
        self._progress = Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), _Rate(),
                                  TimeElapsedColumn(), console=stderr, transient=False)
        self._task = self._progress.add_task(description, total=None, participants=0)
        self._participants = 0

    def __enter__(self) -> _Bar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def started(self, rooms: int) -> None:
        self._progress.update(self._task, total=rooms)

    def room_done(self, participants: int) -> None:
        self._participants += participants
        self._progress.update(self._task, advance=1, participants=self._participants)


def _write_report(path: Path | None, data: dict[str, Any]) -> None:
    if path is not None:
        path.write_text(json.dumps(data, indent=2) + "\n")


def _users_file(path: Path | None) -> list[str]:
    if path is None:
        return []
    from openrooms.service.ids import is_user_id

    users = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        raw_id = line.strip()
        if not raw_id or raw_id.startswith("#"):
            continue
        if not is_user_id(raw_id):
            raise _fail(f"{path}:{number}: {raw_id!r} is not an ACS user id (8:acs:<resource id>_<user>)")
        users.append(raw_id)
    return users


@migrate_app.command("from-acs")
def from_acs(
    from_connection_string: SourceOption = None,
    source_ca_cert: SourceCaOption = None,
    location: LocationOption = None,
    database_url: DatabaseUrlOption = None,
    users_file: Annotated[Path | None, typer.Option(exists=True, dir_okay=False, show_default=False,
                                                    help="Users on no roster to register too: one raw id a line "
                                                    "(ACS cannot list its users).")] = None,
    resource_id: Annotated[str | None, typer.Option(help="The source's resource id, when no roster or user names "
                                                    "it (it is in every 8:acs:<resource id>_<user> id).",
                                                    show_default=False)] = None,
    delete_missing: Annotated[bool, typer.Option("--delete-missing", help="Delete the rooms openrooms has that "
                                                 "the source no longer lists.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; write nothing.")] = False,
    report: ReportOption = None,
    concurrency: ConcurrencyOption = 16,
    retries: RetriesOption = 10,
    retry_backoff: RetryBackoffOption = 0.8,
) -> None:
    """Copy every room of an ACS resource, with its roster, into openrooms; a rerun copies what changed."""
    from openrooms.migrate.copy import CopyOptions, ResourceIdConflict, copy
    from openrooms.migrate.source import SourceError
    from openrooms.store.protocol import StoreUnavailable

    if resource_id is not None:
        from openrooms.service.identity import check_resource_id

        try:
            resource_id = check_resource_id(resource_id)
        except ValueError as exc:
            raise _fail(f"--resource-id: {exc}") from None
    options = CopyOptions(delete_missing=delete_missing, dry_run=dry_run, users=_users_file(users_file),
                          resource_id=resource_id, concurrency=concurrency)
    source = _source(from_connection_string, retries, retry_backoff, source_ca_cert)
    store = _target(location, database_url, dry_run=dry_run)

    async def run() -> Any:
        try:
            async with source:
                with _Bar("planning" if dry_run else "copying") as bar:
                    return await copy(source, store, options, bar)
        finally:
            await store.close()

    try:
        outcome = asyncio.run(run())
    except ResourceIdConflict as exc:
        raise _fail(str(exc)) from None
    except SourceError as exc:
        raise _fail(f"reading the source: {exc}. Run the command again to finish the copy.") from None
    except StoreUnavailable as exc:
        raise _fail(f"writing to openrooms' database: {exc}. Run the command again to finish the copy.") from None
    data = outcome.to_json()
    _print_outcome(data)
    _write_report(report, data)


def _print_outcome(data: dict[str, Any]) -> None:
    rooms, participants, users = data["rooms"], data["participants"], data["users"]
    verb = "would be" if data["dryRun"] else "were"
    if data["dryRun"]:
        for change in data["changes"]:
            updated = change.get("fields") and change["action"] == "update"
            fields = f" ({', '.join(change['fields'])})" if updated else ""
            counts = change.get("participants", {})
            roster = (f", participants +{counts['added']} -{counts['removed']} ~{counts['roleChanged']}"
                      if counts and any(counts.values()) else "")
            stdout.print(f"{change['action']:<9} {change['room']}{fields}{roster}")
    stdout.print(
        f"rooms: {rooms['source']} in the source; {rooms['created']} {verb} created, {rooms['updated']} updated, "
        f"{rooms['deleted']} deleted, {rooms['unchanged']} unchanged, {rooms['skipped']} skipped"
    )
    stdout.print(
        f"participants: {participants['source']} in the source; {participants['added']} {verb} added, "
        f"{participants['roleChanged']} given another role, {participants['removed']} removed, "
        f"{participants['skipped']} skipped"
    )
    stdout.print(f"users: {users['registered']} {verb} registered as identities, {users['alreadyRegistered']} "
                 "already were")
    if data["resourceId"]:
        stdout.print(f"resource id: {data['resourceId']}")
    for skip in data["skipped"]:
        who = f" participant {skip['participant']}" if "participant" in skip else ""
        stdout.print(f"skipped: room {skip['room']}{who}: {skip['reason']}")
    kept = data["notInSource"].get("kept")
    if kept:
        stdout.print(f"not in the source: {len(kept)} rooms kept (--delete-missing deletes them): "
                     f"{', '.join(kept[:10])}{' ...' if len(kept) > 10 else ''}")
    stdout.print(f"{data['seconds']:.1f}s: {data['roomsPerSecond']} rooms/s, "
                 f"{data['participantsPerSecond']} participants/s")


@migrate_app.command("verify")
def verify_command(
    from_connection_string: SourceOption = None,
    source_ca_cert: SourceCaOption = None,
    location: LocationOption = None,
    database_url: DatabaseUrlOption = None,
    report: ReportOption = None,
    concurrency: ConcurrencyOption = 16,
    retries: RetriesOption = 10,
    retry_backoff: RetryBackoffOption = 0.8,
) -> None:
    """Compare the source and openrooms room by room; list every difference (exit 0: there is none)."""
    from openrooms.migrate.source import SourceError
    from openrooms.migrate.verify import verify
    from openrooms.store.protocol import StoreUnavailable

    source = _source(from_connection_string, retries, retry_backoff, source_ca_cert)
    store = _target(location, database_url)

    async def run() -> Any:
        try:
            async with source:
                return await verify(source, store, concurrency=concurrency)
        finally:
            await store.close()

    try:
        rooms, differences = asyncio.run(run())
    except SourceError as exc:
        raise _fail(f"reading the source: {exc}") from None
    except StoreUnavailable as exc:
        raise _fail(f"reading openrooms' database: {exc}") from None
    for difference in differences:
        stdout.print(str(difference))
    stdout.print(f"{rooms} rooms in the source; {len(differences)} difference{'s' * (len(differences) != 1)}")
    _write_report(report, {"rooms": rooms, "differences": [d.to_json() for d in differences]})
    if differences:
        raise typer.Exit(EXIT_DIFFERENCES)
