"""`openrooms rooms ...`: the twin of `az communication rooms ...`.

Each command takes az's options and prints what az prints (see `client.az_json`). The bulk commands
(`--participants-file`, `rooms export`, `rooms import`) are in `cli/bulk.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from openrooms.cli.bulk import bulk_app, create_room_with_roster, progress_bar, read_roster_file
from openrooms.cli.client import (
    ROLES,
    Client,
    YesOption,
    client_command,
    fail,
    identifier,
    parse_bool,
    parse_time,
    room_participants,
)

ROOM_COLUMNS = ["id", "createdAt", "validFrom", "validUntil", "pstnDialOutEnabled"]
PARTICIPANT_COLUMNS = ["communicationIdentifier.rawId", "role"]

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


def _roster_from_flags(presenters: list[str] | None, attendees: list[str] | None, consumers: list[str] | None,
                       collaborators: list[str] | None) -> dict[str, str]:
    roster: dict[str, str] = {}
    for role, ids in zip(ROLES, (presenters, attendees, consumers, collaborators), strict=True):
        for raw_id in ids or ():
            roster[raw_id] = role
    return roster


@client_command(rooms_app, "create")
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
    *,
    client: Client,
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
    with client.rooms() as rooms, progress_bar(participants_file is not None) as progress:
        room = create_room_with_roster(rooms, roster, progress, **window)
    client.print(room, ROOM_COLUMNS)


@client_command(rooms_app, "get")
def get(room: RoomOption, *, client: Client) -> None:
    """Show a room."""
    with client.rooms() as rooms:
        found = rooms.get_room(room)
    client.print(found, ROOM_COLUMNS)


@client_command(rooms_app, "update")
def update(
    room: RoomOption,
    valid_from: ValidFromOption = None,
    valid_until: ValidUntilOption = None,
    pstn_dial_out_enabled: PstnOption = None,
    *,
    client: Client,
) -> None:
    """Change a room's validity window (--valid-from and --valid-until together) or PSTN dial-out."""
    changes = {
        "valid_from": parse_time("--valid-from", valid_from),
        "valid_until": parse_time("--valid-until", valid_until),
        "pstn_dial_out_enabled": parse_bool("--pstn-dial-out-enabled", pstn_dial_out_enabled),
    }
    with client.rooms() as rooms:
        updated = rooms.update_room(room_id=room, **changes)
    client.print(updated, ROOM_COLUMNS)


@client_command(rooms_app, "delete", prints=False)
def delete(room: RoomOption, yes: YesOption = False, *, client: Client) -> None:
    """Delete a room. Prints nothing, like az."""
    with client.rooms() as rooms:
        rooms.delete_room(room)


@client_command(rooms_app, "list")
def list_rooms(
    max_items: Annotated[int | None, typer.Option("--max-items", min=1, help="Stop after this many rooms.",
                                                  show_default=False)] = None,
    *,
    client: Client,
) -> None:
    """List the rooms that have not ended, newest first.

    JSON output is one array, written room by room as the pages arrive.
    """
    with client.rooms() as rooms:
        client.print_items(_limited(rooms.list_rooms(), max_items), ROOM_COLUMNS, "rooms")


T = TypeVar("T")


def _limited(items: Iterable[T], limit: int | None) -> Iterator[T]:
    for count, item in enumerate(items):
        if limit is not None and count >= limit:
            return
        yield item


@client_command(participant_app, "add-or-update", prints=False)
def participant_add_or_update(
    room: RoomOption,
    presenter_participants: PresentersOption = None,
    attendee_participants: AttendeesOption = None,
    consumer_participants: ConsumersOption = None,
    collaborator_participants: CollaboratorsOption = None,
    *,
    client: Client,
) -> None:
    """Add participants to a room, or change their role. Prints nothing, like az."""
    roster = _roster_from_flags(presenter_participants, attendee_participants, consumer_participants,
                                collaborator_participants)
    if not roster:
        fail("name at least one participant with --presenter-participants, --attendee-participants, "
             "--consumer-participants or --collaborator-participants.")
    with client.rooms() as rooms:
        rooms.add_or_update_participants(room_id=room, participants=room_participants(roster.items()))


@client_command(participant_app, "get")
def participant_get(room: RoomOption, *, client: Client) -> None:
    """List a room's participants (a JSON array of {communicationIdentifier, role}, as az prints)."""
    with client.rooms() as rooms:
        client.print_items(rooms.list_participants(room), PARTICIPANT_COLUMNS, f"participants of room {room}")


@client_command(participant_app, "remove", prints=False)
def participant_remove(
    room: RoomOption,
    participants: Annotated[list[str], typer.Option("--participants", metavar="RAW_ID...",
                                                    help="Raw ids (space-separated or repeated) to remove.",
                                                    show_default=False)],
    yes: YesOption = False,
    *,
    client: Client,
) -> None:
    """Remove participants from a room (removing someone not in it is no error). Prints nothing, like az."""
    with client.rooms() as rooms:
        rooms.remove_participants(room_id=room, participants=[identifier(p) for p in participants])


rooms_app.add_typer(bulk_app)  # export, import
