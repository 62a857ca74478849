"""The console's webhook panels in process, on each store, with a real receiver on loopback: a subscription's
delivery state on the overview and the events page, its dead letters, and their re-delivery."""

from __future__ import annotations

import contextlib
import json
import time

import pytest

from openrooms.config import DEV_ACCESS_KEY
from tests.api.conftest import STORES, in_process
from tests.console.client import ConsoleClient
from tests.webhooks.receiver import Receiver, receiving

SUBSCRIPTIONS = "/events/subscriptions?api-version=2026-11-01-openrooms"
# Retries within milliseconds, and one attempt before a dead letter.
FAST = {"webhook_retry_scale": 0.0001, "webhook_timeout": 2.0, "webhook_lease_seconds": 3.0,
        "webhook_max_attempts": 1}


def _until(condition: str, page: ConsoleClient, path: str) -> str:
    """The page once it shows `condition` (a guard against a hang, not a measure)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = page.get(path).text
        if condition in text:
            return text
        time.sleep(0.05)
    raise AssertionError(f"{path} never showed {condition!r}:\n{text}")


@pytest.mark.parametrize("store", STORES)
def test_delivery_state_dead_letters_and_redelivery(store: str) -> None:
    stack = contextlib.AsyncExitStack()
    with in_process(store, **FAST) as target:
        emulator = target.emulator
        receiver: Receiver = emulator.run(stack.enter_async_context(receiving()))
        client = ConsoleClient(emulator)
        try:
            made = target.request("POST", SUBSCRIPTIONS, json.dumps({"endpoint": receiver.url}).encode())
            assert made.status_code == 201, made.text
            receiver.secret = made.json()["secret"]
            assert client.sign_in(DEV_ACCESS_KEY).status_code == 303
            assert receiver.url in client.get("/console/").text
            receiver.answer = lambda body: 500
            room_id = client.post("/console/rooms", {"ids": ""}).headers["location"].rsplit("/", 1)[1]
            events = _until("Dead letters of", client, "/console/events")
            assert f"rooms/{room_id}" in events and "HTTP 500" in events
            assert "failing" in client.get("/console/").text
            receiver.answer = lambda body: 200
            again = client.post(f"/console/events/webhooks/{made.json()['id']}/redeliver", {})
            assert again.status_code == 200
            assert "1 dead letter queued again" in again.text
            delivered = emulator.run(receiver.wait_for(1))
            assert [event["subject"] for event in delivered] == [f"rooms/{room_id}"]
            healthy = _until("healthy", client, "/console/events")
            assert "Dead letters of" not in healthy
            unknown = client.post("/console/events/webhooks/no-such-subscription/redeliver", {})
            assert unknown.status_code == 404 and 'role="alert"' in unknown.text
        finally:
            client.close()
            emulator.run(stack.aclose())
