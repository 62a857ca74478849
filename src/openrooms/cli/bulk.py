"""`openrooms rooms` in bulk: large rosters from a CSV file, and `rooms export` / `rooms import`.

Nothing here has a twin in az; the az twin commands are in `cli/rooms.py`.
"""

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
    ROLES,
    Client,
    az_json,
    client_command,
    describe_http_error,
    fail,
    room_participants,
    stderr,
)

# Participants per request when a roster is sent in parts: well under the service's body limit.
PARTICIPANT_CHUNK = 500
T = TypeVar("T")

bulk_app = typer.Typer()  # merged into `openrooms rooms`

ConcurrencyOption = Annotated[
    int, typer.Option("--concurrency", min=1, max=64, help="Requests in flight at once."),
]


# --- large rosters ------------------------------------------------------------------------------

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


def progress_bar(enabled: bool) -> Progress:
    """A progress bar on stderr, shown only when `enabled` and stderr is a terminal."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=stderr, transient=True, disable=not (enabled and stderr.is_terminal))


def create_room_with_roster(client: Any, roster: dict[str, str], progress: Progress | None = None,
                            **room: Any) -> Any:
    """Creates the room with the first part of the roster and adds the rest in parts.

    All or nothing: if a later part fails, the room is deleted again and the error raised.
    """
    chunks = _chunks(roster)
    created = client.create_room(participants=room_participants(chunks[0]) if chunks else None, **room)
    task = progress.add_task("participants", total=len(roster)) if progress is not None else None
    try:
        if progress is not None and task is not None and chunks:
            progress.advance(task, len(chunks[0]))
        for chunk in chunks[1:]:
            client.add_or_update_participants(room_id=created.id, participants=room_participants(chunk))
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


# --- export / import ----------------------------------------------------------------------------

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


def _exported_participant(participant: Any) -> dict[str, str]:
    return {"rawId": participant.communication_identifier.raw_id,
            "role": str(getattr(participant.role, "value", participant.role))}


@client_command(bulk_app, "export", prints=False)
def export_rooms(
    file: Annotated[Path | None, typer.Option("--file", help="Write here instead of stdout.", dir_okay=False,
                                              show_default=False)] = None,
    concurrency: ConcurrencyOption = 8,
    *,
    client: Client,
) -> None:
    """Write every room that has not ended, with its roster, as JSON lines.

    Each line: {"id", "createdAt", "validFrom", "validUntil", "pstnDialOutEnabled", "participants": [{"rawId",
    "role"}]}. `openrooms rooms import` reads it back.
    """
    from azure.core.exceptions import ResourceNotFoundError

    client.connect()  # a bad connection string fails before the file is created
    try:
        sink = file.open("w", encoding="utf-8") if file is not None else sys.stdout
    except OSError as exc:
        fail(f"cannot write {file}: {exc.strerror}")
    count = 0
    with client.rooms() as rooms, ThreadPoolExecutor(concurrency) as pool:

        def with_roster(room: Any) -> dict[str, Any] | None:
            try:
                roster = [_exported_participant(p) for p in rooms.list_participants(room.id)]
            except ResourceNotFoundError:  # deleted while we were listing
                return None
            return {**az_json(room), "participants": roster}

        try:
            for line in _ordered_map(with_roster, rooms.list_rooms(), pool, concurrency * 4):
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


@client_command(bulk_app, "import")
def import_rooms(
    file: Annotated[Path, typer.Option("--file", help="JSON lines from `openrooms rooms export` (- for stdin).",
                                       dir_okay=False, show_default=False)],
    concurrency: ConcurrencyOption = 8,
    *,
    client: Client,
) -> None:
    """Re-create exported rooms with the same windows, PSTN flag and rosters.

    The service makes new room ids, so this prints the mapping: a JSON array of {"newId", "oldId"}, in the
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
    failures = 0
    with client.rooms() as rooms, ThreadPoolExecutor(concurrency) as pool:

        def recreate(room: ExportedRoom) -> tuple[ExportedRoom, str | HttpResponseError]:
            # The exported timestamps go to the service as they were written, so they come back identical
            # (a Python datetime would drop the seventh fractional digit).
            try:
                created = create_room_with_roster(
                    rooms, room.roster, valid_from=room.valid_from, valid_until=room.valid_until,
                    pstn_dial_out_enabled=room.pstn_dial_out_enabled)
            except HttpResponseError as exc:
                return room, exc
            return room, created.id

        def imported() -> Iterator[dict[str, str]]:
            nonlocal failures
            with progress_bar(True) as progress:
                task = progress.add_task("rooms", total=len(exported))
                for room, result in _ordered_map(recreate, exported, pool, concurrency * 4):
                    progress.advance(task)
                    if isinstance(result, HttpResponseError):
                        failures += 1
                        stderr.print(f"error: room {room.old_id}: {describe_http_error(result)}", markup=False,
                                     highlight=False)
                        continue
                    yield {"oldId": room.old_id, "newId": result}

        client.print_items(imported(), ["oldId", "newId"], "imported rooms")
    if failures:
        stderr.print(f"{failures} of {len(exported)} rooms were not imported", markup=False, highlight=False)
        raise typer.Exit(EXIT_SERVICE_ERROR)
