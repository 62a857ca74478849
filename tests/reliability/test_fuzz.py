"""Fuzzing every operation openrooms serves, at every api-version, from its own OpenAPI document (schemathesis):
requests signed with HMAC, the join with a real user's token made through the Identity API, the unauthenticated
endpoints sent bare. No 5xx (but the documented 501 of the Teams token exchange), and every response conforms to
the document. Generated ids name nothing, so the success answers are also checked with ids that do."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.routing import Route

from openrooms.config import DEV_ACCESS_KEY, Settings
from openrooms.http import versions
from openrooms.http.app import create_app
from openrooms.http.openapi import OPERATIONS, document
from openrooms.store.sqlite import SqliteStore
from tests.support import Server, running_server, sign_headers

STATUSES: dict[str, Counter[int | str]] = defaultdict(Counter)  # operationId -> statuses seen while fuzzing
# A 401 that is the service's answer, not the authentication's: the user id is of another resource.
NOT_OWNED = "401 IdentityNotOwned"
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]
# The one documented 5xx: openrooms has no Entra ID / Teams to exchange a Teams token with.
ANSWERS_501 = "CommunicationIdentity_ExchangeTeamsUserAccessToken"
IDENTITY_VERSION = versions.IDENTITY.versions[-1].name
ROOMS_VERSION = versions.ROOMS.versions[-1].name


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


class BearerAuth(requests.auth.AuthBase):
    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


class NoAuth(requests.auth.AuthBase):
    """Sends no Authorization header at all, whatever schemathesis generated for one."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers.pop("Authorization", None)
        return request


@dataclass(frozen=True)
class Member:
    """A user made through the Identity API, with a join token, invited to an open room."""

    raw_id: str
    token: str
    room_id: str


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # Webhook endpoints the fuzzing makes up stay on loopback (nothing listens there: their handshakes fail).
    with running_server(tmp_path_factory.mktemp("fuzz"), "--webhook-hosts", "127.0.0.1", tls=False) as server:
        yield server


def _json(response: httpx.Response, status: int) -> Any:
    assert response.status_code == status, response.text
    return response.json()


@pytest.fixture(scope="module")
def member(fuzzed_server: Server) -> Member:
    created = _json(fuzzed_server.request("POST", f"/identities?api-version={IDENTITY_VERSION}",
                                          json.dumps({"createTokenWithScopes": ["voip"]}).encode()), 201)
    raw_id = created["identity"]["id"]
    room = _json(fuzzed_server.request("POST", f"/rooms?api-version={ROOMS_VERSION}",
                                       json.dumps({"participants": {raw_id: {"role": "Attendee"}}}).encode()), 201)
    return Member(raw_id, created["accessToken"]["token"], room["id"])


def auth_for(operation: schemathesis.APIOperation, member: Member) -> requests.auth.AuthBase:
    security = operation.definition.raw.get("security")
    if security == []:
        return NoAuth()
    if security == [{"bearer": []}]:
        return BearerAuth(member.token)
    return HmacAuth()


def call(case: schemathesis.Case, server: Server, member: Member) -> requests.Response:
    session = requests.Session()
    session.auth = auth_for(case.operation, member)
    response = case.call(base_url=server.endpoint.rstrip("/"), session=session)
    if case.operation.definition.raw["operationId"] == ANSWERS_501:
        assert response.status_code < 500 or response.status_code == 501, response.text
        case.validate_response(response, checks=CHECKS)
    else:
        case.validate_response(response, checks=[not_a_server_error, *CHECKS])
    return response


schema = schemathesis.openapi.from_dict(document())


def test_the_document_is_valid_openapi_3_1() -> None:
    validate(document())


