"""Webhooks: subscriptions to the event log, and the dispatcher that delivers their events (docs/events.md).

`WebhooksService` makes, lists, changes and deletes subscriptions (after the endpoint's handshake), reads their
delivery state and dead letters, and queues dead letters again. `Dispatcher` runs in every delivering process: it
leases each subscription and delivers its new events straight from the log, a batch at a time, each room's in
order, signed (Standard Webhooks), one event per request or, with `maxEventsPerBatch`, several; what fails is
queued (`WebhookStore.finish_batch`), and queued deliveries are leased per room and retried one at a time on Event
Grid's schedule until the time to live has passed, then dead-lettered. The HTTP requests themselves go through a
`WebhookSender`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import functools
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
    DEFAULT_MAX_EVENTS_PER_BATCH,
    DEFAULT_PREFERRED_BATCH_KILOBYTES,
    EVENT_GRID_SCHEMA,
    MAX_EVENTS_PER_BATCH,
    PREFERRED_BATCH_KILOBYTES,
    SCHEMAS,
    BatchEnd,
    Delivery,
    DeliveryState,
    Outcome,
    Parked,
    Subscription,
)
from openrooms.events.types import DATA_VERSION, TYPES, StoredEvent
from openrooms.service import errors, holders, timestamps
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
CONCURRENCY = 32  # rooms one dispatcher delivers at once per subscription's batch, and queues it retries
POLL_SECONDS = 5.0  # how often it looks without being woken (other processes on SQLite, missed notifications)
BATCH = 500  # events a dispatcher reads from the log at a time, for one subscription
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
    max_events_per_batch: int | None = None  # None: Event Grid's default, 1
    preferred_batch_kilobytes: int | None = None  # None: 64


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


def check_batch(value: int | None, default: int, bounds: tuple[int, int], target: str) -> int:
    """`maxEventsPerBatch` or `preferredBatchSizeInKilobytes`: an integer within Event Grid's bounds."""
    if value is None:
        return default
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise errors.bad_request(f"{target} must be an integer from {low} to {high}; it is {value!r}.", target)
    return value


def check_max_events(value: int | None) -> int:
    return check_batch(value, DEFAULT_MAX_EVENTS_PER_BATCH, MAX_EVENTS_PER_BATCH, "maxEventsPerBatch")


def check_preferred_kilobytes(value: int | None) -> int:
    return check_batch(value, DEFAULT_PREFERRED_BATCH_KILOBYTES, PREFERRED_BATCH_KILOBYTES,
                       "preferredBatchSizeInKilobytes")


# The bodies ------------------------------------------------------------------------------------------------------
def topic(resource_id: str) -> str:
    return f"/openrooms/communicationServices/{resource_id}"


def _event_fields(delivery: Delivery, namespace: uuid.UUID) -> tuple[str, str]:
    return event_id(namespace, delivery.position), timestamps.format(delivery.time)


def event_grid_item(delivery: Delivery, namespace: uuid.UUID, resource_id: str) -> bytes:
    """One event in the Event Grid schema (an element of the request's array)."""
    id_, time = _event_fields(delivery, namespace)
    head = msgspec.json.encode({"id": id_, "topic": topic(resource_id), "subject": delivery.subject,
                                "eventType": delivery.type, "eventTime": time, "dataVersion": DATA_VERSION,
                                "metadataVersion": "1"})
    return head[:-1] + b',"data":' + delivery.data + b"}"


def event_grid_body(deliveries: Sequence[Delivery], namespace: uuid.UUID, resource_id: str) -> bytes:
    """Event Grid schema: a JSON array of events."""
    return b"[" + b",".join(event_grid_item(d, namespace, resource_id) for d in deliveries) + b"]"


def cloud_event_body(delivery: Delivery, namespace: uuid.UUID, resource_id: str) -> bytes:
    """CloudEvents 1.0, structured mode: one event."""
    id_, time = _event_fields(delivery, namespace)
    head = msgspec.json.encode({"specversion": "1.0", "id": id_, "source": topic(resource_id),
                                "type": delivery.type, "subject": delivery.subject, "time": time,
                                "datacontenttype": "application/json"})
    return head[:-1] + b',"data":' + delivery.data + b"}"


CONTENT_TYPES = {EVENT_GRID_SCHEMA: "application/json", CLOUD_EVENT_SCHEMA: "application/cloudevents+json"}
CLOUD_EVENTS_BATCH = "application/cloudevents-batch+json"


