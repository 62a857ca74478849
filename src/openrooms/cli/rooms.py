"""`openrooms rooms ...`: the twin of `az communication rooms ...`, plus bulk create, export and import."""

from __future__ import annotations

import csv
import json
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from openrooms.cli.client import (
    EXIT_SERVICE_ERROR,
    AzStyleCommand,
    CaCertOption,
    ConnectionStringOption,
    DebugOption,
    InsecureOption,
    JsonArrayWriter,
    Output,
    OutputOption,
    connect,
    describe_http_error,
    fail,
    parse_bool,
    parse_time,
    print_items,
    print_one,
    print_table,
    reported_errors,
    stderr,
)

ROLES = ("Presenter", "Attendee", "Consumer", "Collaborator")
ROOM_COLUMNS = ["id", "createdAt", "validFrom", "validUntil", "pstnDialOutEnabled"]
PARTICIPANT_COLUMNS = ["rawId", "role"]
# Participants per request when a roster is sent in parts: well under the service's body limit.
PARTICIPANT_CHUNK = 500

rooms_app = typer.Typer(help="Manage rooms (twin of `az communication rooms`).", no_args_is_help=True)
participant_app = typer.Typer(help="Manage the participants of a room.", no_args_is_help=True)
rooms_app.add_typer(participant_app, name="participant")

RoomOption = Annotated[str, typer.Option("--room", help="Room id.", show_default=False)]
ValidFromOption = Annotated[
    str | None,
    typer.Option("--valid-from", help="When the room opens, ISO 8601, e.g. 2022-07-14T10:21 (no zone = UTC).",
                 show_default=False),
]
ValidUntilOption = Annotated[
    str | None,
    typer.Option("--valid-until", help="When the room closes, ISO 8601, e.g. 2022-08-14T10:21 (no zone = UTC).",
                 show_default=False),
]
PstnOption = Annotated[
    str | None,
    typer.Option("--pstn-dial-out-enabled", metavar="true|false",
                 help="Whether calls in the room may dial out to phone numbers.", show_default=False),
]


def _role_option(role: str, verb: str) -> Any:
    return typer.Option(f"--{role.lower()}-participants", metavar="RAW_ID...",
                        help=f"Raw ids (space-separated or repeated) to {verb} as {role}.", show_default=False)


PresentersOption = Annotated[list[str] | None, _role_option("Presenter", "invite")]
AttendeesOption = Annotated[list[str] | None, _role_option("Attendee", "invite")]
ConsumersOption = Annotated[list[str] | None, _role_option("Consumer", "invite")]
CollaboratorsOption = Annotated[list[str] | None, _role_option("Collaborator", "invite")]


def room_json(room: Any) -> dict[str, Any]:
    from openrooms.cli.client import to_wire_time

    return {
        "id": room.id,
        "createdAt": to_wire_time(room.created_at),
        "validFrom": to_wire_time(room.valid_from),
        "validUntil": to_wire_time(room.valid_until),
        "pstnDialOutEnabled": room.pstn_dial_out_enabled,
    }


def participant_json(participant: Any) -> dict[str, Any]:
    return {"rawId": participant.communication_identifier.raw_id, "role": str(_role_value(participant.role))}


def _role_value(role: Any) -> str:
    return str(getattr(role, "value", role))


def _room_participants(roster: Iterable[tuple[str, str]]) -> list[Any]:
    from azure.communication.rooms import RoomParticipant

    return [RoomParticipant(communication_identifier=_identifier(raw_id), role=role) for raw_id, role in roster]


def _identifier(raw_id: str) -> Any:
    # The SDK wants identifier objects but sends only their raw id, so any id reaches the service as typed.
    from azure.communication.rooms._shared.models import identifier_from_raw_id

    return identifier_from_raw_id(raw_id)


def _roster_from_flags(presenters: list[str] | None, attendees: list[str] | None, consumers: list[str] | None,
                       collaborators: list[str] | None) -> dict[str, str]:
    roster: dict[str, str] = {}
    for role, ids in zip(ROLES, (presenters, attendees, consumers, collaborators), strict=True):
        for raw_id in ids or ():
            roster[raw_id] = role
    return roster