async def test_the_document_describes_every_route_the_app_serves() -> None:
    store = SqliteStore.open(None)
    app = create_app(Settings(in_memory=True), store=store)
    served = {(method.lower(), route.path) for route in app.routes if isinstance(route, Route)
              for method in route.methods or () if method != "HEAD"}
    await store.close()
    assert served == {(method, path) for path, item in document()["paths"].items() for method in item}


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_never_fails_and_conforms_to_the_document(case: schemathesis.Case, fuzzed_server: Server,
                                                                  member: Member) -> None:
    response = call(case, fuzzed_server, member)
    # schemathesis also tries methods the path does not serve (405, or 401 where a bearer token meets a path that
    # takes the access key for them): only the documented method counts below.
    if case.method.upper() == case.operation.method.upper():
        not_owned = response.status_code == 401 and response.json()["error"]["code"] == "IdentityNotOwned"
        STATUSES[case.operation.definition.raw["operationId"]][NOT_OWNED if not_owned else response.status_code] += 1


def test_the_fuzzing_got_past_authentication() -> None:
    """Runs after the fuzzing (file order): the requests were accepted, so the service itself was fuzzed."""
    assert set(STATUSES) == {op.operation_id for op in OPERATIONS}
    # Generated room ids name nothing, so those operations reach the store and find nothing (404). Generated user
    # ids have a random resource GUID, not this server's: they are another resource's users (401 IdentityNotOwned).
    reached: dict[str, int | str] = {
        "Rooms_Create": 201, "Rooms_List": 200, "CommunicationIdentity_Create": 201, ANSWERS_501: 501,
        "Health": 200, "Readiness": 200, "Metrics": 200, "Jwks": 200, "OpenApi": 200,
        "CommunicationIdentity_Delete": NOT_OWNED, "CommunicationIdentity_RevokeAccessTokens": NOT_OWNED,
        "CommunicationIdentity_IssueAccessToken": NOT_OWNED,
        "Calls_Page": 200, "Calls_PageScript": 200, "Calls_PageStyle": 200, "Events_List": 200,
        "Subscriptions_Create": 400, "Subscriptions_List": 200,
    }
    for operation, statuses in STATUSES.items():
        assert 401 not in statuses, (operation, statuses)
        assert reached.get(operation, 404) in statuses, (operation, statuses)


def _case(operation_id: str, version: str | None = None, body: Any = None,
          **path_parameters: str) -> schemathesis.Case:
    operation = schema.find_operation_by_id(operation_id)
    kwargs: dict[str, Any] = {} if body is None else {"body": body, "media_type": "application/json"}
    return operation.Case(path_parameters=path_parameters, query={"api-version": version} if version else {},
                          **kwargs)


@pytest.mark.parametrize("version", [v.name for v in versions.IDENTITY.versions])
def test_the_identity_operations_answer_as_documented_for_real_users(version: str, fuzzed_server: Server,
                                                                     member: Member) -> None:
    def answer(case: schemathesis.Case, status: int) -> Any:
        response = call(case, fuzzed_server, member)
        assert response.status_code == status, response.text
        return response.json() if response.content else None

    created = answer(_case("CommunicationIdentity_Create", version, {"createTokenWithScopes": ["chat", "voip"]}),
                     201)
    raw_id = created["identity"]["id"]
    answer(_case("CommunicationIdentity_IssueAccessToken", version, {"scopes": ["voip.join"]}, id=raw_id), 200)
    answer(_case("CommunicationIdentity_RevokeAccessTokens", version, id=raw_id), 204)
    answer(_case("CommunicationIdentity_Delete", version, id=raw_id), 204)
    answer(_case("CommunicationIdentity_Delete", version, id=raw_id), 404)
    refused = answer(_case(ANSWERS_501, version, {"token": "t", "appId": "a", "userId": "u"}), 501)
    assert refused["error"]["code"] == "NotSupported"


def test_a_member_joins_as_documented(fuzzed_server: Server, member: Member) -> None:
    response = call(_case("Rooms_Join", versions.ADMISSION.versions[0].name, {}, room_id=member.room_id),
                    fuzzed_server, member)
    assert response.status_code == 200, response.text
    assert response.json()["participant"] == {"rawId": member.raw_id, "role": "Attendee"}


def test_the_served_document_is_the_one_fuzzed(fuzzed_server: Server) -> None:
    path = "/openapi.json"
    headers = sign_headers("GET", path, f"127.0.0.1:{fuzzed_server.port}")
    served = httpx.get(fuzzed_server.endpoint.rstrip("/") + path, headers=headers).json()
    assert served == schema.raw_schema
