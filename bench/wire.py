"""Signed requests as the ACS SDKs send them: raw bytes for wrk's pools, and a small keep-alive client for
setup and for the paged scan (which must follow each nextLink, so cannot be pre-signed)."""

from __future__ import annotations

import http.client
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from openrooms.config import DEV_ACCESS_KEY
from openrooms.testing import sign_headers

API_VERSION = "2025-03-13"
USER_PREFIX = "8:acs:1b5cc06b-f352-4571-b1e6-d9b259b7c776_"
USER_AGENT = "azsdk-python-communication-rooms/1.2.0 Python/3.11 (openrooms-bench)"


def user_id(n: int) -> str:
    return f"{USER_PREFIX}00000005-14a2-493b-8a72-{n:012x}"


def signed_headers(method: str, path_and_query: str, host: str, body: bytes, key: str = DEV_ACCESS_KEY,
                   date: str | None = None) -> dict[str, str]:
    """x-ms-date, x-ms-content-sha256 and Authorization: the HMAC-SHA256 of method, path+query, date, host
    and body hash, keyed with the access key (openrooms.testing's signer, which the tests use too)."""
    return sign_headers(method, path_and_query, host, body, key, date)


def raw_request(method: str, path_and_query: str, host: str, body: bytes = b"", date: str | None = None) -> bytes:
    headers = {
        "Host": host,
        "Accept": "application/json",
        "User-Agent": USER_AGENT,
        **signed_headers(method, path_and_query, host, body, date=date),
    }
    if body or method in ("POST", "PATCH"):
        headers["Content-Type"] = "application/json" if method == "POST" else "application/merge-patch+json"
        headers["Content-Length"] = str(len(body))
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return f"{method} {path_and_query} HTTP/1.1\r\n{head}\r\n".encode() + body


def write_pool(path: Path, requests: Sequence[bytes]) -> Path:
    """The pool file `rotate.lua` reads: a count line, then a length line and the raw bytes per request."""
    with open(path, "wb") as out:
        out.write(f"{len(requests)}\n".encode())
        for request in requests:
            out.write(f"{len(request)}\n".encode())
            out.write(request)
    return path


class Client:
    """One keep-alive HTTP/1.1 connection that signs every request."""

    def __init__(self, host: str, port: int) -> None:
        self.host = f"{host}:{port}"
        self._connection = http.client.HTTPConnection(host, port, timeout=60)

    def call(self, method: str, path_and_query: str, body: Any = None, expect: int = 200) -> Any:
        data = b"" if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json", **signed_headers(method, path_and_query, self.host, data)}
        if body is not None:
            headers["Content-Type"] = "application/json" if method == "POST" else "application/merge-patch+json"
        try:
            self._connection.request(method, path_and_query, body=data, headers=headers)
            response = self._connection.getresponse()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            if method != "GET":
                raise
            # The server closed the connection while it was idle (granian after its header read timeout, 3 s):
            # as any HTTP client does with a pooled connection, a GET goes again on a new one.
            self._connection.close()
            self._connection.request(method, path_and_query, body=data, headers=headers)
            response = self._connection.getresponse()
        payload = response.read()
        if response.status != expect:
            raise RuntimeError(f"{method} {path_and_query}: {response.status} {payload[:500]!r}")
        return json.loads(payload) if payload else None

    def follow(self, next_link: str) -> Any:
        """GET a nextLink exactly as the server wrote it, as the SDKs do."""
        parts = urlsplit(next_link)
        return self.call("GET", parts.path + ("?" + parts.query if parts.query else ""))

    def close(self) -> None:
        self._connection.close()
