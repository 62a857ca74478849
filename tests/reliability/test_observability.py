"""Metrics, readiness, request correlation and structured logs, on real server processes."""

from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from openrooms.config import DEV_ACCESS_KEY, DEV_SECONDARY_KEY, Settings
from openrooms.http import metrics
from openrooms.http.app import create_app
from openrooms.store.protocol import StoreUnavailable
from openrooms.store.sqlite import SqliteStore
from tests.support import Server, running_server

V = "api-version=2025-03-13"
WRONG_KEY = base64.b64encode(b"not-the-key-of-this-server-at-all").decode()


def samples(server: Server) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = httpx.get(server.endpoint + "metrics", verify=server.verify)  # unsigned, like a scraper
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def requests_total(server: Server, operation: str, status: int) -> float:
    key = ("openrooms_requests_total", frozenset({("operation", operation), ("status", str(status))}))
    return samples(server).get(key, 0.0)


def test_metrics_count_every_worker_s_requests_by_operation_and_status(tmp_path: Path) -> None:
    with running_server(tmp_path, "--workers", "3", tls=False) as server:
        for _ in range(30):  # enough that, spread over 3 workers, each scrape must sum several of them
            assert server.request("POST", f"/rooms?{V}", b"{}").status_code == 201
        for _ in range(7):
            assert server.request("GET", f"/rooms/1234567890123456?{V}").status_code == 404
        assert server.request("GET", f"/rooms?{V}", sign=False).status_code == 401
        # Each worker writes its counts out within a second of counting them.
        deadline = time.monotonic() + 10
        while requests_total(server, "rooms_create", 201) < 30 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(metrics.FLUSH_SECONDS + 0.5)
        for _ in range(5):  # every scrape, whichever worker answers it, reports the same totals
            assert requests_total(server, "rooms_create", 201) == 30
            assert requests_total(server, "rooms_get", 404) == 7
            assert requests_total(server, "rooms_list", 401) == 1
        histogram = ("openrooms_request_duration_seconds_count", frozenset({("operation", "rooms_create")}))
        assert samples(server)[histogram] == 30


def test_metrics_can_be_turned_off(tmp_path: Path) -> None:
    with running_server(tmp_path, "--no-metrics", tls=False) as server:
        response = httpx.get(server.endpoint + "metrics")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "NotFound"


def test_readyz_answers_when_the_store_does(tmp_path: Path) -> None:
    with running_server(tmp_path, tls=False) as server:
        response = httpx.get(server.endpoint + "readyz")
        assert response.status_code == 200 and response.json() == {"status": "ready"}


async def test_readyz_is_503_in_the_envelope_when_the_store_cannot_answer() -> None:
    store = SqliteStore.open(None)

    async def ping() -> None:
        raise StoreUnavailable("disk I/O error")

    store.ping = ping  # type: ignore[method-assign]
    app = create_app(Settings(in_memory=True), store=store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["code"] == "ServiceUnavailable"
    assert "disk I/O error" in response.json()["error"]["message"]


def test_correlation_headers_are_echoed(tmp_path: Path) -> None:
    with running_server(tmp_path, tls=False) as server:
        for sign, status in ((True, 200), (False, 401)):  # on success and on errors alike
            response = server.request("GET", f"/rooms?{V}", sign=sign, headers={
                "x-ms-client-request-id": "my-client-id", "MS-CV": "Gy3N9cfyG0KD0tqv5bE3Lw.1"})
            assert response.status_code == status
            assert response.headers["x-ms-client-request-id"] == "my-client-id"
            assert response.headers["ms-cv"] == "Gy3N9cfyG0KD0tqv5bE3Lw.1"
            assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-ms-request-id"])


def test_json_logs_carry_request_fields_and_never_a_key_or_signature(tmp_path: Path) -> None:
    with running_server(tmp_path, "--log-format", "json", tls=False) as server:
        ok = server.request("POST", f"/rooms?{V}", b"{}", headers={"MS-CV": "cv.7"})
        denied = server.request("GET", f"/rooms?{V}", key=WRONG_KEY)
        assert (ok.status_code, denied.status_code) == (201, 401)
        denied_signature = denied.request.headers["authorization"].split("Signature=")[1]
        server.stop()
        log = server.log()
    entries = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    access = {entry["request_id"]: entry for entry in entries if entry["logger"] == "openrooms.access"}
    created = access[ok.headers["x-ms-request-id"]]
    assert created["operation"] == "rooms_create" and created["status"] == 201 and created["ms_cv"] == "cv.7"
    assert access[denied.headers["x-ms-request-id"]]["status"] == 401
    body_log = "\n".join(line for line in log.splitlines() if not line.startswith("  connection string"))
    for secret in (DEV_ACCESS_KEY, DEV_SECONDARY_KEY, WRONG_KEY, denied_signature,
                   ok.request.headers["authorization"].split("Signature=")[1]):
        assert secret not in body_log
