"""What the console's pages show, computed from the services' records: plain data for the templates."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from openrooms.calls.service import Feed
from openrooms.events.subscriptions import Delivery
from openrooms.service import timestamps
from openrooms.service.clock import TICKS_PER_SECOND
from openrooms.service.event_log import LoggedEvent
from openrooms.service.model import Room
from openrooms.service.webhooks import SubscriptionView

MAX_COUNTED_ROOMS = 10_000  # the overview counts at most this many rooms of a state (and says so beyond)
MAX_LISTED_CALLS = 100  # and lists at most this many calls in progress
STATES = ("upcoming", "open", "ended")


def window_state(room: Room, now: int) -> str:
    if now < room.valid_from:
        return "upcoming"
    return "open" if now < room.valid_until else "ended"


@dataclass(frozen=True)
class RoomRow:
    id: str
    valid_from: int
    valid_until: int
    pstn: bool
    state: str


def room_row(room: Room, now: int) -> RoomRow:
    return RoomRow(room.id, room.valid_from, room.valid_until, room.pstn_dial_out_enabled, window_state(room, now))


@dataclass(frozen=True)
class Timeline:
    """A room's window on a line from a little before to a little after it (and now), in percent."""

    start: float
    width: float
    now: float
    from_text: str
    until_text: str


def timeline(room: Room, now: int) -> Timeline:
    low, high = min(room.valid_from, now), max(room.valid_until, now)
    margin = max((high - low) // 10, 60 * TICKS_PER_SECOND)
    low, high = low - margin, high + margin
    span = high - low

    def percent(ticks: int) -> float:
        return round(100 * (ticks - low) / span, 2)

    return Timeline(percent(room.valid_from), round(percent(room.valid_until) - percent(room.valid_from), 2),
                    percent(now), timestamps.format(room.valid_from), timestamps.format(room.valid_until))


@dataclass
class CallPerson:
    raw_id: str
    role: str
    display_name: str | None
    joined_at: int
    publishes: list[str] = field(default_factory=list)


def call_people(feeds: Sequence[Feed]) -> list[CallPerson]:
    """One entry per participant of a call, in the order they joined, with what each of its feeds sends (a
    participant may have a camera feed and a screen feed)."""
    people: dict[str, CallPerson] = {}
    for feed in sorted(feeds, key=lambda f: f.joined_at):
        if feed.raw_id not in people:
            people[feed.raw_id] = CallPerson(feed.raw_id, feed.role, feed.display_name, feed.joined_at)
        sends = {"screen": ["screen"]}.get(feed.kind, ["audio", "video"] if feed.audio_mids else ["video"])
        people[feed.raw_id].publishes.extend(sends if feed.publishing else [])
    return list(people.values())


@dataclass(frozen=True)
class EventRow:
    id: str
    cursor: str
    type: str
    subject: str
    time: str
    data: str


def event_row(logged: LoggedEvent) -> EventRow:
    event = logged.event
    data: Any = json.loads(event.data)
    return EventRow(logged.id, logged.cursor, event.type, event.subject, timestamps.format(event.time),
                    json.dumps(data, sort_keys=True))


@dataclass(frozen=True)
class WebhookRow:
    id: str
    endpoint: str
    types: str
    room_id: str
    schema: str
    last_success_at: int | None
    consecutive_failures: int
    backlog: int
    dead_lettered: int

    @property
    def health(self) -> str:
        if self.dead_lettered or self.consecutive_failures:
            return "failing"
        return "waiting" if self.backlog else "healthy"


def webhook_row(view: SubscriptionView) -> WebhookRow:
    subscription, state = view
    return WebhookRow(subscription.id, subscription.endpoint, ", ".join(subscription.types or ()) or "every type",
                      subscription.room_id or "every room", subscription.schema, state.last_success_at,
                      state.consecutive_failures, state.backlog, state.dead_lettered)


@dataclass(frozen=True)
class DeadLetterRow:
    event_id: str
    type: str
    subject: str
    attempts: int
    last_error: str
    dead_at: int | None


def dead_letter_row(event_id: str, cursor: str, delivery: Delivery) -> DeadLetterRow:
    return DeadLetterRow(event_id, delivery.type, delivery.subject, delivery.attempts, delivery.last_error or "",
                         delivery.dead_at)
