"""What `openrooms rooms` and `openrooms identity` share: the connection, output, and error reporting.

These commands are clients: they talk to any ACS-compatible endpoint (openrooms or Azure) through the
official Python SDKs, as `az communication rooms/identity` does.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import inspect
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperCommand

CONNECTION_STRING_ENV = "AZURE_COMMUNICATION_CONNECTION_STRING"
EXIT_SERVICE_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3  # as az exits when the service answers 404

stderr = Console(stderr=True, highlight=False, soft_wrap=True)


class Output(enum.StrEnum):
    json = "json"
    tsv = "tsv"
    table = "table"
    none = "none"


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
    Output, typer.Option("--output", "-o", help="json (what az prints), tsv (as az's), table (for people) or "
                         "none.", rich_help_panel="Output"),
]
QueryOption = Annotated[
    str | None, typer.Option("--query", metavar="JMESPATH", help="A JMESPath query applied to the JSON result "
                             "before it is printed, as az's --query.", show_default=False,
                             rich_help_panel="Output"),
]
DebugOption = Annotated[
    bool, typer.Option("--debug", help="Show every HTTP request and response on stderr.",
                       rich_help_panel="Output"),
]
YesOption = Annotated[
    bool, typer.Option("--yes", "-y", help="Accepted for az's sake (az asks before deleting); this command "
                       "never asks."),
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


@dataclass
class Client:
    """The shared options of one client command, and the SDK clients they lead to.

    The connection is made on first use, so a command checks its own arguments (exit 2) before it.
    """

    connection_string: str | None = None
    ca_cert: Path | None = None
    insecure: bool = False
    debug: bool = False
    output: Output = Output.json
    query: str | None = None
    _connection: Connection | None = field(default=None, repr=False)
    _query: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.query is not None:
            import jmespath  # type: ignore[import-untyped]
            from jmespath.exceptions import JMESPathError  # type: ignore[import-untyped]

            try:
                self._query = jmespath.compile(self.query)
            except JMESPathError as exc:
                fail(f"--query {self.query!r} is not a JMESPath expression: {exc}")

    def connect(self) -> Connection:
        if self._connection is None:
            self._connection = connect(self.connection_string, self.ca_cert, self.insecure, self.debug)
        return self._connection

    @contextlib.contextmanager
    def rooms(self) -> Iterator[Any]:
        """A RoomsClient; what it raises becomes one line on stderr and an exit code."""
        connection = self.connect()
        with reported_errors(connection), connection.rooms() as client:
            yield client

    @contextlib.contextmanager
    def identity(self) -> Iterator[Any]:
        """A CommunicationIdentityClient; what it raises becomes one line on stderr and an exit code."""
        connection = self.connect()
        with reported_errors(connection), connection.identity() as client:
            yield client

    def print(self, result: Any, columns: list[str] | None = None) -> None:
        """One result as az prints it (json, tsv, none; after --query), or as a two-column table."""
        value = az_json(result)
        if self._query is None and self.output is Output.table:
            print_one(value, self.output, columns)
        else:
            self._emit(self._queried(value))

    def print_items(self, items: Iterable[Any], columns: list[str], title: str) -> int:
        """A listing as az prints it (one array; tsv a row per item), or a table of `columns` (dotted paths).

        Without --query, json and tsv are written item by item as the pages arrive.
        """
        values = (az_json(item) for item in items)
        if self._query is None and self.output is not Output.table:
            count = 0
            writer = JsonArrayWriter() if self.output is Output.json else None
            for value in values:
                if writer is not None:
                    writer.write(value)
                elif self.output is Output.tsv:
                    _write(tsv_row(value) + "\n")
                count += 1
            if writer is not None:
                writer.close()
            return count
        listed = list(values)
        if self._query is None:
            print_table([_flatten(item) for item in listed], columns, title)
        else:
            self._emit(self._queried(listed))
        return len(listed)

    def _queried(self, value: Any) -> Any:
        if self._query is None:
            return value
        from collections import OrderedDict

        import jmespath

        # As az: objects the query builds keep the query's key order (tsv columns follow it).
        return self._query.search(value, jmespath.Options(dict_cls=OrderedDict))

    def _emit(self, value: Any) -> None:
        """A whole (queried) result: json, tsv or none as az writes it; table as a generic table."""
        if value is None or self.output is Output.none:
            return  # az prints nothing for a result of None (e.g. a query that matches nothing)
        if self.output is Output.json:
            print_json(value)
        elif self.output is Output.tsv:
            _write("".join(tsv_row(row) + "\n" for row in (value if isinstance(value, list) else [value])))
        elif isinstance(value, dict):
            print_one(value, Output.table)
        else:
            rows = value if isinstance(value, list) else [value]
            flat = [_flatten(row) if isinstance(row, dict) else {"Result": row} for row in rows]
            print_table(flat, list(dict.fromkeys(key for row in flat for key in row)))


# The options every client command takes, in this order after its own: (name, annotation, default).
_SHARED: list[tuple[str, Any, Any]] = [
    ("connection_string", ConnectionStringOption, None),
    ("ca_cert", CaCertOption, None),
    ("insecure", InsecureOption, False),
    ("output", OutputOption, Output.json),
    ("query", QueryOption, None),
    ("debug", DebugOption, False),
]
_PRINTING = {"output", "query"}
F = TypeVar("F", bound=Callable[..., None])


def client_command(app: typer.Typer, name: str, *, prints: bool = True) -> Callable[[F], F]:
    """Registers `fn(..., client: Client)` as command `name` of `app`, with the shared options added.

    The command gets --connection-string, --ca-cert, --insecure and --debug, and --output and --query when
    it prints something (`prints`); `fn` receives them as one `Client`. Like az, values may follow an option
    separated by spaces (`AzStyleCommand`).
    """

    def register(fn: F) -> F:
        own = [p for p in inspect.signature(fn, eval_str=True).parameters.values() if p.name != "client"]
        shared = [(n, a, d) for n, a, d in _SHARED if prints or n not in _PRINTING]
        parameters = own + [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=a)
                            for n, a, d in shared]

        @functools.wraps(fn)
        def command(**kwargs: Any) -> None:
            client = Client(**{n: kwargs.pop(n) for n, _, _ in shared})
            fn(**kwargs, client=client)

        command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in parameters}
        app.command(name, cls=AzStyleCommand)(command)
        return fn

    return register


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
        fail(describe_http_error(exc), EXIT_NOT_FOUND if exc.status_code == 404 else EXIT_SERVICE_ERROR)
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


# --- rooms SDK values ---------------------------------------------------------------------------

ROLES = ("Presenter", "Attendee", "Consumer", "Collaborator")


def identifier(raw_id: str) -> Any:
    """The SDK's identifier object for a raw id, as az makes it (`identifier_from_raw_id`).

    The SDK sends only the raw id, so any id reaches the service as typed.
    """
    from azure.communication.rooms._shared.models import identifier_from_raw_id

    return identifier_from_raw_id(raw_id)


def room_participants(roster: Iterable[tuple[str, str]]) -> list[Any]:
    """RoomParticipant objects for (raw id, role) pairs."""
    from azure.communication.rooms import RoomParticipant

    return [RoomParticipant(communication_identifier=identifier(raw_id), role=role) for raw_id, role in roster]


# --- output -------------------------------------------------------------------------------------

_SNAKE = re.compile(r"(?!^)_([a-zA-Z])")


def az_json(value: Any) -> Any:
    """What az makes of a command's result before it prints it as JSON (azure-cli-core's `todict`).

    An SDK object becomes an object of its public attributes, named in camelCase (`created_at` ->
    `createdAt`, `raw_id` -> `rawId`); models of the newer SDK generator (`_is_model`) list theirs through
    azure-core. Enums become their value, dates and times `isoformat()`, durations `str()`; dicts keep
    their keys as they are (so the dict az's `token issue` builds keeps `user_id`, `expires_on`).
    """
    if isinstance(value, dict):
        return {key: az_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [az_json(item) for item in value]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, date | time | datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    if getattr(value, "_is_model", False):
        from azure.core.serialization import attribute_list, get_backcompat_attr_name

        return {_camel(get_backcompat_attr_name(value, name)): az_json(getattr(value, name))
                for name in attribute_list(value) if hasattr(value, name)}
    if hasattr(value, "_asdict"):
        return az_json(value._asdict())
    if hasattr(value, "__dict__"):
        return {_camel(name): az_json(item) for name, item in vars(value).items()
                if not name.startswith("_") and not callable(item)}
    return value


def _camel(name: str) -> str:
    return _SNAKE.sub(lambda match: match.group(1).upper(), name)


def _dumps(value: Any) -> str:
    # As az's JSON output: keys sorted, two-space indent, non-ASCII kept.
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def tsv_row(value: Any) -> str:
    """One line of az's `-o tsv`: an object's values (sorted by key, unless the query built it), tab-separated.

    Within a row a list shows as its length and an object as an empty cell; a row that is a lone boolean is
    lower-case, one inside a row is as Python writes it.
    """
    from collections import OrderedDict

    if isinstance(value, OrderedDict):
        cells: Iterable[Any] = value.values()
    elif isinstance(value, dict):
        cells = [cell for _, cell in sorted(value.items())]
    elif isinstance(value, list):
        cells = value
    elif isinstance(value, bool):
        return str(value).lower()
    else:
        return _tsv_cell(value)
    return "\t".join(_tsv_cell(cell) for cell in cells)


def _tsv_cell(value: Any) -> str:
    if isinstance(value, list):
        return str(len(value))
    if isinstance(value, dict):
        return ""
    return value if isinstance(value, str) else str(value)


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def print_json(value: Any) -> None:
    sys.stdout.write(_dumps(value) + "\n")
    sys.stdout.flush()


class JsonArrayWriter:
    """Writes a JSON array one element at a time, so long listings show up as they arrive.

    The text is the same as the whole array printed at once. On an error part-way the array is left
    unclosed, so nothing downstream mistakes it for the whole list.
    """

    def __init__(self) -> None:
        self.count = 0

    def write(self, value: Any) -> None:
        sys.stdout.write(("[\n" if self.count == 0 else ",\n") + _indent(_dumps(value)))
        sys.stdout.flush()
        self.count += 1

    def close(self) -> None:
        sys.stdout.write("[]\n" if self.count == 0 else "\n]\n")
        sys.stdout.flush()


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def print_items(items: Iterable[dict[str, Any]], output: Output, columns: list[str], title: str) -> int:
    """JSON: a streamed array. Table: one Rich table once everything has arrived.

    `columns` are dotted paths into each item (`communicationIdentifier.rawId`); a column's header is the
    path's last part.
    """
    if output is Output.json:
        writer = JsonArrayWriter()
        for item in items:
            writer.write(item)
        writer.close()
        return writer.count
    rows = [_flatten(item) for item in items]
    print_table(rows, columns, title)
    return len(rows)


def print_table(rows: list[dict[str, Any]], columns: list[str], title: str | None = None) -> None:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column.rsplit(".", 1)[-1], overflow="fold")
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

