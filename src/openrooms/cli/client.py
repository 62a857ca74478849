"""What `openrooms rooms` and `openrooms identity` share: the connection, output, and error reporting.

These commands are clients: they talk to any ACS-compatible endpoint (openrooms or Azure) through the
official Python SDKs, as `az communication rooms/identity` does.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperCommand

CONNECTION_STRING_ENV = "AZURE_COMMUNICATION_CONNECTION_STRING"
EXIT_SERVICE_ERROR = 1
EXIT_USAGE = 2

stderr = Console(stderr=True, highlight=False, soft_wrap=True)


class Output(enum.StrEnum):
    json = "json"
    table = "table"


ConnectionStringOption = Annotated[
    str | None,
    typer.Option(
        "--connection-string",
        help=f"endpoint=https://...;accesskey=... (default: ${CONNECTION_STRING_ENV}, else the local openrooms "
        "server at https://127.0.0.1:8765/ with the development key).",
        show_default=False, rich_help_panel="Connection",
    ),
]
CaCertOption = Annotated[
    Path | None,
    typer.Option(
        "--ca-cert", help="Trust this CA certificate (PEM), e.g. the ca.pem `openrooms serve` prints.",
        exists=True, dir_okay=False, show_default=False, rich_help_panel="Connection",
    ),
]
InsecureOption = Annotated[
    bool, typer.Option("--insecure", help="Do not verify the server's TLS certificate.",
                       rich_help_panel="Connection"),
]
OutputOption = Annotated[
    Output, typer.Option("--output", "-o", help="json (the REST API's keys) or table (for people).",
                         rich_help_panel="Output"),
]
DebugOption = Annotated[
    bool, typer.Option("--debug", help="Show every HTTP request and response on stderr.",
                       rich_help_panel="Output"),
]


class AzStyleCommand(TyperCommand):
    """Lets a repeatable option take several space-separated values, as az's `nargs='+'` options do.

    `--presenter-participants a b` is read as `--presenter-participants a --presenter-participants b`:
    the commands have no positional arguments, so every bare word belongs to the option before it.
    """

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        multi = {name for p in self.params if getattr(p, "multiple", False) for name in getattr(p, "opts", ())}
        rewritten: list[str] = []
        current: str | None = None
        values_seen = 0
        for index, arg in enumerate(args):
            if arg == "--":
                rewritten += args[index:]
                break
            if arg.startswith("-"):
                name, has_value, _ = arg.partition("=")
                current = name if name in multi else None
                values_seen = 1 if has_value else 0
                rewritten.append(arg)
                continue
            if current is not None:
                if values_seen:
                    rewritten.append(current)
                values_seen += 1
            rewritten.append(arg)
        return super().parse_args(ctx, rewritten)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def warn(message: str) -> None:
    typer.echo(f"warning: {message}", err=True)


@dataclass(frozen=True)
class Connection:
    endpoint: str
    access_key: str
    verify: str | bool
    debug: bool

    def _client_options(self) -> dict[str, Any]:
        return {"connection_verify": self.verify, "logging_enable": self.debug}

    def rooms(self) -> Any:
        from azure.communication.rooms import RoomsClient

        return RoomsClient(*self._endpoint_and_credential(), **self._client_options())

    def identity(self) -> contextlib.AbstractContextManager[Any]:
        from azure.communication.identity import CommunicationIdentityClient

        # Unlike RoomsClient, this client is no context manager; the command's process ends right after.
        return contextlib.nullcontext(
            CommunicationIdentityClient(*self._endpoint_and_credential(), **self._client_options()))

    def _endpoint_and_credential(self) -> tuple[str, Any]:
        # Same as the SDKs' from_connection_string, except that it keeps the scheme: those always use
        # https, and `openrooms serve --no-tls` is plain http.
        from azure.core.credentials import AzureKeyCredential

        parts = urlsplit(self.endpoint)
        return f"{parts.scheme}://{parts.netloc}", AzureKeyCredential(self.access_key)


def connect(connection_string: str | None, ca_cert: Path | None, insecure: bool, debug: bool) -> Connection:
    """The connection from --connection-string, else the environment, else the local openrooms defaults."""
    _configure_logging(debug)
    verify: str | bool = True
    connection_string = connection_string or os.environ.get(CONNECTION_STRING_ENV) or None
    if connection_string is None:
        from openrooms.config import Settings

        try:
            settings = Settings.from_env()
        except ValueError as exc:
            fail(str(exc))
        connection_string = settings.connection_string
        local_ca = settings.certs_dir / "ca.pem"
        if local_ca.is_file():
            verify = str(local_ca)
    endpoint, access_key = parse_connection_string(connection_string)
    if ca_cert is not None and insecure:
        fail("--ca-cert and --insecure contradict each other.")
    if ca_cert is not None:
        verify = str(ca_cert)
    if insecure:
        warn("--insecure: the server's certificate is not checked; anyone between you and it can read "
             "and change this traffic.")
        verify = False
        import urllib3

        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    return Connection(endpoint, access_key, verify, debug)


def parse_connection_string(connection_string: str) -> tuple[str, str]:
    values: dict[str, str] = {}
    for element in connection_string.split(";"):
        key, _, value = element.partition("=")
        if key.strip():
            values[key.strip().lower()] = value.strip()
    endpoint, access_key = values.get("endpoint"), values.get("accesskey")
    if not endpoint or not access_key:
        fail("the connection string should look like endpoint=https://<host>/;accesskey=<base64 key>.")
    if urlsplit(endpoint).scheme not in ("http", "https") or not urlsplit(endpoint).netloc:
        fail(f"the connection string's endpoint {endpoint!r} is not an http(s) URL.")
    return endpoint, access_key


def _configure_logging(debug: bool) -> None:
    azure_logger = logging.getLogger("azure")
    if debug:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(name)s %(levelname)s: %(message)s"))
        azure_logger.handlers[:] = [handler]
        azure_logger.setLevel(logging.DEBUG)
        # The network trace above shows each exchange in full; this policy would repeat it, redacted.
        logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
    else:
        # The SDKs log warnings about their own internals (e.g. a naive timestamp they make themselves).
        azure_logger.setLevel(logging.ERROR)


@contextlib.contextmanager
def reported_errors(connection: Connection | None = None) -> Iterator[None]:
    """Turns what the SDKs raise into one line on stderr (the service's code and message) and an exit code."""
    from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

    try:
        yield
    except HttpResponseError as exc:
        fail(describe_http_error(exc), EXIT_SERVICE_ERROR)
    except (ServiceRequestError, ServiceResponseError) as exc:
        where = f" {connection.endpoint}" if connection else ""
        hint = ""
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            hint = " (pass --ca-cert with the server's CA certificate, or --insecure)"
        fail(f"cannot reach{where}: {_innermost_message(exc)}{hint}", EXIT_SERVICE_ERROR)
    except KeyboardInterrupt:
        fail("interrupted", 130)


def describe_http_error(exc: Any) -> str:
    error = getattr(exc, "error", None)
    status = getattr(exc, "status_code", None)
    if error is None or not getattr(error, "code", None):
        return f"HTTP {status} {getattr(exc, 'reason', '') or ''}".strip()
    text = f"{error.code}: {error.message}"
    details = [f"{d.code}: {d.message}" + (f" (target {d.target})" if d.target else "")
               for d in getattr(error, "details", None) or []]
    if details:
        text += " " + "; ".join(details)
    return f"{text} (HTTP {status})"


def _innermost_message(exc: BaseException) -> str:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return str(exc) or type(exc).__name__


# --- output -------------------------------------------------------------------------------------

def to_wire_time(value: Any) -> Any:
    """Timestamps as the REST API writes them; the SDKs pass some through as strings, others as datetimes."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat() if value.tzinfo else value.replace(tzinfo=UTC).isoformat()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC).isoformat()
    return value


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")
    sys.stdout.flush()


class JsonArrayWriter:
    """Writes a JSON array one element at a time, so long listings show up as they arrive.

    On an error part-way the array is left unclosed, so nothing downstream mistakes it for the whole list.
    """

    def __init__(self) -> None:
        self.count = 0

    def write(self, value: Any) -> None:
        text = json.dumps(value, indent=2)
        sys.stdout.write(("[\n" if self.count == 0 else ",\n") + _indent(text))
        sys.stdout.flush()
        self.count += 1

    def close(self) -> None:
        sys.stdout.write("[]\n" if self.count == 0 else "\n]\n")
        sys.stdout.flush()


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def print_items(items: Iterable[dict[str, Any]], output: Output, columns: list[str], title: str) -> int:
    """JSON: a streamed array. Table: one Rich table once everything has arrived."""
    if output is Output.json:
        writer = JsonArrayWriter()
        for item in items:
            writer.write(item)
        writer.close()
        return writer.count
    rows = list(items)
    print_table(rows, columns, title)
    return len(rows)


def print_table(rows: list[dict[str, Any]], columns: list[str], title: str | None = None) -> None:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(column)) for column in columns))
    Console(soft_wrap=False).print(table)


def print_one(item: dict[str, Any], output: Output, columns: list[str] | None = None) -> None:
    if output is Output.json:
        print_json(item)
        return
    flat = _flatten(item)
    table = Table(show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key in columns or list(flat):
        table.add_row(key, _cell(flat.get(key)))
    Console(soft_wrap=False).print(table)


def _flatten(item: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in item.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_bool(option: str, value: str | None) -> bool | None:
    if value is None:
        return None
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        fail(f"{option} is true or false, not {value!r}.")
    return lowered == "true"


def parse_time(option: str, value: str | None) -> datetime | None:
    """ISO 8601, e.g. 2022-07-14T10:21; a time without a zone is UTC, as az reads it."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        fail(f"{option} {value!r} is not an ISO 8601 time such as 2022-07-14T10:21 or 2022-07-14T10:21:00+02:00.")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

