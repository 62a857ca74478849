"""Webhook subscriptions, queues and dead letters in SQLite (`WebhookStore`; migrations 0012, 0015, 0016, 0017).

Writers take turns (one write transaction at a time, across processes), so a queue's deliveries change one
transaction at a time and need no row locks; the leases matter when several worker processes share one file.
A part of `SqliteStore`: its `_read` and `_write` are the ones this uses.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from typing import Any, TypeVar

import msgspec

from openrooms.events.subscriptions import BatchEnd, Claimed, Delivery, DeliveryState, Outcome, Subscription
from openrooms.store.changes import NOTHING, Changes

T = TypeVar("T")
INSERTED_COLUMNS = ("id, endpoint, types, room_id, event_schema, secret, created_at, updated_at, cursor_tx, "
                    "cursor_seq, max_events_per_batch, preferred_batch_kilobytes")
SUBSCRIPTION_COLUMNS = f"{INSERTED_COLUMNS}, owner, expires_at"
DELIVERY_COLUMNS = ("seq, subscription_id, room_key, event_tx, event_seq, type, subject, time, data, attempts, "
                    "enqueued_at, last_error, dead_at")


def subscription_of(row: Sequence[Any]) -> Subscription:
    types = None if row[2] is None else tuple(msgspec.json.decode(row[2], type=list[str]))
    return Subscription(row[0], row[1], types, row[3], row[4], row[5], row[6], row[7], (row[8], row[9]), row[12],
                        row[13], row[10], row[11])


def delivery_of(row: Sequence[Any]) -> Delivery:
    data = row[8]
    return Delivery(row[0], row[1], row[2], (row[3], row[4]), row[5], row[6], row[7],
                    data.encode() if isinstance(data, str) else bytes(data), row[9], row[10], row[11], row[12])


def types_json(subscription: Subscription) -> str | None:
    return None if subscription.types is None else msgspec.json.encode(list(subscription.types)).decode()


def states_of(rows: Sequence[Sequence[Any]]) -> dict[str, DeliveryState]:
    """(id, last success, consecutive failures, pending, dead) rows -> states by id."""
    return {row[0]: DeliveryState(row[1], row[2], row[3], row[4]) for row in rows}


# Every subscription's state, as one statement: its backlog is its pending deliveries and the events after its
# cursor that it matches ({after}: that an event `e` is after the cursor of `s`; {types}: the types of `s`, as a set
# of rows to match `e.type` against).
DELIVERY_STATES = (
    "SELECT s.id, s.last_success_at, s.consecutive_failures, "
    "(SELECT count(*) FROM webhook_deliveries d WHERE d.subscription_id = s.id AND d.state = 'pending') + "
    "(SELECT count(*) FROM events e WHERE {after} AND (s.types IS NULL OR e.type IN ({types})) "
    "AND (s.room_id IS NULL OR e.room_id = s.room_id)), "
    "(SELECT count(*) FROM webhook_deliveries d WHERE d.subscription_id = s.id AND d.state = 'dead') "
    "FROM webhook_subscriptions s"
)
_DELIVERY_STATES = DELIVERY_STATES.format(after="e.seq > s.cursor_seq", types="SELECT value FROM json_each(s.types)")
LEASE = ("UPDATE webhook_subscriptions SET owner = {q}, expires_at = {q} WHERE id = {q} "
         "AND (owner = {q} OR expires_at <= {q} OR owner = {q})")
PARKED_ROOMS = ("SELECT DISTINCT room_key FROM webhook_deliveries WHERE subscription_id = {q} "
                "AND state = 'pending'")
BATCH_END = (
    "UPDATE webhook_subscriptions SET cursor_tx = {q}, cursor_seq = {q}, expires_at = {q}, "
    "last_success_at = CASE WHEN {q} THEN {q} ELSE last_success_at END, "
    "consecutive_failures = CASE WHEN {q} THEN {q} ELSE consecutive_failures + {q} END "
    "WHERE id = {q} AND cursor_tx = {q} AND cursor_seq = {q} AND owner = {q}")
QUEUE_PARKED = (
    "INSERT INTO webhook_queues (subscription_id, room_key, next_attempt_at, expires_at) VALUES ({q}, {q}, {q}, 0) "
    "ON CONFLICT (subscription_id, room_key) DO UPDATE SET next_attempt_at = "
    "coalesce(webhook_queues.next_attempt_at, excluded.next_attempt_at)")
INSERT_PARKED = (
    "INSERT INTO webhook_deliveries (subscription_id, room_key, event_tx, event_seq, type, subject, time, data, "
    "state, attempts, next_attempt_at, enqueued_at, last_error, dead_at) "
    "VALUES ({q}, {q}, {q}, {q}, {q}, {q}, {q}, {q}, {q}, {q}, {q}, {q}, {q}, {q}) ON CONFLICT DO NOTHING")


def batch_end_parameters(batch: BatchEnd) -> tuple[Any, ...]:
    return (*batch.cursor, batch.lease_until, batch.succeeded, batch.now, batch.succeeded, batch.failures,
            batch.failures, batch.subscription_id, *batch.expected, batch.owner)


def parked_rows(batch: BatchEnd) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The deliveries of a batch's parked events, and the queues they go to (each due when its first pending one
    of them is; a queue with deliveries pending already stays due when it was)."""
    deliveries = []
    heads: dict[str, int | None] = {}
    for p in batch.parked:
        e, key = p.event, p.event.room_id or ""
        dead = p.attempts > 0 and p.retry_at is None
        due = batch.now if p.attempts == 0 else (p.retry_at or batch.now)
        deliveries.append((batch.subscription_id, key, *e.position, e.type, e.subject, e.time, e.data.decode(),
                           "dead" if dead else "pending", p.attempts, due, batch.now, p.error,
                           batch.now if dead else None))
        if heads.get(key) is None:
            heads[key] = None if dead else due
    return deliveries, [(batch.subscription_id, key, due) for key, due in sorted(heads.items())]


