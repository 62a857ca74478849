"""Webhook subscriptions and their deliveries, as the service hands them to the store and the store gives them back.

A subscription follows the event log from where it was when the subscription was made (`cursor`, a place in the
log as `RoomStore.list_events` gives them): the dispatcher that leases it reads its new events from the log,
delivers the ones it matches, and moves the cursor on once a batch is done. An event whose delivery failed, and
the later events of its room, are copied into deliveries of their own (the subscription's queue of that room),
in the transaction that moves the cursor; while a room has queued deliveries, its new events queue behind them.
Queued deliveries of one subscription and one
room (`room_key`; "" for events of no room) go out one at a time, oldest first, under a lease: a row that names the
instance delivering them and until when. A delivery that failed for good is kept, dead-lettered, until redelivered
or its subscription is deleted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from openrooms.events.types import StoredEvent

# The two event schemas a subscription delivers in, by Event Grid's names for them.
EVENT_GRID_SCHEMA = "EventGridSchema"
CLOUD_EVENT_SCHEMA = "CloudEventSchemaV1_0"
SCHEMAS = (EVENT_GRID_SCHEMA, CLOUD_EVENT_SCHEMA)
# Batched delivery, as Event Grid names and bounds it for a webhook destination: at most this many events per
# request, and a request's body within this many kilobytes (1024 bytes) unless one event alone is larger.
MAX_EVENTS_PER_BATCH = (1, 5000)
DEFAULT_MAX_EVENTS_PER_BATCH = 1
PREFERRED_BATCH_KILOBYTES = (1, 1024)
DEFAULT_PREFERRED_BATCH_KILOBYTES = 64


class Subscription(NamedTuple):
    id: str
    endpoint: str
    types: tuple[str, ...] | None  # None: every type
    room_id: str | None  # None: every room (and the events of no room)
    schema: str  # EVENT_GRID_SCHEMA or CLOUD_EVENT_SCHEMA
    secret: str  # Standard Webhooks secret, "whsec_<base64>"
    created_at: int  # ticks
    updated_at: int
    # Where in the log its events are delivered or queued up to (the store's; None until stored).
    cursor: tuple[int, int] | None = None
    owner: str | None = None  # the dispatcher that leases it (delivers from the log), until `lease_until`
    lease_until: int = 0  # ticks
    max_events_per_batch: int = DEFAULT_MAX_EVENTS_PER_BATCH  # events per request (1: one, as without batches)
    preferred_batch_kilobytes: int = DEFAULT_PREFERRED_BATCH_KILOBYTES  # a request's body, at most (but one event)


class DeliveryState(NamedTuple):
    """How a subscription's deliveries are going."""

    last_success_at: int | None  # ticks of the last delivery a receiver accepted
    consecutive_failures: int  # failed attempts since then
    backlog: int  # deliveries waiting (or being retried)
    dead_lettered: int


class Delivery(NamedTuple):
    """One event for one subscription: a copy of the event as the log holds it, and how its delivery goes."""

    seq: int  # the delivery's number: a subscription's deliveries are numbered in the log's order
    subscription_id: str
    room_key: str  # the event's room id, or "" for events of no room
    position: tuple[int, int]  # the event's place in the log
    type: str
    subject: str
    time: int  # the event's time (ticks)
    data: bytes  # the event's data, JSON
    attempts: int  # attempts made so far
    enqueued_at: int  # ticks: when it was queued (its time to live counts from there)
    last_error: str | None = None
    dead_at: int | None = None  # ticks: when it was dead-lettered (None: not dead)


class Parked(NamedTuple):
    """An event of a batch that goes to the subscription's queue of its room instead of being delivered from the
    log: it failed (`attempts` 1, retried at `retry_at`, or dead-lettered when that is None), or an earlier event
    of its room failed or is still queued (`attempts` 0)."""

    event: StoredEvent
    attempts: int = 0
    retry_at: int | None = None
    error: str | None = None


class BatchEnd(NamedTuple):
    """What a dispatcher records once it has delivered a batch of a subscription's events from the log."""

    subscription_id: str
    owner: str  # the lease it holds
    expected: tuple[int, int]  # the cursor the batch started after
    cursor: tuple[int, int]  # the last event of the batch
    lease_until: int
    now: int
    succeeded: bool  # at least one delivery was accepted
    failures: int  # failed attempts after the batch's last accepted one (all of them, if none was)
    parked: Sequence[Parked] = ()  # in the log's order


class Claimed(NamedTuple):
    """What a claim of queued deliveries answers: the first pending delivery of each queue it leased, and when the
    next queue is due once they are leased (as `next_due` answers then)."""

    deliveries: list[Delivery]
    next_due: int | None


class Outcome(NamedTuple):
    """What an attempt came to, as the dispatcher decides after it: delivered, retried at `retry_at`, or
    dead-lettered (neither)."""

    delivered: bool
    retry_at: int | None  # ticks; None with delivered False: dead-letter it
    error: str | None = None
