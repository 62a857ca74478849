"""`openrooms events tail`: follow the event log of a server (`GET /events`, see docs/events.md)."""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import json
from email.utils import formatdate
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

import typer

from openrooms.cli.client import (
    EXIT_SERVICE_ERROR,
    CaCertOption,
    ConnectionStringOption,
    DebugOption,
    InsecureOption,
    connect,
    fail,
)

events_app = typer.Typer(help="Read the event log: every change to rooms, rosters, users and keys.",
                         no_args_is_help=True)
API_VERSION = "2026-11-01-openrooms"
WAIT_SECONDS = 30


class LineFormat(enum.StrEnum):
    line = "line"
    json = "json"


def signed_headers(method: str, url: str, access_key: str, body: bytes = b"") -> dict[str, str]:
    """The HMAC headers ACS access-key authentication asks for (as the Azure SDKs sign)."""
    parts = urlsplit(url)
    path_and_query = parts.path + (f"?{parts.query}" if parts.query else "")
    date = formatdate(usegmt=True)
    content_hash = base64.b64encode(hashlib.sha256(body).digest()).decode()
    to_sign = f"{method}\n{path_and_query}\n{date};{parts.netloc};{content_hash}"
    signature = base64.b64encode(
        hmac.new(base64.b64decode(access_key), to_sign.encode(), hashlib.sha256).digest()).decode()
    return {"x-ms-date": date, "x-ms-content-sha256": content_hash,
            "Authorization": f"HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={signature}"}


def event_line(event: dict[str, Any]) -> str:
    """One line per event: time, type, subject, cursor and the data as compact JSON."""
    data = json.dumps(event.get("data"), separators=(",", ":"))
    return f"{event['eventTime']} {event['eventType']} {event['subject']} {event['cursor']} {data}"


@events_app.command()
def tail(
    types: Annotated[list[str] | None, typer.Option("--type", help="Only events of this type (repeatable), e.g. "
                                                    "OpenRooms.RoomCreated.", show_default=False)] = None,
    room_id: Annotated[str | None, typer.Option("--room-id", help="Only the events of this room.",
                                                show_default=False)] = None,
    after: Annotated[str | None, typer.Option(help="Start after this cursor (an event's `cursor`; default: the "
                                              "oldest event kept).", show_default=False)] = None,
    follow: Annotated[bool, typer.Option("--follow/--no-follow", help="Wait for new events (default), or stop "
                                         "once caught up.")] = True,
    format_: Annotated[LineFormat, typer.Option("--format", help="line (one line per event) or json (one JSON "
                                                "object per line, as GET /events gives it).")] = LineFormat.line,
    connection_string: ConnectionStringOption = None,
    ca_cert: CaCertOption = None,
    insecure: InsecureOption = False,
    debug: DebugOption = False,
) -> None:
    """Print the event log and follow it (long-polling GET /events), in order, until interrupted."""
    import requests

    connection = connect(connection_string, ca_cert, insecure, debug)
    query: dict[str, str] = {"api-version": API_VERSION}
    if types:
        query["types"] = ",".join(types)
    if room_id:
        query["roomId"] = room_id
    if after:
        query["after"] = after
    if follow:
        query["wait"] = str(WAIT_SECONDS)
    url: str | None = f"{connection.endpoint.rstrip('/')}/events?{urlencode(query)}"
    session = requests.Session()
    try:
        while url is not None:
            try:
                response = session.get(url, headers=signed_headers("GET", url, connection.access_key),
                                       verify=connection.verify, timeout=WAIT_SECONDS + 30)
            except requests.RequestException as exc:
                fail(f"cannot reach {connection.endpoint}: {exc}", EXIT_SERVICE_ERROR)
            if response.status_code != 200:
                try:
                    error = response.json()["error"]
                    fail(f"{error['code']}: {error['message']}", EXIT_SERVICE_ERROR)
                except (ValueError, KeyError, TypeError):
                    fail(f"HTTP {response.status_code}", EXIT_SERVICE_ERROR)
            page = response.json()
            for event in page["value"]:
                typer.echo(json.dumps(event, separators=(",", ":")) if format_ is LineFormat.json
                           else event_line(event))
            url = page["nextLink"] if (page["value"] or follow) else None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    finally:
        session.close()