# When the next queue is due, leased or not, among the `NEXT_DUE_WINDOW` queues whose next attempt comes first
# (through the index of the next attempts: a backlog of many rooms is not scanned in full each round). A queue
# beyond them comes after them; only when all of them are leased, by more dispatchers than they are many, can one
# beyond be due first, and the dispatchers' poll finds it (both stores).
NEXT_DUE_WINDOW = 256
NEXT_DUE = ("SELECT min(CASE WHEN expires_at > next_attempt_at THEN expires_at ELSE next_attempt_at END) FROM "
            "(SELECT next_attempt_at, expires_at FROM webhook_queues WHERE next_attempt_at IS NOT NULL "
            "ORDER BY next_attempt_at LIMIT {mark}) AS heads")
# The holders of live leases among the due queues of that window (those a claim passes over unless told their
# holder is gone).
QUEUE_HOLDERS = ("SELECT DISTINCT owner FROM (SELECT owner, expires_at FROM webhook_queues "
                 "WHERE next_attempt_at <= {mark} ORDER BY next_attempt_at LIMIT {mark}) AS heads "
                 "WHERE expires_at > {mark} AND owner IS NOT NULL")


class SqliteWebhooks:
    _read: Callable[..., Awaitable[Any]]
    _write: Callable[..., Awaitable[Any]]

    def _announce_events(self) -> None:
        """Wake this process's `listen_events` iterators: a commit appended events."""
        for wake in getattr(self, "_event_listeners", ()):
            wake.set()

    async def listen_events(self) -> AsyncIterator[None]:
        wake = asyncio.Event()
        listeners: set[asyncio.Event] = self.__dict__.setdefault("_event_listeners", set())
        listeners.add(wake)
        try:
            yield None
            while True:
                await wake.wait()
                wake.clear()
                yield None
        finally:
            listeners.discard(wake)

    async def insert_subscription(self, subscription: Subscription) -> Subscription:
        def transaction(db: sqlite3.Connection) -> tuple[Subscription, Changes]:
            end = db.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
            stored = subscription._replace(cursor=(0, end))
            db.execute(f"INSERT INTO webhook_subscriptions ({INSERTED_COLUMNS}) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (*stored[:2], types_json(stored), *stored[3:8], 0, end, stored.max_events_per_batch,
                        stored.preferred_batch_kilobytes))
            return stored, NOTHING

        result: Subscription = await self._write(transaction)
        return result

    async def get_subscription(self, subscription_id: str) -> Subscription | None:
        row = await self._read(lambda db: db.execute(
            f"SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions WHERE id = ?", (subscription_id,)).fetchone())
        return None if row is None else subscription_of(row)

    async def list_subscriptions(self) -> list[Subscription]:
        rows = await self._read(lambda db: db.execute(
            f"SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions ORDER BY created_at, id").fetchall())
        return [subscription_of(row) for row in rows]

    async def update_subscription(self, subscription: Subscription) -> bool:
        s = subscription
        result: bool = await self._write(lambda db: (db.execute(
            "UPDATE webhook_subscriptions SET endpoint = ?, types = ?, room_id = ?, event_schema = ?, secret = ?, "
            "updated_at = ?, max_events_per_batch = ?, preferred_batch_kilobytes = ? WHERE id = ?",
            (s.endpoint, types_json(s), s.room_id, s.schema, s.secret, s.updated_at, s.max_events_per_batch,
             s.preferred_batch_kilobytes, s.id)).rowcount > 0, NOTHING))
        return result

    async def delete_subscription(self, subscription_id: str) -> bool:
        result: bool = await self._write(lambda db: (db.execute(
            "DELETE FROM webhook_subscriptions WHERE id = ?", (subscription_id,)).rowcount > 0, NOTHING))
        return result

    async def lease_subscription(self, subscription_id: str, owner: str, now: int, lease_until: int,
                                 replacing: str | None = None) -> bool:
        result: bool = await self._write(lambda db: (db.execute(
            LEASE.format(q="?"), (owner, lease_until, subscription_id, owner, now, replacing)).rowcount > 0, NOTHING))
        return result

    async def parked_rooms(self, subscription_id: str) -> set[str]:
        rows = await self._read(lambda db: db.execute(PARKED_ROOMS.format(q="?"), (subscription_id,)).fetchall())
        return {row[0] for row in rows}

    async def finish_batch(self, batch: BatchEnd) -> bool:
        def transaction(db: sqlite3.Connection) -> tuple[bool, Changes]:
            if not db.execute(BATCH_END.format(q="?"), batch_end_parameters(batch)).rowcount:
                return False, NOTHING
            if batch.parked:
                deliveries, queues = parked_rows(batch)
                db.executemany(INSERT_PARKED.format(q="?"), deliveries)
                db.executemany(QUEUE_PARKED.format(q="?"), queues)
            return True, NOTHING

        result: bool = await self._write(transaction)
        return result

    async def claim_deliveries(self, owner: str, now: int, lease_until: int, limit: int,
                               replacing: Collection[str] = ()) -> Claimed:
        gone = msgspec.json.encode(sorted(replacing)).decode()

        def transaction(db: sqlite3.Connection) -> tuple[Claimed, Changes]:
            queues = db.execute(
                "UPDATE webhook_queues SET owner = ?, expires_at = ? WHERE rowid IN (SELECT rowid FROM webhook_queues "
                "WHERE next_attempt_at <= ? AND (expires_at <= ? OR owner IN (SELECT value FROM json_each(?))) "
                "ORDER BY next_attempt_at LIMIT ?) RETURNING subscription_id, room_key",
                (owner, lease_until, now, now, gone, limit)).fetchall()
            if not queues:
                return Claimed([], _next_due(db)), NOTHING
            heads = _heads(db, queues)
            claimed = []
            released = []
            for key in queues:
                head = heads.get(key)
                if head is not None and head[1] <= now:
                    claimed.append(head[0])
                else:  # nothing due after all: let go, due when its first pending delivery is
                    released.append((None if head is None else head[1], *key))
            if released:
                db.executemany("UPDATE webhook_queues SET next_attempt_at = ?, owner = NULL, expires_at = 0 "
                               "WHERE subscription_id = ? AND room_key = ?", released)
            return Claimed(claimed, _next_due(db)), NOTHING

        result: Claimed = await self._write(transaction)
        return result

    async def queue_holders(self, now: int) -> set[str]:
        rows = await self._read(lambda db: db.execute(QUEUE_HOLDERS.format(mark="?"),
                                                      (now, NEXT_DUE_WINDOW, now)).fetchall())
        return {row[0] for row in rows}

    async def finish_delivery(self, delivery: Delivery, owner: str, outcome: Outcome, now: int,
                              lease_until: int) -> Delivery | None:
        def transaction(db: sqlite3.Connection) -> tuple[Delivery | None, Changes]:
            for statement, parameters in outcome_statements(delivery, outcome, now, "?"):
                db.execute(statement, parameters)
            key = (delivery.subscription_id, delivery.room_key)
            held = db.execute("SELECT owner FROM webhook_queues WHERE subscription_id = ? AND room_key = ?",
                              key).fetchone()
            if held is None or held[0] != owner:
                return None, NOTHING  # another instance took the queue over (or the subscription is gone)
            head = _head(db, *key)
            if head is not None and head[1] <= now:
                db.execute("UPDATE webhook_queues SET next_attempt_at = ?, expires_at = ? "
                           "WHERE subscription_id = ? AND room_key = ?", (head[1], lease_until, *key))
                return head[0], NOTHING
            db.execute("UPDATE webhook_queues SET next_attempt_at = ?, owner = NULL, expires_at = 0 "
                       "WHERE subscription_id = ? AND room_key = ?", (None if head is None else head[1], *key))
            return None, NOTHING

        result: Delivery | None = await self._write(transaction)
        return result

    async def next_due(self) -> int | None:
        result: int | None = await self._read(_next_due)
        return result

    async def delivery_states(self) -> dict[str, DeliveryState]:
        return states_of(await self._read(lambda db: db.execute(_DELIVERY_STATES).fetchall()))

    async def list_dead_letters(self, subscription_id: str, limit: int) -> list[Delivery]:
        rows = await self._read(lambda db: db.execute(
            f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE subscription_id = ? AND state = 'dead' "
            "ORDER BY seq LIMIT ?", (subscription_id, limit)).fetchall())
        return [delivery_of(row) for row in rows]

    async def redeliver(self, subscription_id: str, seqs: Collection[int] | None, now: int) -> int:
        chosen = None if seqs is None else msgspec.json.encode(sorted(seqs)).decode()

        def transaction(db: sqlite3.Connection) -> tuple[int, Changes]:
            keys = db.execute(
                "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, next_attempt_at = ?1, enqueued_at = ?1,"
                " dead_at = NULL WHERE subscription_id = ?2 AND state = 'dead' "
                "AND (?3 IS NULL OR seq IN (SELECT value FROM json_each(?3))) RETURNING room_key",
                (now, subscription_id, chosen)).fetchall()
            db.executemany(
                "UPDATE webhook_queues SET next_attempt_at = min(coalesce(next_attempt_at, ?1), ?1) "
                "WHERE subscription_id = ?2 AND room_key = ?3",
                [(now, subscription_id, key) for key in sorted({row[0] for row in keys})])
            return len(keys), NOTHING

        result: int = await self._write(transaction)
        return result


