"""Shared wire helpers: decoding request bodies into msgspec Structs, JSON responses, timestamps in bodies."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import msgspec
from starlette.responses import Response

from openrooms.http.errors import JSON
from openrooms.service import errors, timestamps

T = TypeVar("T")


def decode(body: bytes, kind: type[T]) -> T:
    """Decode a JSON body; an empty body is `{}`. Malformed JSON or wrong types -> 400 naming the JSON path."""
    try:
        return msgspec.json.decode(body or b"{}", type=kind)
    except msgspec.ValidationError as exc:
        message, _, path = str(exc).partition(" - at `")
        raise errors.body_invalid(message, path.rstrip("`") or "$") from None
    except msgspec.DecodeError as exc:
        raise errors.body_not_json(str(exc)) from None
    except RecursionError:  # msgspec nests as deep as Python's recursion limit allows
        raise errors.body_nested_too_deeply() from None


def timestamp(value: str | None, target: str) -> int | None:
    if value is None:
        return None
    ticks = timestamps.parse(value)
    if ticks is None:
        raise errors.not_a_date_time(value, target)
    return ticks


_CONTENT_TYPE = (b"content-type", JSON.encode())


class JsonResponse(Response):
    """A JSON answer, its headers written straight out (Starlette's Response would check and re-encode them)."""

    media_type = JSON

    def __init__(self, content: bytes, status_code: int = 200, headers: dict[str, str] | None = None) -> None:
        self.status_code = status_code
        self.body = content
        self.background = None
        self.raw_headers = [(b"content-length", str(len(content)).encode()), _CONTENT_TYPE]
        if headers:
            self.raw_headers += [(name.lower().encode("latin-1"), value.encode("latin-1"))
                                 for name, value in headers.items()]


def json_response(body: bytes | Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JsonResponse(body if isinstance(body, bytes) else msgspec.json.encode(body), status, headers)


@functools.lru_cache(maxsize=1024)
def query_of(query_string: bytes) -> Mapping[str, str]:
    """A request's query parameters (a repeated one: its last value), as Starlette's `query_params` reads them.
    Cached: a client sends the same query string request after request."""
    return MappingProxyType(dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)))


def query_int(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise errors.not_a_whole_number(name) from None
