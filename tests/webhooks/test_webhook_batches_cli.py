"""`openrooms events subscriptions create/update` spell the batch properties as the CLI spells the others
(`--max-events-per-batch`, `--preferred-batch-size-in-kilobytes`) and send them as the API names them; in process,
the request the command would send captured (tests/webhooks/test_webhooks_server.py sends them to a server)."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from openrooms.cli import subscriptions
from openrooms.cli.main import app


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, Any]]:
    calls: list[tuple[str, str, Any]] = []

    def call(client: Any, method: str, path: str, body: Any = None) -> Any:
        calls.append((method, path, body))
        return {"id": "s"}

    monkeypatch.setattr(subscriptions, "call", call)
    return calls


def test_create_and_update_send_the_batch_properties(sent: list[tuple[str, str, Any]]) -> None:
    runner = CliRunner()
    done = runner.invoke(app, ["events", "subscriptions", "create", "--endpoint", "https://hooks.test/",
                               "--max-events-per-batch", "100", "--preferred-batch-size-in-kilobytes", "512"])
    assert done.exit_code == 0, done.output
    done = runner.invoke(app, ["events", "subscriptions", "update", "--id", "s", "--max-events-per-batch", "7"])
    assert done.exit_code == 0, done.output
    done = runner.invoke(app, ["events", "subscriptions", "create", "--endpoint", "https://hooks.test/"])
    assert done.exit_code == 0, done.output
    assert sent == [
        ("POST", "/events/subscriptions", {"endpoint": "https://hooks.test/", "maxEventsPerBatch": 100,
                                           "preferredBatchSizeInKilobytes": 512}),
        ("PATCH", "/events/subscriptions/s", {"maxEventsPerBatch": 7}),
        ("POST", "/events/subscriptions", {"endpoint": "https://hooks.test/"}),  # the server's defaults
    ]
    refused = runner.invoke(app, ["events", "subscriptions", "update", "--id", "s", "--max-events-per-batch", "ten"])
    assert refused.exit_code == 2 and len(sent) == 3


def test_the_list_table_shows_the_batch_size(monkeypatch: pytest.MonkeyPatch) -> None:
    listed = {"value": [{"id": "s", "endpoint": "https://hooks.test/", "schema": "EventGridSchema", "types": None,
                         "roomId": None, "maxEventsPerBatch": 250, "preferredBatchSizeInKilobytes": 64,
                         "delivery": {"backlog": 0, "deadLettered": 0, "consecutiveFailures": 0,
                                      "lastSuccessDateTime": None}}]}
    monkeypatch.setattr(subscriptions, "call", lambda client, method, path, body=None: listed)
    done = CliRunner().invoke(app, ["events", "subscriptions", "list", "--output", "table"],
                              env={"COLUMNS": "250"})
    assert done.exit_code == 0, done.output
    assert "maxEventsPerBatch" in done.output and "250" in done.output