def _next_due(db: sqlite3.Connection) -> int | None:
    row = db.execute(NEXT_DUE.format(mark="?"), (NEXT_DUE_WINDOW,)).fetchone()
    return None if row is None else row[0]


def _head(db: sqlite3.Connection, subscription_id: str, room_key: str) -> tuple[Delivery, int] | None:
    """A queue's first pending delivery and when it is due."""
    row = db.execute(
        f"SELECT {DELIVERY_COLUMNS}, next_attempt_at FROM webhook_deliveries WHERE subscription_id = ? "
        "AND room_key = ? AND state = 'pending' ORDER BY seq LIMIT 1", (subscription_id, room_key)).fetchone()
    return None if row is None else (delivery_of(row), row[-1])


def _heads(db: sqlite3.Connection, queues: Sequence[tuple[str, str]]) -> dict[tuple[str, str], tuple[Delivery, int]]:
    """The first pending delivery of each of these queues, and when it is due, with one statement."""
    rows = db.execute(
        f"SELECT {', '.join('d.' + c for c in DELIVERY_COLUMNS.split(', '))}, d.next_attempt_at "
        "FROM json_each(?) AS k JOIN webhook_deliveries d ON d.seq = (SELECT seq FROM webhook_deliveries "
        "WHERE subscription_id = json_extract(k.value, '$[0]') AND room_key = json_extract(k.value, '$[1]') "
        "AND state = 'pending' ORDER BY seq LIMIT 1)",
        (msgspec.json.encode([list(key) for key in queues]).decode(),)).fetchall()
    return {(row[1], row[2]): (delivery_of(row), row[-1]) for row in rows}


