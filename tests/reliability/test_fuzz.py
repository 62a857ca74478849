"""Fuzzing the Rooms operations at every api-version from openrooms' own OpenAPI document (schemathesis),
every request signed with HMAC: no 5xx, and every response conforms to the document."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections import Counter, defaultdict
from collections.abc import Iterator
from email.utils import formatdate

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from openrooms.config import DEV_ACCESS_KEY
from openrooms.http.openapi import document
from tests.support import Server, running_server, sign_headers

STATUSES: dict[str, Counter[int]] = defaultdict(Counter)  # operationId -> statuses seen while fuzzing
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


class HmacAuth(requests.auth.AuthBase):
    """Signs each request as the ACS SDKs do, over the exact bytes schemathesis sends."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        body = body.encode() if isinstance(body, str) else body
        host = request.url.split("/")[2]  # type: ignore[union-attr]
        date = formatdate(usegmt=True)
        content_hash = base64.b64encode(hashlib.sha256(body).digest()).decode()
        to_sign = f"{request.method}\n{request.path_url}\n{date};{host};{content_hash}"
        key = base64.b64decode(DEV_ACCESS_KEY)
        signature = base64.b64encode(hmac.new(key, to_sign.encode(), hashlib.sha256).digest()).decode()
        request.headers.update({
            "x-ms-date": date, "x-ms-content-sha256": content_hash,
            "Authorization": f"HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={signature}",
        })
        return request


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("fuzz"), tls=False) as server:
        yield server


schema = schemathesis.openapi.from_dict(document())


@schema.include(path_regex="^/rooms").parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_rooms_operations_never_fail_and_conform_to_the_document(case: schemathesis.Case,
                                                                  fuzzed_server: Server) -> None:
    session = requests.Session()
    session.auth = HmacAuth()
    response = case.call(base_url=fuzzed_server.endpoint.rstrip("/"), session=session)
    STATUSES[case.operation.definition.raw["operationId"]][response.status_code] += 1
    case.validate_response(response, checks=CHECKS)


def test_the_served_document_is_the_one_fuzzed(fuzzed_server: Server) -> None:
    path = "/openapi.json"
    headers = sign_headers("GET", path, f"127.0.0.1:{fuzzed_server.port}")
    served = httpx.get(fuzzed_server.endpoint.rstrip("/") + path, headers=headers).json()
    assert served == schema.raw_schema


def test_the_fuzzing_got_past_authentication() -> None:
    """Runs after the fuzzing (file order): signed requests were accepted, so the service itself was fuzzed."""
    assert set(STATUSES) == {"Rooms_Create", "Rooms_List", "Rooms_Get", "Rooms_Update", "Rooms_Delete",
                             "Participants_List", "Participants_Update"}
    for operation, statuses in STATUSES.items():
        assert 401 not in statuses, (operation, statuses)
        # Generated room ids name no room, so those operations reach the store and find nothing (404).
        assert statuses.keys() & ({200, 201} if operation in ("Rooms_Create", "Rooms_List") else {404}), statuses
