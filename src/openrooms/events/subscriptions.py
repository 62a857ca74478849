"""Webhook subscriptions and their deliveries, as the service hands them to the store and the store gives them back.

A subscription follows the event log from where it was when the subscription was made (`cursor`, a place in the
log as `RoomStore.list_events` gives them): the dispatcher copies each new event it matches into a delivery of its
own (the subscription's queue), and moves the cursor on, in one transaction. Deliveries of one subscription and one
room (`room_key`; "" for events of no room) go out one at a time, oldest first, under a lease: a row that names the
instance delivering them and until when. A delivery that failed for good is kept, dead-lettered, until redelivered
or its subscription is deleted.
"""

from __future__ import annotations

from typing import NamedTuple

# The two event schemas a subscription delivers in, by Event Grid's names for them.
EVENT_GRID_SCHEMA = "EventGridSchema"
CLOUD_EVENT_SCHEMA = "CloudEventSchemaV1_0"
SCHEMAS = (EVENT_GRID_SCHEMA, CLOUD_EVENT_SCHEMA)


class Subscription(NamedTuple):
    id: str
    endpoint: str
    types: tuple[str, ...] | None  # None: every type
    room_id: str | None  # None: every room (and the events of no room)
    schema: str  # EVENT_GRID_SCHEMA or CLOUD_EVENT_SCHEMA
    secret: str  # Standard Webhooks secret, "whsec_<base64>"
    created_at: int  # ticks
    updated_at: int
    # Where in the log its events are queued up to (the store's; None until stored).
    cursor: tuple[int, int] | None = None


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


class Outcome(NamedTuple):
    """What an attempt came to, as the dispatcher decides after it: delivered, retried at `retry_at`, or
    dead-lettered (neither)."""

    delivered: bool
    retry_at: int | None  # ticks; None with delivered False: dead-letter it
    error: str | None = None