def read_roster_file(path: Path) -> dict[str, str]:
    """`rawId,role` per line; a header line and a missing role (= Attendee) are allowed."""
    roles = {role.lower(): role for role in ROLES}
    roster: dict[str, str] = {}
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            for line_number, row in enumerate(csv.reader(file), start=1):
                cells = [cell.strip() for cell in row]
                if not any(cells) or cells[0].startswith("#"):
                    continue
                if line_number == 1 and cells[0].lower() in ("rawid", "raw_id", "id"):
                    continue
                role = cells[1] if len(cells) > 1 and cells[1] else "Attendee"
                if role.lower() not in roles or len([c for c in cells[2:] if c]) > 0:
                    fail(f"{path}:{line_number}: expected `rawId,role` with a role among {', '.join(ROLES)}; "
                         f"got {','.join(row)!r}.")
                roster[cells[0]] = roles[role.lower()]
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    except UnicodeDecodeError:
        fail(f"{path} is not UTF-8 text.")
    return roster


def _chunks(roster: dict[str, str], size: int = PARTICIPANT_CHUNK) -> list[list[tuple[str, str]]]:
    items = list(roster.items())
    return [items[i:i + size] for i in range(0, len(items), size)]


def _progress(total: int, description: str, enabled: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=stderr, transient=True, disable=not (enabled and stderr.is_terminal))


def create_room_with_roster(client: Any, roster: dict[str, str], progress: Progress | None = None,
                            **room: Any) -> Any:
    """Creates the room with the first part of the roster and adds the rest in parts.

    All or nothing: if a later part fails, the room is deleted again and the error raised.
    """
    chunks = _chunks(roster)
    created = client.create_room(participants=_room_participants(chunks[0]) if chunks else None, **room)
    task = progress.add_task("participants", total=len(roster)) if progress is not None else None
    try:
        if progress is not None and task is not None and chunks:
            progress.advance(task, len(chunks[0]))
        for chunk in chunks[1:]:
            client.add_or_update_participants(room_id=created.id, participants=_room_participants(chunk))
            if progress is not None and task is not None:
                progress.advance(task, len(chunk))
    except BaseException:
        from azure.core.exceptions import AzureError

        try:
            client.delete_room(created.id)
        except AzureError:
            stderr.print(f"warning: room {created.id} was created but not all participants were added, "
                         "and deleting it failed", markup=False)
        raise
    return created


@rooms_app.command(cls=AzStyleCommand)
def create(
    valid_from: ValidFromOption = None,
    valid_until: ValidUntilOption = None,
    pstn_dial_out_enabled: PstnOption = None,
    presenter_participants: PresentersOption = None,
    attendee_participants: AttendeesOption = None,
    consumer_participants: ConsumersOption = None,
    collaborator_participants: CollaboratorsOption = None,
    participants_file: Annotated[
        Path | None,
        typer.Option("--participants-file", help="CSV roster, `rawId,role` per line (header optional); "
                     "added in parts with a progress bar.", dir_okay=False, show_default=False),
    ] = None,
    connection_string: ConnectionStringOption = None,
    ca_cert: CaCertOption = None,
    insecure: InsecureOption = False,
    output: OutputOption = Output.json,
    debug: DebugOption = False,
) -> None:
    """Create a room (validity defaults to now .. now + 180 days); prints the room."""
    window = {
        "valid_from": parse_time("--valid-from", valid_from),
        "valid_until": parse_time("--valid-until", valid_until),
        "pstn_dial_out_enabled": bool(parse_bool("--pstn-dial-out-enabled", pstn_dial_out_enabled)),
    }
    roster = read_roster_file(participants_file) if participants_file is not None else {}
    roster.update(_roster_from_flags(presenter_participants, attendee_participants, consumer_participants,
                                     collaborator_participants))
    connection = connect(connection_string, ca_cert, insecure, debug)
    with (reported_errors(connection), connection.rooms() as client,
          _progress(len(roster), "participants", participants_file is not None) as progress):
        room = create_room_with_roster(client, roster, progress, **window)
    print_one(room_json(room), output)