def event_item(schema: str, delivery: Delivery, namespace: uuid.UUID, resource_id: str) -> bytes:
    """One event as a request carries it in `schema`."""
    if schema == EVENT_GRID_SCHEMA:
        return event_grid_item(delivery, namespace, resource_id)
    return cloud_event_body(delivery, namespace, resource_id)


def request_body(schema: str, items: Sequence[bytes]) -> tuple[bytes, str]:
    """A request's body and content type for these events (`event_item`s): Event Grid's JSON array; a CloudEvent
    alone in structured mode, several in batched mode (a JSON array of structured events)."""
    if schema == CLOUD_EVENT_SCHEMA and len(items) == 1:
        return items[0], CONTENT_TYPES[CLOUD_EVENT_SCHEMA]
    content_type = CONTENT_TYPES[EVENT_GRID_SCHEMA] if schema == EVENT_GRID_SCHEMA else CLOUD_EVENTS_BATCH
    return b"[" + b",".join(items) + b"]", content_type


def array_size(items: int, item_bytes: int) -> int:
    """The bytes of a JSON array of `items` elements of `item_bytes` bytes in all."""
    return 2 + item_bytes + max(0, items - 1)


def message_id(namespace: uuid.UUID, deliveries: Sequence[Delivery]) -> str:
    """The `webhook-id` of a request: its event's id; for several events, a GUID derived from their ids, so that
    the same events sent again have the same id."""
    ids = [event_id(namespace, d.position) for d in deliveries]
    if len(ids) == 1:
        return ids[0]
    return str(uuid.uuid5(namespace, "batch:" + ",".join(ids)))


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
            request.room_id or None, check_schema(request.schema), check_secret(request.secret), now, now,
            max_events_per_batch=check_max_events(request.max_events_per_batch),
            preferred_batch_kilobytes=check_preferred_kilobytes(request.preferred_batch_kilobytes))
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
                     *, all_types: bool = False, all_rooms: bool = False, max_events_per_batch: int | None = None,
                     preferred_batch_kilobytes: int | None = None) -> Subscription:
        """Change what is given (`all_types`, `all_rooms`: back to every type, every room); the handshake again
        when the endpoint or the schema changes."""
        current = (await self.get(subscription_id)).subscription
        changed = current._replace(
            endpoint=current.endpoint if endpoint is None else check_endpoint(endpoint, self.policy.hosts),
            types=None if all_types else current.types if types is None else check_types(types),
            room_id=None if all_rooms else current.room_id if room_id is None else room_id or None,
            schema=current.schema if schema is None else check_schema(schema),
            secret=current.secret if secret is None else check_secret(secret),
            max_events_per_batch=current.max_events_per_batch if max_events_per_batch is None
            else check_max_events(max_events_per_batch),
            preferred_batch_kilobytes=current.preferred_batch_kilobytes if preferred_batch_kilobytes is None
            else check_preferred_kilobytes(preferred_batch_kilobytes),
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
        return await self.attempt_batch(subscription, [delivery],
                                        [event_item(subscription.schema, delivery, namespace, resource_id)])

    async def attempt_batch(self, subscription: Subscription, deliveries: Sequence[Delivery],
                            items: Sequence[bytes]) -> Outcome:
        """One request that carries these deliveries (their `event_item`s, in order), and what comes of it: all of
        them delivered, or none (retried as the first one would be)."""
        namespace, _ = await self.namespace()
        first = deliveries[0]
        body, content_type = request_body(subscription.schema, items)
        headers = {**signed_headers(subscription.secret, message_id(namespace, deliveries), body, content_type),
                   "aeg-event-type": "Notification", "aeg-subscription-name": subscription.id,
                   "aeg-delivery-count": str(first.attempts)}
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
            # Refused as it is: not retried. For a request of several events the refusal may be of the request
            # (a 413 of its size) or of one event: each is retried alone (retries go one per request).
            if answer.status in _NOT_RETRIED and len(deliveries) == 1:
                return Outcome(False, None, error)
        return Outcome(False, self.policy.retry_at(first, first.attempts + 1, now()), error)


class LeaseLost(Exception):
    """Another dispatcher took a subscription's lease over while this one delivered a batch."""


class DispatchStore(WebhookStore, EventLog, Protocol):
    """What the dispatcher reads and writes: the log, and the subscriptions' queues."""


class Dispatcher:
    """Delivers every subscription's events, alongside the dispatchers of the other processes and instances.

    A subscription is delivered from the log by the one dispatcher that leases it: a batch of its events after its
    cursor, its rooms side by side, each room's events in order; then one transaction moves the cursor on, renews
    the lease and queues what failed (with its room's later events of the batch). A room with queued deliveries
    ("parked") has its new events queued behind them; queued deliveries are leased per room by any dispatcher and
    retried one at a time. A subscription with `max_events_per_batch` above 1 sends its batch's events several to a
    request instead (one request at a time, in the log's order; a failed request parks every room it carried),
    while its retries still go one event per request. A lease whose holder is known to be gone (`holders.gone`,
    judged once a round for each holder) is taken over without waiting it out: a subscription's when it is listed,
    a queue's on the poll."""

    def __init__(self, store: DispatchStore, service: WebhooksService, clock: Clock,
                 observe: Callable[[str, Outcome], None] | None = None, batch: int = BATCH,
                 gone: Callable[[str | None], bool] = holders.gone) -> None:
        self._store = store
        self._service = service
        self._clock = clock
        self._policy = service.policy
        self._owner = holders.name()
        self._gone = gone
        self._batch = batch
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._feeding: dict[str, asyncio.Task[None]] = {}
        self._verdicts: dict[str, bool] = {}  # holders judged this round: gone or not
        self._taking_over = False  # a claim was full while it took queues over from holders gone: claim again
        self._observe = observe or (lambda subscription_id, outcome: None)

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        listener = asyncio.create_task(self._listen())
        polled = True
        try:
            while True:
                self._wake.clear()
                self._verdicts.clear()
                try:
                    subscriptions = await self._feed_all()
                    # A claim is a write: only when a queued delivery is due, or on the poll (which finds the
                    # queues beyond those `next_due` looks at, and the queues of holders gone), or while holders
                    # gone may hold more queues than the last claim had room for. It answers the next due itself.
                    if polled or self._taking_over:
                        due = await self._claim(subscriptions, take_over=True)
                    else:
                        due = await self._store.next_due()
                        if due is not None and due <= self._clock.now():
                            due = await self._claim(subscriptions)
                    wait = self._until(due)
                except StoreUnavailable as exc:
                    log.warning("webhook dispatch paused: %s", exc)
                    wait = self._policy.poll_seconds
                except Exception:  # the dispatcher must outlive anything one round meets; the next one retries
                    log.exception("webhook dispatch failed; trying again")
                    wait = self._policy.poll_seconds
                # Not asyncio.wait_for: on Python 3.11 it can swallow a cancellation that comes as the wait ends.
                polled = False
                try:
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
                except TimeoutError:
                    polled = wait >= self._policy.poll_seconds
        finally:
            listener.cancel()
            tasks = (listener, *self._running, *self._feeding.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._let_go()

    async def _let_go(self) -> None:
        """Give up the leases this dispatcher holds, so that another (the next `serve` on this database, say) goes
        on from their cursors at once rather than once they have run out."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                for subscription in await self._store.list_subscriptions():
                    if subscription.owner == self._owner:
                        await self._store.lease_subscription(subscription.id, self._owner, self._clock.now(), 0)

    async def _listen(self) -> None:
        while True:
            try:
                async for _ in self._store.listen_events():
                    self._wake.set()
            except Exception as exc:  # the connection failed: the poll goes on meanwhile
                log.warning("listening for new events failed: %s", exc)
            await asyncio.sleep(self._policy.poll_seconds)

    def _holder_gone(self, holder: str | None) -> bool:
        """Whether another dispatcher's lease names a holder known to be gone (`holders.gone`, which reads
        /proc): judged once a round for each holder, however many leases name it."""
        if holder is None or holder == self._owner:
            return False
        verdict = self._verdicts.get(holder)
        if verdict is None:
            verdict = self._verdicts[holder] = self._gone(holder)
        return verdict

    def _until(self, due: int | None) -> float:
        if due is None:
            return self._policy.poll_seconds
        return min(self._policy.poll_seconds, max(0.0, (due - self._clock.now()) / TICKS_PER_SECOND) + 0.001)

    async def _feed_all(self) -> dict[str, Subscription]:
        """Start delivering every subscription that has new events, is not being delivered here already and no
        other dispatcher's live lease holds; the subscriptions, as listed for it, by id."""
        listed = await self._store.list_subscriptions()
        now = self._clock.now()
        for subscription in listed:
            if subscription.id in self._feeding:
                continue
            if subscription.owner != self._owner and subscription.lease_until > now \
                    and not self._holder_gone(subscription.owner):
                continue  # another dispatcher's, live
            events = await self._store.list_events(subscription.cursor or (0, 0), None, None, self._batch)
            if not events:
                continue
            task = asyncio.create_task(self._feed(subscription, events))
            self._feeding[subscription.id] = task
            task.add_done_callback(functools.partial(self._fed, subscription.id))
        return {s.id: s for s in listed}

    def _fed(self, subscription_id: str, task: asyncio.Task[None]) -> None:
        self._feeding.pop(subscription_id, None)
        self._wake.set()  # new events may have come meanwhile

    async def _feed(self, subscription: Subscription | None, events: list[StoredEvent]) -> None:
        """Deliver the subscription's events from the log, batch after batch, while it has new ones and this
        dispatcher holds its lease."""
        lease_ticks = int(self._policy.lease_seconds * TICKS_PER_SECOND)
        try:
            while subscription is not None and events:
                now = self._clock.now()
                # Leased again unless 3/4 of it remain: the renewal during a batch comes after a quarter of it.
                held = subscription.owner == self._owner and subscription.lease_until - now >= lease_ticks * 3 // 4
                gone = None  # another's live lease: this dispatcher feeds it only when its holder died here
                if not held and subscription.lease_until > now and self._holder_gone(subscription.owner):
                    gone = subscription.owner
                if not held and not await self._store.lease_subscription(subscription.id, self._owner, now,
                                                                         self._lease_until(), gone):
                    return  # another dispatcher leased it first
                if not await self._deliver_batch(subscription, events):
                    return
                subscription = await self._store.get_subscription(subscription.id)
                if subscription is None or subscription.owner != self._owner:
                    return
                events = await self._store.list_events(subscription.cursor or (0, 0), None, None, self._batch)
        except StoreUnavailable as exc:  # the lease runs out, and this or another dispatcher goes on
            log.warning("webhook delivery interrupted: %s", exc)
        except Exception:
            log.exception("webhook delivery failed; its lease runs out and it is delivered again")

    async def _deliver_batch(self, subscription: Subscription, events: list[StoredEvent]) -> bool:
        """Deliver one batch (the lease renewed while it lasts longer than half of it), then record it; False if
        the lease was lost, or the subscription is gone."""
        parked_rooms = await self._store.parked_rooms(subscription.id)
        rooms: dict[str, list[StoredEvent]] = {}
        for event in events:
            if (subscription.types is None or event.type in subscription.types) and (
                    subscription.room_id is None or event.room_id == subscription.room_id):
                rooms.setdefault(event.room_id or "", []).append(event)
        parked: dict[str, list[Parked]] = {
            key: [Parked(e) for e in rooms.pop(key)] for key in sorted(parked_rooms & rooms.keys())}
        tally = [0, 0]  # accepted deliveries, failed attempts since the last of them
        gate = asyncio.Semaphore(self._policy.concurrency)

        async def deliver(key: str, room_events: list[StoredEvent]) -> None:
            async with gate:
                for i, event in enumerate(room_events):
                    now = self._clock.now()
                    delivery = Delivery(0, subscription.id, key, event.position, event.type, event.subject,
                                        event.time, event.data, 0, now)
                    outcome = await self._service.attempt(subscription, delivery)
                    self._observe(subscription.id, outcome)
                    if outcome.delivered:
                        tally[0], tally[1] = tally[0] + 1, 0
                        continue
                    tally[1] += 1
                    log.info("delivery of event %s to %s failed (%s)%s", encode_cursor(event.position),
                             subscription.endpoint, outcome.error,
                             "; dead-lettered" if outcome.retry_at is None else "; queued for retries")
                    parked[key] = [Parked(event, 1, outcome.retry_at, outcome.error),
                                   *(Parked(e) for e in room_events[i + 1:])]
                    return

        async def send(chunk: list[tuple[str, StoredEvent, Delivery, bytes]]) -> None:
            outcome = await self._service.attempt_batch(subscription, [c[2] for c in chunk], [c[3] for c in chunk])
            self._observe(subscription.id, outcome)
            if outcome.delivered:
                tally[0], tally[1] = tally[0] + len(chunk), 0
                return
            tally[1] += 1
            log.info("delivery of %d events (%s to %s) to %s failed (%s)%s", len(chunk),
                     encode_cursor(chunk[0][1].position), encode_cursor(chunk[-1][1].position),
                     subscription.endpoint, outcome.error,
                     "; the first of each room dead-lettered" if outcome.retry_at is None else "; queued for retries")
            for key, event, _, _ in chunk:  # each room it carried is parked: its first event failed, the rest wait
                if key in parked:
                    parked[key].append(Parked(event))
                else:
                    parked[key] = [Parked(event, 1, outcome.retry_at, outcome.error)]

        async def deliver_batches() -> None:
            """Up to `max_events_per_batch` events a request, in the log's order, one request at a time, each body
            within the preferred size unless one event alone is larger; a room parked by a failed request has its
            later events of the batch queued behind it."""
            namespace, resource_id = await self._service.namespace()
            limit = subscription.preferred_batch_kilobytes * 1024
            chunk: list[tuple[str, StoredEvent, Delivery, bytes]] = []
            size = 0
            for event in sorted((e for room in rooms.values() for e in room), key=lambda e: e.position):
                key = event.room_id or ""
                if key not in parked:
                    delivery = Delivery(0, subscription.id, key, event.position, event.type, event.subject,
                                        event.time, event.data, 0, self._clock.now())
                    item = event_item(subscription.schema, delivery, namespace, resource_id)
                    if chunk and (len(chunk) >= subscription.max_events_per_batch
                                  or array_size(len(chunk) + 1, size + len(item)) > limit):
                        await send(chunk)
                        chunk, size = [], 0
                if key in parked:  # parked before this batch, or by a request that failed in it
                    parked[key].append(Parked(event))
                    continue
                chunk.append((key, event, delivery, item))
                size += len(item)
            if chunk:
                await send(chunk)

        async def renew() -> None:
            while True:
                await asyncio.sleep(self._policy.lease_seconds / 4)
                if not await self._store.lease_subscription(subscription.id, self._owner, self._clock.now(),
                                                            self._lease_until()):
                    raise LeaseLost

        lost = False
        try:
            async with asyncio.TaskGroup() as group:
                renewing = group.create_task(renew())
                if subscription.max_events_per_batch > 1:
                    delivering = [group.create_task(deliver_batches())]
                else:
                    delivering = [group.create_task(deliver(key, room_events))
                                  for key, room_events in rooms.items()]
                await asyncio.gather(*delivering)
                renewing.cancel()
        except* LeaseLost:
            lost = True
        except* StoreUnavailable as failed:  # the store away mid-batch: said as such by the caller, not as a defect
            raise failed.exceptions[0] from None
        if lost:
            log.warning("the lease of subscription %s went to another dispatcher mid-batch", subscription.id)
            return False
        queued = sorted((p for room in parked.values() for p in room), key=lambda p: p.event.position)
        return await self._store.finish_batch(BatchEnd(
            subscription.id, self._owner, subscription.cursor or (0, 0), events[-1].position, self._lease_until(),
            self._clock.now(), tally[0] > 0, tally[1], queued))

    def _lease_until(self) -> int:
        return self._clock.now() + int(self._policy.lease_seconds * TICKS_PER_SECOND)

    async def _claim(self, subscriptions: dict[str, Subscription], take_over: bool = False) -> int | None:
        """Lease the due queues there is room for and start retrying them (`take_over`: also those whose lease
        names a holder gone); answer when the next queue is due."""
        room = self._policy.concurrency - len(self._running)
        if room <= 0:
            return await self._store.next_due()
        now = self._clock.now()
        gone: list[str] = []
        if take_over:
            gone = sorted(h for h in await self._store.queue_holders(now) if self._holder_gone(h))
        claim = await self._store.claim_deliveries(self._owner, now, self._lease_until(), room, gone)
        claimed = claim.deliveries
        self._taking_over = bool(gone) and len(claimed) >= room
        if claimed and any(d.subscription_id not in subscriptions for d in claimed):  # made since the round listed
            subscriptions = {s.id: s for s in await self._store.list_subscriptions()}
        for delivery in claimed:
            task = asyncio.create_task(self._drain(subscriptions, delivery))
            self._running.add(task)
            task.add_done_callback(self._done)
        return claim.next_due

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