def outcome_statements(delivery: Delivery, outcome: Outcome, now: int,
                       mark: str) -> list[tuple[str, tuple[Any, ...]]]:
    """The statements that record an attempt's outcome, the subscription's first (the lock order of both stores:
    subscription, then queue), with `mark` as the parameter placeholder (`?` or `%s`)."""
    q = mark
    if outcome.delivered:
        return [
            (f"UPDATE webhook_subscriptions SET last_success_at = {q}, consecutive_failures = 0 WHERE id = {q}",
             (now, delivery.subscription_id)),
            (f"DELETE FROM webhook_deliveries WHERE seq = {q}", (delivery.seq,)),
        ]
    failed = (f"UPDATE webhook_subscriptions SET consecutive_failures = consecutive_failures + 1 WHERE id = {q}",
              (delivery.subscription_id,))
    if outcome.retry_at is not None:
        return [failed, (f"UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = {q}, "
                         f"last_error = {q} WHERE seq = {q} AND state = 'pending'",
                         (outcome.retry_at, outcome.error, delivery.seq))]
    return [failed, (f"UPDATE webhook_deliveries SET attempts = attempts + 1, state = 'dead', dead_at = {q}, "
                     f"last_error = {q} WHERE seq = {q} AND state = 'pending'", (now, outcome.error, delivery.seq))]