@rooms_app.command(cls=AzStyleCommand)
def get(
    room: RoomOption,
    connection_string: ConnectionStringOption = None,
    ca_cert: CaCertOption = None,
    insecure: InsecureOption = False,
    output: OutputOption = Output.json,
    debug: DebugOption = False,
) -> None:
    """Show a room."""
    connection = connect(connection_string, ca_cert, insecure, debug)
    with reported_errors(connection), connection.rooms() as client:
        found = client.get_room(room)
    print_one(room_json(found), output)


@rooms_app.command(cls=AzStyleCommand)
def update(
    room: RoomOption,
    valid_from: ValidFromOption = None,
    valid_until: ValidUntilOption = None,
    pstn_dial_out_enabled: PstnOption = None,
    connection_string: ConnectionStringOption = None,
    ca_cert: CaCertOption = None,
    insecure: InsecureOption = False,
    output: OutputOption = Output.json,
    debug: DebugOption = False,
) -> None:
    """Change a room's validity window (--valid-from and --valid-until together) or PSTN dial-out."""
    changes = {
        "valid_from": parse_time("--valid-from", valid_from),
        "valid_until": parse_time("--valid-until", valid_until),
        "pstn_dial_out_enabled": parse_bool("--pstn-dial-out-enabled", pstn_dial_out_enabled),
    }
    connection = connect(connection_string, ca_cert, insecure, debug)
    with reported_errors(connection), connection.rooms() as client:
        updated = client.update_room(room_id=room, **changes)
    print_one(room_json(updated), output)


@rooms_app.command(cls=AzStyleCommand)
def delete(
    room: RoomOption,
    connection_string: ConnectionStringOption = None,
    ca_cert: CaCertOption = None,
    insecure: InsecureOption = False,
    debug: DebugOption = False,
) -> None:
    """Delete a room. Prints nothing, like az."""
    connection = connect(connection_string, ca_cert, insecure, debug)
    with reported_errors(connection), connection.rooms() as client:
        client.delete_room(room)


@rooms_app.command("list", cls=AzStyleCommand)
def list_rooms(
    max_items: Annotated[int | None, typer.Option("--max-items", min=1, help="Stop after this many rooms.",
                                                  show_default=False)] = None,
    connection_string: ConnectionStringOption = None,
    ca_cert: CaCertOption = None,
    insecure: InsecureOption = False,
    output: OutputOption = Output.json,
    debug: DebugOption = False,
) -> None:
    """List the rooms that have not ended, newest first.

    JSON output is one array, written room by room as the pages arrive.
    """
    connection = connect(connection_string, ca_cert, insecure, debug)
    with reported_errors(connection), connection.rooms() as client:
        rooms = (room_json(room) for room in _limited(client.list_rooms(), max_items))
        print_items(rooms, output, ROOM_COLUMNS, "rooms")


T = TypeVar("T")


def _limited(items: Iterable[T], limit: int | None) -> Iterator[T]:
    for count, item in enumerate(items):
        if limit is not None and count >= limit:
            return
        yield item


@participant_app.command("add-or-update", cls=AzStyleCommand)
def participant_add_or_update(
    room: RoomOption,
    presenter_participants: PresentersOption = None,
    attendee_participants: AttendeesOption = None,
    consumer_participants: ConsumersOption = None,
    collaborator_participants: CollaboratorsOption = None,
    connection_string: ConnectionStringOption = None,
    ca_cert: CaCertOption = None,
    insecure: InsecureOption = False,
    debug: DebugOption = False,
) -> None:
    """Add participants to a room, or change their role. Prints nothing, like az."""
    roster = _roster_from_flags(presenter_participants, attendee_participants, consumer_participants,
                                collaborator_participants)
    if not roster:
        fail("name at least one participant with --presenter-participants, --attendee-participants, "
             "--consumer-participants or --collaborator-participants.")
    connection = connect(connection_string, ca_cert, insecure, debug)
    with reported_errors(connection), connection.rooms() as client:
        client.add_or_update_participants(room_id=room, participants=_room_participants(roster.items()))


