"""Webhook subscriptions, queues and dead letters in SQLite (`WebhookStore`; the tables of migration 0012).

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

from openrooms.events.subscriptions import Delivery, DeliveryState, Outcome, Subscription
from openrooms.events.types import StoredEvent
from openrooms.store.changes import NOTHING, Changes

T = TypeVar("T")
_SUBSCRIPTION_COLUMNS = ("id, endpoint, types, room_id, event_schema, secret, created_at, updated_at, cursor_tx, "
                         "cursor_seq")
DELIVERY_COLUMNS = ("seq, subscription_id, room_key, event_tx, event_seq, type, subject, time, data, attempts, "
                    "enqueued_at, last_error, dead_at")


def subscription_of(row: Sequence[Any]) -> Subscription:
    types = None if row[2] is None else tuple(msgspec.json.decode(row[2], type=list[str]))
    return Subscription(row[0], row[1], types, row[3], row[4], row[5], row[6], row[7], (row[8], row[9]))


def delivery_of(row: Sequence[Any]) -> Delivery:
    data = row[8]
    return Delivery(row[0], row[1], row[2], (row[3], row[4]), row[5], row[6], row[7],
                    data.encode() if isinstance(data, str) else bytes(data), row[9], row[10], row[11], row[12])


def types_json(subscription: Subscription) -> str | None:
    return None if subscription.types is None else msgspec.json.encode(list(subscription.types)).decode()


def states_of(rows: Sequence[Sequence[Any]]) -> dict[str, DeliveryState]:
    """(id, last success, consecutive failures, pending, dead) rows -> states by id."""
    return {row[0]: DeliveryState(row[1], row[2], row[3], row[4]) for row in rows}


# Every subscription's state, as one statement (both stores).
DELIVERY_STATES = (
    "SELECT s.id, s.last_success_at, s.consecutive_failures, "
    "(SELECT count(*) FROM webhook_deliveries d WHERE d.subscription_id = s.id AND d.state = 'pending'), "
    "(SELECT count(*) FROM webhook_deliveries d WHERE d.subscription_id = s.id AND d.state = 'dead') "
    "FROM webhook_subscriptions s"
)


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
            db.execute(f"INSERT INTO webhook_subscriptions ({_SUBSCRIPTION_COLUMNS}) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (*stored[:2], types_json(stored), *stored[3:8], 0, end))
            return stored, NOTHING

        result: Subscription = await self._write(transaction)
        return result

    async def get_subscription(self, subscription_id: str) -> Subscription | None:
        row = await self._read(lambda db: db.execute(
            f"SELECT {_SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions WHERE id = ?", (subscription_id,)).fetchone())
        return None if row is None else subscription_of(row)

    async def list_subscriptions(self) -> list[Subscription]:
        rows = await self._read(lambda db: db.execute(
            f"SELECT {_SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions ORDER BY created_at, id").fetchall())
        return [subscription_of(row) for row in rows]

    async def update_subscription(self, subscription: Subscription) -> bool:
        s = subscription
        result: bool = await self._write(lambda db: (db.execute(
            "UPDATE webhook_subscriptions SET endpoint = ?, types = ?, room_id = ?, event_schema = ?, secret = ?, "
            "updated_at = ? WHERE id = ?", (s.endpoint, types_json(s), s.room_id, s.schema, s.secret, s.updated_at,
                                            s.id)).rowcount > 0, NOTHING))
        return result

    async def delete_subscription(self, subscription_id: str) -> bool:
        result: bool = await self._write(lambda db: (db.execute(
            "DELETE FROM webhook_subscriptions WHERE id = ?", (subscription_id,)).rowcount > 0, NOTHING))
        return result

    async def enqueue_deliveries(self, subscription_id: str, expected: tuple[int, int], cursor: tuple[int, int],
                                 events: Sequence[StoredEvent], now: int) -> bool:
        def transaction(db: sqlite3.Connection) -> tuple[bool, Changes]:
            moved = db.execute(
                "UPDATE webhook_subscriptions SET cursor_tx = ?, cursor_seq = ? "
                "WHERE id = ? AND cursor_tx = ? AND cursor_seq = ?", (*cursor, subscription_id, *expected)).rowcount
            if not moved:
                return False, NOTHING
            db.executemany(
                "INSERT INTO webhook_queues (subscription_id, room_key, next_attempt_at, expires_at) "
                "VALUES (?, ?, ?, 0) ON CONFLICT (subscription_id, room_key) "
                "DO UPDATE SET next_attempt_at = coalesce(next_attempt_at, excluded.next_attempt_at)",
                [(subscription_id, key, now) for key in sorted({e.room_id or "" for e in events})])
            db.executemany(
                "INSERT INTO webhook_deliveries (subscription_id, room_key, event_tx, event_seq, type, subject, time, "
                "data, state, attempts, next_attempt_at, enqueued_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?) "
                "ON CONFLICT DO NOTHING",
                [(subscription_id, e.room_id or "", *e.position, e.type, e.subject, e.time, e.data.decode(), now, now)
                 for e in events])
            return True, NOTHING

        result: bool = await self._write(transaction)
        return result

    async def claim_deliveries(self, owner: str, now: int, lease_until: int, limit: int) -> list[Delivery]:
        def transaction(db: sqlite3.Connection) -> tuple[list[Delivery], Changes]:
            queues = db.execute(
                "UPDATE webhook_queues SET owner = ?, expires_at = ? WHERE rowid IN (SELECT rowid FROM webhook_queues "
                "WHERE next_attempt_at <= ? AND expires_at <= ? ORDER BY next_attempt_at LIMIT ?) "
                "RETURNING subscription_id, room_key", (owner, lease_until, now, now, limit)).fetchall()
            claimed = []
            for subscription_id, room_key in queues:
                head = _head(db, subscription_id, room_key)
                if head is not None and head[1] <= now:
                    claimed.append(head[0])
                else:  # nothing due after all: let go, due when its first pending delivery is
                    db.execute("UPDATE webhook_queues SET next_attempt_at = ?, owner = NULL, expires_at = 0 "
                               "WHERE subscription_id = ? AND room_key = ?",
                               (None if head is None else head[1], subscription_id, room_key))
            return claimed, NOTHING

        result: list[Delivery] = await self._write(transaction)
        return result

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
        row = await self._read(lambda db: db.execute(
            "SELECT min(max(next_attempt_at, expires_at)) FROM webhook_queues WHERE next_attempt_at IS NOT NULL"
        ).fetchone())
        return None if row is None else row[0]

    async def delivery_states(self) -> dict[str, DeliveryState]:
        return states_of(await self._read(lambda db: db.execute(DELIVERY_STATES).fetchall()))

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


def _head(db: sqlite3.Connection, subscription_id: str, room_key: str) -> tuple[Delivery, int] | None:
    """A queue's first pending delivery and when it is due."""
    row = db.execute(
        f"SELECT {DELIVERY_COLUMNS}, next_attempt_at FROM webhook_deliveries WHERE subscription_id = ? "
        "AND room_key = ? AND state = 'pending' ORDER BY seq LIMIT 1", (subscription_id, room_key)).fetchone()
    return None if row is None else (delivery_of(row), row[-1])


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
