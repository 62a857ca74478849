"""Webhooks: subscriptions to the event log, and the dispatcher that delivers their events (docs/events.md).

`WebhooksService` makes, lists, changes and deletes subscriptions (after the endpoint's handshake), reads their
delivery state and dead letters, and queues dead letters again. `Dispatcher` runs in every server process: it
queues each subscription's new events (`WebhookStore.enqueue_deliveries`), leases due queues, and delivers their
events one at a time per subscription and room, signed (Standard Webhooks), retried on Event Grid's schedule
until the time to live has passed, then dead-lettered. The HTTP requests themselves go through a `WebhookSender`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import ipaddress
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol
from urllib.parse import urlsplit

import msgspec
from standardwebhooks import Webhook

from openrooms.events.subscriptions import (
    CLOUD_EVENT_SCHEMA,
    EVENT_GRID_SCHEMA,
    SCHEMAS,
    Delivery,
    DeliveryState,
    Outcome,
    Subscription,
)
from openrooms.events.types import DATA_VERSION, TYPES
from openrooms.service import errors, timestamps
from openrooms.service.clock import TICKS_PER_SECOND, Clock
from openrooms.service.event_log import encode_cursor, event_id
from openrooms.service.ports import EventLog, StoreUnavailable, WebhookStore

log = logging.getLogger("openrooms.webhooks")

# Event Grid's retry schedule (seconds after a failed attempt), then hourly, within the time to live.
RETRY_SCHEDULE = (10, 30, 60, 300, 600, 1800, 3600)
RETRY_EVERY = 3600
TIME_TO_LIVE_SECONDS = 24 * 3600
MAX_ATTEMPTS = 30  # Event Grid's default
DELIVERY_TIMEOUT_SECONDS = 30.0
LEASE_SECONDS = 60.0  # longer than a delivery may take: a live dispatcher is never taken over
CONCURRENCY = 32  # queues one dispatcher delivers at once
POLL_SECONDS = 5.0  # how often it looks without being woken (other processes on SQLite, missed notifications)
FAN_OUT_BATCH = 500
DEAD_LETTER_PAGE = 100
# Receiver answers Event Grid does not retry: the request itself is wrong.
_NOT_RETRIED = (400, 413)
SECRET_PREFIX = "whsec_"
_LOOPBACK_NAMES = ("localhost", "localhost.")
VALIDATION_EVENT = "Microsoft.EventGrid.SubscriptionValidationEvent"


class SendFailed(Exception):
    """The request did not get an answer: no connection, a TLS failure, a timeout."""


class Answer(NamedTuple):
    status: int
    headers: Mapping[str, str]  # names in lower case
    body: bytes


class WebhookSender(Protocol):
    async def send(self, method: str, url: str, headers: Mapping[str, str], body: bytes,
                   timeout: float) -> Answer:
        """Send one request; raise `SendFailed` when no answer comes."""
        ...


@dataclass(frozen=True)
class Policy:
    """How deliveries are retried, timed out and leased (the settings of `serve`; tests shrink them)."""

    retry_scale: float = 1.0  # multiplies the schedule and the time to live
    max_attempts: int = MAX_ATTEMPTS
    timeout_seconds: float = DELIVERY_TIMEOUT_SECONDS
    lease_seconds: float = LEASE_SECONDS
    poll_seconds: float = POLL_SECONDS
    concurrency: int = CONCURRENCY
    hosts: frozenset[str] | None = None  # the hosts endpoints may name; None: any

    def retry_at(self, delivery: Delivery, attempts: int, now: int) -> int | None:
        """When to try again after `attempts` failed attempts; None: dead-letter it."""
        if attempts >= self.max_attempts:
            return None
        wait = RETRY_SCHEDULE[attempts - 1] if attempts <= len(RETRY_SCHEDULE) else RETRY_EVERY
        at = now + int(wait * self.retry_scale * TICKS_PER_SECOND)
        if at > delivery.enqueued_at + int(TIME_TO_LIVE_SECONDS * self.retry_scale * TICKS_PER_SECOND):
            return None
        return at


class SubscriptionView(NamedTuple):
    """A subscription with its delivery state, as the API and the console show it."""

    subscription: Subscription
    state: DeliveryState


class NewSubscription(NamedTuple):
    endpoint: str
    types: Sequence[str] | None = None
    room_id: str | None = None
    schema: str | None = None
    secret: str | None = None


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoint(endpoint: str, hosts: frozenset[str] | None = None) -> str:
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    if hosts is not None and host.lower() not in hosts:
        raise errors.webhook_host_not_allowed(endpoint, sorted(hosts))
    if parts.scheme == "https" and host:
        return endpoint
    if parts.scheme == "http" and host and is_loopback(host):
        return endpoint
    raise errors.webhook_endpoint_invalid(endpoint)


def check_types(types: Sequence[str] | None) -> tuple[str, ...] | None:
    if types is None:
        return None
    unknown = [name for name in types if name not in TYPES]
    if unknown or not types:
        raise errors.bad_request(
            f"Unknown event types: {', '.join(unknown) or '(none given)'}. Known types: {', '.join(TYPES)}.",
            "types")
    return tuple(dict.fromkeys(types))


def check_schema(schema: str | None) -> str:
    if schema is None:
        return EVENT_GRID_SCHEMA
    if schema not in SCHEMAS:
        raise errors.bad_request(f"Unknown event schema {schema!r}. Known schemas: {', '.join(SCHEMAS)}.", "schema")
    return schema


def check_secret(secret: str | None) -> str:
    if secret is None:
        return new_secret()
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except ValueError:
        key = b""
    if not secret.startswith(SECRET_PREFIX) or not 24 <= len(key) <= 64:
        raise errors.bad_request("The secret must be a Standard Webhooks secret: whsec_ and the base64 of 24 to 64 "
                                 "random bytes (or leave it out: one is made).", "secret")
    return secret


# The bodies ------------------------------------------------------------------------------------------------------
def topic(resource_id: str) -> str:
    return f"/openrooms/communicationServices/{resource_id}"


def _event_fields(delivery: Delivery, namespace: uuid.UUID) -> tuple[str, str]:
    return event_id(namespace, delivery.position), timestamps.format(delivery.time)


def event_grid_body(deliveries: Sequence[Delivery], namespace: uuid.UUID, resource_id: str) -> bytes:
    """Event Grid schema: a JSON array of events."""
    items = []
    for d in deliveries:
        id_, time = _event_fields(d, namespace)
        head = msgspec.json.encode({"id": id_, "topic": topic(resource_id), "subject": d.subject,
                                    "eventType": d.type, "eventTime": time, "dataVersion": DATA_VERSION,
                                    "metadataVersion": "1"})
        items.append(head[:-1] + b',"data":' + d.data + b"}")
    return b"[" + b",".join(items) + b"]"


def cloud_event_body(delivery: Delivery, namespace: uuid.UUID, resource_id: str) -> bytes:
    """CloudEvents 1.0, structured mode: one event."""
    id_, time = _event_fields(delivery, namespace)
    head = msgspec.json.encode({"specversion": "1.0", "id": id_, "source": topic(resource_id),
                                "type": delivery.type, "subject": delivery.subject, "time": time,
                                "datacontenttype": "application/json"})
    return head[:-1] + b',"data":' + delivery.data + b"}"


CONTENT_TYPES = {EVENT_GRID_SCHEMA: "application/json", CLOUD_EVENT_SCHEMA: "application/cloudevents+json"}


def signed_headers(secret: str, message_id: str, body: bytes, content_type: str,
                   now: datetime.datetime | None = None) -> dict[str, str]:
    """The Standard Webhooks headers of one request, with its content type."""
    at = now or datetime.datetime.now(datetime.UTC)
    return {"content-type": content_type, "webhook-id": message_id, "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": Webhook(secret).sign(message_id, at, body)}


# Subscriptions ---------------------------------------------------------------------------------------------------
class WebhooksService:
    def __init__(self, store: WebhookStore, clock: Clock, resource_id: Callable[[], Awaitable[str]],
                 sender: WebhookSender, policy: Policy | None = None, *, wake: Callable[[], None] | None = None,
                 origin: str = "openrooms") -> None:
        self._store = store
        self._clock = clock
        self._resource_id = resource_id
        self._sender = sender
        self.policy = policy or Policy()
        self._wake = wake or (lambda: None)
        self._origin = origin  # WebHook-Request-Origin of the CloudEvents handshake
        self._namespace: uuid.UUID | None = None

    async def namespace(self) -> tuple[uuid.UUID, str]:
        resource_id = await self._resource_id()
        if self._namespace is None:
            self._namespace = uuid.UUID(resource_id)
        return self._namespace, resource_id

    async def create(self, request: NewSubscription) -> Subscription:
        now = self._clock.now()
        subscription = Subscription(
            str(uuid.uuid4()), check_endpoint(request.endpoint, self.policy.hosts), check_types(request.types),
            request.room_id or None, check_schema(request.schema), check_secret(request.secret), now, now)
        await self.handshake(subscription)
        return await self._store.insert_subscription(subscription)

    async def get(self, subscription_id: str) -> SubscriptionView:
        subscription = await self._store.get_subscription(subscription_id)
        if subscription is None:
            raise errors.subscription_not_found(subscription_id)
        states = await self._store.delivery_states()
        return SubscriptionView(subscription, states.get(subscription_id, DeliveryState(None, 0, 0, 0)))

    async def list_all(self) -> list[SubscriptionView]:
        subscriptions = await self._store.list_subscriptions()
        states = await self._store.delivery_states()
        return [SubscriptionView(s, states.get(s.id, DeliveryState(None, 0, 0, 0))) for s in subscriptions]

    async def states(self) -> dict[str, DeliveryState]:
        return await self._store.delivery_states()

    async def update(self, subscription_id: str, endpoint: str | None = None, types: Sequence[str] | None = None,
                     room_id: str | None = None, schema: str | None = None, secret: str | None = None,
                     *, all_types: bool = False, all_rooms: bool = False) -> Subscription:
        """Change what is given (`all_types`, `all_rooms`: back to every type, every room); the handshake again
        when the endpoint or the schema changes."""
        current = (await self.get(subscription_id)).subscription
        changed = current._replace(
            endpoint=current.endpoint if endpoint is None else check_endpoint(endpoint, self.policy.hosts),
            types=None if all_types else current.types if types is None else check_types(types),
            room_id=None if all_rooms else current.room_id if room_id is None else room_id or None,
            schema=current.schema if schema is None else check_schema(schema),
            secret=current.secret if secret is None else check_secret(secret),
            updated_at=self._clock.now())
        if (changed.endpoint, changed.schema) != (current.endpoint, current.schema):
            await self.handshake(changed)
        if not await self._store.update_subscription(changed):
            raise errors.subscription_not_found(subscription_id)
        return changed

    async def delete(self, subscription_id: str) -> None:
        if not await self._store.delete_subscription(subscription_id):
            raise errors.subscription_not_found(subscription_id)

    async def dead_letters(self, subscription_id: str) -> list[tuple[str, str, Delivery]]:
        """The subscription's dead letters, oldest first: (event id, cursor, delivery)."""
        await self.get(subscription_id)
        namespace, _ = await self.namespace()
        letters = await self._store.list_dead_letters(subscription_id, DEAD_LETTER_PAGE)
        return [(event_id(namespace, d.position), encode_cursor(d.position), d) for d in letters]

    async def redeliver(self, subscription_id: str, event_ids: Sequence[str] | None) -> int:
        """Queue the dead letters with these event ids (None: every one) again; how many."""
        await self.get(subscription_id)
        seqs = None
        if event_ids is not None:
            namespace, _ = await self.namespace()
            letters = await self._store.list_dead_letters(subscription_id, 1 << 30)
            by_id = {event_id(namespace, d.position): d.seq for d in letters}
            unknown = [e for e in event_ids if e not in by_id]
            if unknown:
                raise errors.dead_letter_not_found(unknown[0], subscription_id)
            seqs = [by_id[e] for e in event_ids]
        count = await self._store.redeliver(subscription_id, seqs, self._clock.now())
        self._wake()
        return count

    # Handshakes ----------------------------------------------------------------------------------------------
    async def handshake(self, subscription: Subscription) -> None:
        """Event Grid schema: the subscription validation event, answered with its code; CloudEvents: the
        webhook abuse protection's OPTIONS, answered with WebHook-Allowed-Origin. Raises if the answer is not."""
        try:
            if subscription.schema == EVENT_GRID_SCHEMA:
                await self._validate_event_grid(subscription)
            else:
                await self._validate_cloud_events(subscription)
        except SendFailed as exc:
            raise errors.webhook_handshake_failed(subscription.endpoint, str(exc)) from None

    async def _validate_event_grid(self, subscription: Subscription) -> None:
        code = str(uuid.uuid4())
        _, resource_id = await self.namespace()
        message_id = str(uuid.uuid4())
        body = msgspec.json.encode([{
            "id": message_id, "topic": topic(resource_id), "subject": "", "eventType": VALIDATION_EVENT,
            "eventTime": timestamps.format(self._clock.now()), "dataVersion": "1", "metadataVersion": "1",
            "data": {"validationCode": code, "validationUrl": None}}])
        headers = {**signed_headers(subscription.secret, message_id, body, CONTENT_TYPES[EVENT_GRID_SCHEMA]),
                   "aeg-event-type": "SubscriptionValidation"}
        answer = await self._sender.send("POST", subscription.endpoint, headers, body, self.policy.timeout_seconds)
        try:
            answered = msgspec.json.decode(answer.body).get("validationResponse")
        except (msgspec.DecodeError, AttributeError):
            answered = None
        if answer.status != 200 or answered != code:
            raise errors.webhook_handshake_failed(
                subscription.endpoint, f"it answered {answer.status} without the validationResponse {code}")

    async def _validate_cloud_events(self, subscription: Subscription) -> None:
        answer = await self._sender.send("OPTIONS", subscription.endpoint, {"webhook-request-origin": self._origin},
                                         b"", self.policy.timeout_seconds)
        allowed = answer.headers.get("webhook-allowed-origin", "")
        if not 200 <= answer.status < 300 or allowed not in ("*", self._origin):
            raise errors.webhook_handshake_failed(
                subscription.endpoint, f"it answered {answer.status} with WebHook-Allowed-Origin {allowed!r} "
                f"(expected {self._origin!r} or '*')")

    # Deliveries ----------------------------------------------------------------------------------------------
    async def attempt(self, subscription: Subscription, delivery: Delivery) -> Outcome:
        """One attempt at a delivery, and what comes of it."""
        namespace, resource_id = await self.namespace()
        message_id = event_id(namespace, delivery.position)
        if subscription.schema == EVENT_GRID_SCHEMA:
            body = event_grid_body([delivery], namespace, resource_id)
        else:
            body = cloud_event_body(delivery, namespace, resource_id)
        headers = {**signed_headers(subscription.secret, message_id, body, CONTENT_TYPES[subscription.schema]),
                   "aeg-event-type": "Notification", "aeg-subscription-name": subscription.id,
                   "aeg-delivery-count": str(delivery.attempts)}
        now = self._clock.now
        try:
            answer = await self._sender.send("POST", subscription.endpoint, headers, body,
                                             self.policy.timeout_seconds)
        except SendFailed as exc:
            error = str(exc)
        else:
            if 200 <= answer.status < 300:
                return Outcome(True, None)
            error = f"HTTP {answer.status}"
            if answer.status in _NOT_RETRIED:
                return Outcome(False, None, error)
        return Outcome(False, self.policy.retry_at(delivery, delivery.attempts + 1, now()), error)


