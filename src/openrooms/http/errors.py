"""Errors -> the ACS error envelope. The one place where any failure becomes bytes on the wire."""

from __future__ import annotations

from collections.abc import Set

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
    if error.call_end_sub_code is not None:  # as the ACS Calling SDK's CallEndReason names it
        body["callEndReason"] = {"code": error.status, "subCode": error.call_end_sub_code}
    return msgspec.json.encode({"error": body})


def unknown_path() -> ServiceError:
    """Routing failures (no such path, method not allowed) in the same envelope as everything else."""
    return ServiceError(404, "NotFound", "The server cannot find the requested resource.")


def method_not_allowed(allowed: Set[str]) -> ServiceError:
    return ServiceError(405, "MethodNotAllowed", "The HTTP method is not allowed on this resource.",
                        headers={"Allow": ", ".join(sorted(allowed))})


def internal_error(request_id: str) -> ServiceError:
    return ServiceError(
        500, "InternalError", f"The server failed to process the request; the log has it under request id {request_id}."
    )


def wire_headers(error: ServiceError) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", JSON.encode()), (b"x-ms-error-code", error.code.encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    return headers