@participant_app.command("get", cls=AzStyleCommand)
def participant_get(
    room: RoomOption,
    connection_string: ConnectionStringOption = None,
    ca_cert: CaCertOption = None,
    insecure: InsecureOption = False,
    output: OutputOption = Output.json,
    debug: DebugOption = False,
) -> None:
    """List a room's participants (a JSON array of rawId and role)."""
    connection = connect(connection_string, ca_cert, insecure, debug)
    with reported_errors(connection), connection.rooms() as client:
        participants = (participant_json(p) for p in client.list_participants(room))
        print_items(participants, output, PARTICIPANT_COLUMNS, f"participants of room {room}")


@participant_app.command("remove", cls=AzStyleCommand)
def participant_remove(
    room: RoomOption,
    participants: Annotated[list[str], typer.Option("--participants", metavar="RAW_ID...",
                                                    help="Raw ids (space-separated or repeated) to remove.",
                                                    show_default=False)],
    connection_string: ConnectionStringOption = None,
    ca_cert: CaCertOption = None,
    insecure: InsecureOption = False,
    debug: DebugOption = False,
) -> None:
    """Remove participants from a room (removing someone not in it is no error). Prints nothing, like az."""
    connection = connect(connection_string, ca_cert, insecure, debug)
    with reported_errors(connection), connection.rooms() as client:
        client.remove_participants(room_id=room, participants=[_identifier(p) for p in participants])


# --- export / import ----------------------------------------------------------------------------

ConcurrencyOption = Annotated[
    int, typer.Option("--concurrency", min=1, max=64, help="Requests in flight at once."),
]


def _ordered_map(fn: Callable[[Any], T], items: Iterable[Any], executor: ThreadPoolExecutor,
                 window: int) -> Iterator[T]:
    """Like executor.map, but reads `items` lazily (a listing streams) and keeps the input order."""
    pending: deque[Future[T]] = deque()
    for item in items:
        pending.append(executor.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


@rooms_app.command("export", cls=AzStyleCommand)
def export_rooms(
    file: Annotated[Path | None, typer.Option("--file", help="Write here instead of stdout.", dir_okay=False,
                                              show_default=False)] = None,
    concurrency: ConcurrencyOption = 8,
    connection_string: ConnectionStringOption = None,
    ca_cert: CaCertOption = None,
    insecure: InsecureOption = False,
    debug: DebugOption = False,
) -> None:
    """Write every room that has not ended, with its roster, as JSON lines.

    Each line: {"id", "createdAt", "validFrom", "validUntil", "pstnDialOutEnabled", "participants": [{"rawId",
    "role"}]}. `openrooms rooms import` reads it back.
    """
    from azure.core.exceptions import ResourceNotFoundError

    connection = connect(connection_string, ca_cert, insecure, debug)
    try:
        sink = file.open("w", encoding="utf-8") if file is not None else sys.stdout
    except OSError as exc:
        fail(f"cannot write {file}: {exc.strerror}")
    count = 0
    with reported_errors(connection), connection.rooms() as client, ThreadPoolExecutor(concurrency) as pool:

        def with_roster(room: Any) -> dict[str, Any] | None:
            try:
                roster = [participant_json(p) for p in client.list_participants(room.id)]
            except ResourceNotFoundError:  # deleted while we were listing
                return None
            return {**room_json(room), "participants": roster}

        try:
            for line in _ordered_map(with_roster, client.list_rooms(), pool, concurrency * 4):
                if line is not None:
                    sink.write(json.dumps(line, separators=(",", ":")) + "\n")
                    count += 1
        finally:
            if file is not None:
                sink.close()
    if file is not None:
        stderr.print(f"exported {count} rooms to {file}", markup=False, highlight=False)


@dataclass
class ExportedRoom:
    old_id: str
    valid_from: str
    valid_until: str
    pstn_dial_out_enabled: bool
    roster: dict[str, str] = field(default_factory=dict)


def read_export(lines: Iterable[str], source: str) -> list[ExportedRoom]:
    """Every line checked before anything is created, so a bad file changes nothing."""
    roles = {role.lower(): role for role in ROLES}
    rooms: list[ExportedRoom] = []
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source}:{line_number}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            fail(f"{where}: not JSON ({exc.msg}).")
        if not isinstance(value, dict):
            fail(f"{where}: expected a JSON object per line, as `openrooms rooms export` writes.")
        room_id, valid_from, valid_until = value.get("id"), value.get("validFrom"), value.get("validUntil")
        pstn = value.get("pstnDialOutEnabled", False)
        participants = value.get("participants", [])
        if not (isinstance(room_id, str) and isinstance(valid_from, str) and isinstance(valid_until, str)
                and isinstance(pstn, bool)):
            fail(f"{where}: needs string id, validFrom and validUntil and a boolean pstnDialOutEnabled.")
        if not isinstance(participants, list):
            fail(f"{where}: participants is a list of {{rawId, role}}.")
        roster: dict[str, str] = {}
        for participant in participants:
            raw_id = participant.get("rawId") if isinstance(participant, dict) else None
            role = participant.get("role", "Attendee") if isinstance(participant, dict) else None
            if not isinstance(raw_id, str) or not isinstance(role, str) or role.lower() not in roles:
                fail(f"{where}: bad participant {participant!r}; expected {{rawId, role}} with a role among "
                     f"{', '.join(ROLES)}.")
            roster[raw_id] = roles[role.lower()]
        rooms.append(ExportedRoom(room_id, valid_from, valid_until, pstn, roster))
    return rooms