class DispatchStore(WebhookStore, EventLog, Protocol):
    """What the dispatcher reads and writes: the log, and the subscriptions' queues."""


class Dispatcher:
    """Delivers every subscription's events, alongside the dispatchers of the other processes and instances."""

    def __init__(self, store: DispatchStore, service: WebhooksService, clock: Clock,
                 observe: Callable[[str, Outcome], None] | None = None) -> None:
        self._store = store
        self._service = service
        self._clock = clock
        self._policy = service.policy
        self._owner = f"{uuid.uuid4()}"
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._observe = observe or (lambda subscription_id, outcome: None)

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        listener = asyncio.create_task(self._listen())
        try:
            while True:
                self._wake.clear()
                try:
                    await self._fan_out()
                    await self._claim()
                    wait = await self._until_due()
                except StoreUnavailable as exc:
                    log.warning("webhook dispatch paused: %s", exc)
                    wait = self._policy.poll_seconds
                except Exception:  # the dispatcher must outlive anything one round meets; the next one retries
                    log.exception("webhook dispatch failed; trying again")
                    wait = self._policy.poll_seconds
                # Not asyncio.wait_for: on Python 3.11 it can swallow a cancellation that comes as the wait ends.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
        finally:
            listener.cancel()
            for task in (listener, *self._running):
                task.cancel()
            await asyncio.gather(listener, *self._running, return_exceptions=True)

    async def _listen(self) -> None:
        while True:
            try:
                async for _ in self._store.listen_events():
                    self._wake.set()
            except Exception as exc:  # the connection failed: the poll goes on meanwhile
                log.warning("listening for new events failed: %s", exc)
            await asyncio.sleep(self._policy.poll_seconds)

    async def _until_due(self) -> float:
        due = await self._store.next_due()
        if due is None:
            return self._policy.poll_seconds
        return min(self._policy.poll_seconds, max(0.0, (due - self._clock.now()) / TICKS_PER_SECOND) + 0.001)

    async def _fan_out(self) -> None:
        for subscription in await self._store.list_subscriptions():
            while True:
                cursor = subscription.cursor or (0, 0)
                events = await self._store.list_events(cursor, None, None, FAN_OUT_BATCH)
                if not events:
                    break
                matched = [e for e in events
                           if (subscription.types is None or e.type in subscription.types)
                           and (subscription.room_id is None or e.room_id == subscription.room_id)]
                if not await self._store.enqueue_deliveries(subscription.id, cursor, events[-1].position, matched,
                                                            self._clock.now()):
                    break  # another dispatcher queued them
                subscription = subscription._replace(cursor=events[-1].position)
                if len(events) < FAN_OUT_BATCH:
                    break

    def _lease_until(self) -> int:
        return self._clock.now() + int(self._policy.lease_seconds * TICKS_PER_SECOND)

    async def _claim(self) -> None:
        room = self._policy.concurrency - len(self._running)
        if room <= 0:
            return
        claimed = await self._store.claim_deliveries(self._owner, self._clock.now(), self._lease_until(), room)
        if not claimed:
            return
        subscriptions = {s.id: s for s in await self._store.list_subscriptions()}
        for delivery in claimed:
            task = asyncio.create_task(self._drain(subscriptions, delivery))
            self._running.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wake.set()  # room for another queue

    async def _drain(self, subscriptions: dict[str, Subscription], delivery: Delivery | None) -> None:
        """Deliver a leased queue's deliveries, in order, while they are due."""
        try:
            while delivery is not None:
                subscription = subscriptions.get(delivery.subscription_id)
                if subscription is None:
                    return  # deleted since: its queue went with it
                outcome = await self._service.attempt(subscription, delivery)
                self._observe(subscription.id, outcome)
                if not outcome.delivered:
                    log.info("delivery of event %s to %s failed (%s)%s", encode_cursor(delivery.position),
                             subscription.endpoint, outcome.error,
                             "; dead-lettered" if outcome.retry_at is None else "")
                delivery = await self._store.finish_delivery(delivery, self._owner, outcome, self._clock.now(),
                                                             self._lease_until())
        except StoreUnavailable as exc:  # the lease runs out, and this or another dispatcher tries again
            log.warning("webhook delivery interrupted: %s", exc)
        except Exception:
            log.exception("webhook delivery failed; its lease runs out and it is tried again")
