"""The per-request context, filled step by step as the request passes the pipeline (see `app.py`)."""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from openrooms.http.versions import ApiFamily, ApiVersion

SCOPE_KEY = "openrooms"


@dataclass(slots=True)
class RequestContext:
    request_id: str  # set by: the pipeline's envelope step
    operation: str = "unknown"  # set by: the pipeline's route step (the route's name, e.g. rooms_create)
    # set by: the api-version step (None outside the versioned APIs); every answer names the family's versions
    api_family: ApiFamily | None = None
    api_version: ApiVersion | None = None  # set by: the api-version step
    body: bytes = b""  # set by: the credential step, which reads (and limits) the body to check its hash
    # set by: the envelope step; the request headers the steps and operations read (`pipeline._READ_HEADERS`),
    # by lower-case name, a repeated header's last value
    headers: dict[str, str] = field(default_factory=dict)


def context_of(scope_or_request: Request | MutableMapping[str, Any]) -> RequestContext:
    scope = scope_or_request.scope if isinstance(scope_or_request, Request) else scope_or_request
    ctx: RequestContext = scope[SCOPE_KEY]
    return ctx