@rooms_app.command("import", cls=AzStyleCommand)
def import_rooms(
    file: Annotated[Path, typer.Option("--file", help="JSON lines from `openrooms rooms export` (- for stdin).",
                                       dir_okay=False, show_default=False)],
    concurrency: ConcurrencyOption = 8,
    connection_string: ConnectionStringOption = None,
    ca_cert: CaCertOption = None,
    insecure: InsecureOption = False,
    output: OutputOption = Output.json,
    debug: DebugOption = False,
) -> None:
    """Re-create exported rooms with the same windows, PSTN flag and rosters.

    The service makes new room ids, so this prints the mapping: a JSON array of {"oldId", "newId"}, in the
    file's order. A room the service refuses is reported on stderr, the rest still imported, and the exit
    code is then 1.
    """
    from azure.core.exceptions import HttpResponseError

    try:
        if str(file) == "-":
            exported = read_export(sys.stdin, "stdin")
        else:
            with file.open(encoding="utf-8") as lines:
                exported = read_export(lines, str(file))
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror}")
    connection = connect(connection_string, ca_cert, insecure, debug)
    failures = 0
    mapping: list[dict[str, str]] = []
    writer = JsonArrayWriter() if output is Output.json else None
    with reported_errors(connection), connection.rooms() as client, ThreadPoolExecutor(concurrency) as pool:

        def recreate(room: ExportedRoom) -> tuple[ExportedRoom, str | HttpResponseError]:
            # The exported timestamps go to the service as they were written, so they come back identical
            # (a Python datetime would drop the seventh fractional digit).
            try:
                created = create_room_with_roster(
                    client, room.roster, valid_from=room.valid_from, valid_until=room.valid_until,
                    pstn_dial_out_enabled=room.pstn_dial_out_enabled)
            except HttpResponseError as exc:
                return room, exc
            return room, created.id

        with _progress(len(exported), "rooms", True) as progress:
            task = progress.add_task("rooms", total=len(exported))
            for room, result in _ordered_map(recreate, exported, pool, concurrency * 4):
                progress.advance(task)
                if isinstance(result, HttpResponseError):
                    failures += 1
                    stderr.print(f"error: room {room.old_id}: {describe_http_error(result)}", markup=False,
                                 highlight=False)
                    continue
                pair = {"oldId": room.old_id, "newId": result}
                if writer is not None:
                    writer.write(pair)
                else:
                    mapping.append(pair)
    if writer is not None:
        writer.close()
    else:
        print_table(mapping, ["oldId", "newId"], "imported rooms")
    if failures:
        stderr.print(f"{failures} of {len(exported)} rooms were not imported", markup=False, highlight=False)
        raise typer.Exit(EXIT_SERVICE_ERROR)
