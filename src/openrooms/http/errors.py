"""Errors -> the ACS error envelope. The one place where any failure becomes bytes on the wire.

Every error, the HTTP layer's own too (unknown path, api-version, authentication, body), is built by its named
constructor in the one catalogue, `openrooms.service.errors`; this module only writes them."""

from __future__ import annotations

import msgspec

from openrooms.service.errors import ErrorDetail, ServiceError

JSON = "application/json; charset=utf-8"


def _detail(detail: ErrorDetail) -> dict[str, str]:
    body = {"code": detail.code, "message": detail.message}
    if detail.target is not None:
        body["target"] = detail.target
    return body


def envelope(error: ServiceError) -> bytes:
    body: dict[str, object] = {"code": error.code, "message": error.message}
    if error.target is not None:
        body["target"] = error.target
    if error.details:
        body["details"] = [_detail(d) for d in error.details]
    return msgspec.json.encode({"error": body})


def wire_headers(error: ServiceError) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", JSON.encode()), (b"x-ms-error-code", error.code.encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    return headers
