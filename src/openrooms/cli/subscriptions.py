"""`openrooms events subscriptions ...`: webhook subscriptions to the event log (`/events/subscriptions`, see
docs/events.md), with the client options and output of the other client commands."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import urlencode

import typer

from openrooms.cli.client import EXIT_NOT_FOUND, EXIT_SERVICE_ERROR, Client, client_command, fail
from openrooms.cli.events import API_VERSION, signed_headers

subscriptions_app = typer.Typer(help="Webhook subscriptions: deliver events to an endpoint, signed, with retries.",
                                no_args_is_help=True)
COLUMNS = ["id", "endpoint", "schema", "types", "roomId", "maxEventsPerBatch", "delivery.backlog",
           "delivery.deadLettered", "delivery.consecutiveFailures", "delivery.lastSuccessDateTime"]
TIMEOUT_SECONDS = 60  # a create or an update waits for the endpoint's handshake

IdArgument = Annotated[str, typer.Option("--id", help="The subscription's id.", show_default=False)]
TypesOption = Annotated[list[str] | None, typer.Option("--type", help="Only events of this type (repeatable), e.g. "
                                                       "OpenRooms.RoomCreated.", show_default=False)]
RoomOption = Annotated[str | None, typer.Option("--room-id", help="Only the events of this room.",
                                                show_default=False)]
SchemaOption = Annotated[str | None, typer.Option("--schema", help="EventGridSchema (the default) or "
                                                  "CloudEventSchemaV1_0.", show_default=False)]
SecretOption = Annotated[str | None, typer.Option("--secret", help="The Standard Webhooks secret (whsec_...) that "
                                                  "signs deliveries (default: one is made, shown once).",
                                                  show_default=False)]

MaxEventsOption = Annotated[int | None, typer.Option("--max-events-per-batch", help="Events per request, 1 to 5000 "
                                                     "(maxEventsPerBatch; default 1: one event per request).",
                                                     show_default=False)]
PreferredSizeOption = Annotated[int | None, typer.Option("--preferred-batch-size-in-kilobytes", help="A batch's body "
                                                         "at most, 1 to 1024 KB (preferredBatchSizeInKilobytes; "
                                                         "default 64).", show_default=False)]


def call(client: Client, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """One signed request to the subscriptions API; an error answer becomes one line on stderr and an exit code."""
    import requests

    connection = client.connect()
    url = f"{connection.endpoint.rstrip('/')}{path}?{urlencode({'api-version': API_VERSION})}"
    content = b"" if body is None else json.dumps(body).encode()
    headers = signed_headers(method, url, connection.access_key, content)
    if content:
        headers["content-type"] = "application/json"
    try:
        response = requests.request(method, url, data=content, headers=headers, verify=connection.verify,
                                    timeout=TIMEOUT_SECONDS)
    except requests.RequestException as exc:
        fail(f"cannot reach {connection.endpoint}: {exc}", EXIT_SERVICE_ERROR)
    if response.status_code >= 400:
        code = EXIT_NOT_FOUND if response.status_code == 404 else EXIT_SERVICE_ERROR
        try:
            error = response.json()["error"]
        except (ValueError, KeyError, TypeError):
            fail(f"HTTP {response.status_code}", code)
        fail(f"{error['code']}: {error['message']}", code)
    return response.json() if response.content else None


@client_command(subscriptions_app, "create")
def create(
    endpoint: Annotated[str, typer.Option("--endpoint", help="Where events go: an https URL (http only for "
                                          "loopback hosts).", show_default=False)],
    types: TypesOption = None, room_id: RoomOption = None, schema: SchemaOption = None, secret: SecretOption = None,
    max_events_per_batch: MaxEventsOption = None, preferred_batch_size: PreferredSizeOption = None,
    *, client: Client,
) -> None:
    """Subscribe an endpoint (after its handshake). The answer shows the secret: this once only."""
    body: dict[str, Any] = {"endpoint": endpoint, "types": types or None, "roomId": room_id, "schema": schema,
                            "secret": secret, "maxEventsPerBatch": max_events_per_batch,
                            "preferredBatchSizeInKilobytes": preferred_batch_size}
    client.print(call(client, "POST", "/events/subscriptions", {k: v for k, v in body.items() if v is not None}))


@client_command(subscriptions_app, "list")
def list_subscriptions(*, client: Client) -> None:
    """Every subscription, with its delivery state."""
    client.print_items(call(client, "GET", "/events/subscriptions")["value"], COLUMNS, "Subscriptions")


@client_command(subscriptions_app, "show")
def show(subscription_id: IdArgument, *, client: Client) -> None:
    """One subscription, with its delivery state."""
    client.print(call(client, "GET", f"/events/subscriptions/{subscription_id}"))


@client_command(subscriptions_app, "update")
def update(
    subscription_id: IdArgument,
    endpoint: Annotated[str | None, typer.Option("--endpoint", help="A new endpoint (the handshake again).",
                                                 show_default=False)] = None,
    types: TypesOption = None, room_id: RoomOption = None, schema: SchemaOption = None, secret: SecretOption = None,
    all_types: Annotated[bool, typer.Option("--all-types", help="Every event type again.")] = False,
    all_rooms: Annotated[bool, typer.Option("--all-rooms", help="Every room again.")] = False,
    max_events_per_batch: MaxEventsOption = None, preferred_batch_size: PreferredSizeOption = None,
    *, client: Client,
) -> None:
    """Change what is given; the rest stays."""
    if (all_types and types) or (all_rooms and room_id):
        fail("--all-types and --type, or --all-rooms and --room-id, contradict each other.")
    body: dict[str, Any] = {k: v for k, v in {"endpoint": endpoint, "types": types or None, "roomId": room_id,
                                               "schema": schema, "secret": secret,
                                               "maxEventsPerBatch": max_events_per_batch,
                                               "preferredBatchSizeInKilobytes": preferred_batch_size}.items()
                                  if v is not None}
    if all_types:
        body["types"] = None
    if all_rooms:
        body["roomId"] = None
    client.print(call(client, "PATCH", f"/events/subscriptions/{subscription_id}", body))


@client_command(subscriptions_app, "delete", prints=False)
def delete(subscription_id: IdArgument, *, client: Client) -> None:
    """Delete a subscription, with its waiting and dead-lettered deliveries."""
    call(client, "DELETE", f"/events/subscriptions/{subscription_id}")


@client_command(subscriptions_app, "dead-letters")
def dead_letters(subscription_id: IdArgument, *, client: Client) -> None:
    """The events that could not be delivered (oldest first)."""
    letters = call(client, "GET", f"/events/subscriptions/{subscription_id}/deadLetters")["value"]
    client.print_items(letters, ["id", "eventType", "subject", "attempts", "lastError", "deadLetteredDateTime"],
                       "Dead letters")


@client_command(subscriptions_app, "redeliver")
def redeliver(
    subscription_id: IdArgument,
    event_ids: Annotated[list[str] | None, typer.Option("--event-id", help="A dead-lettered event to deliver again "
                                                        "(repeatable; default: every one).",
                                                        show_default=False)] = None,
    *, client: Client,
) -> None:
    """Queue dead-lettered events again."""
    client.print(call(client, "POST", f"/events/subscriptions/{subscription_id}:redeliver",
                      {"eventIds": event_ids} if event_ids else {}))
