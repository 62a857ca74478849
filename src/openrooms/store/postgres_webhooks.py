"""Webhook subscriptions, queues and dead letters in PostgreSQL (`WebhookStore`; the tables of migration 0012).

Any number of instances dispatch at once. A queue (a subscription's deliveries of one room) is leased by one of
them at a time: claims take due queues whose lease has expired with `FOR UPDATE SKIP LOCKED`, so two instances
never claim the same one. Changes to a queue's deliveries take the locks in one order, the subscription's row,
then the deliveries', then the queue's, so that they never deadlock; and each reads the queue's first pending
delivery in a statement after it holds the queue's row, so it sees every change committed before it.
A part of `PostgresStore`: its `_connection` and `_transaction` are the ones this uses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from psycopg import AsyncConnection

from openrooms.events.subscriptions import Delivery, DeliveryState, Outcome, Subscription
from openrooms.events.types import StoredEvent
from openrooms.store.sqlite_webhooks import (
    DELIVERY_COLUMNS,
    DELIVERY_STATES,
    delivery_of,
    outcome_statements,
    states_of,
    subscription_of,
    types_json,
)

_SUBSCRIPTION_COLUMNS = ("id, endpoint, types, room_id, event_schema, secret, created_at, updated_at, cursor_tx, "
                         "cursor_seq")
_QUEUE = "subscription_id = %s AND room_key = %s"
_RELEASE = f"UPDATE webhook_queues SET next_attempt_at = %s, owner = NULL, expires_at = 0 WHERE {_QUEUE}"


class PostgresWebhooks:
    def _connection(self) -> AbstractAsyncContextManager[AsyncConnection[Any]]: ...  # type: ignore[empty-body]

    def _transaction(self, *,  # type: ignore[empty-body]
                     logs: bool = False) -> AbstractAsyncContextManager[AsyncConnection[Any]]: ...

    async def _log_end(self, db: AsyncConnection[Any]) -> tuple[int, int]: ...  # type: ignore[empty-body]

    async def insert_subscription(self, subscription: Subscription) -> Subscription:
        async with self._transaction() as db:
            stored = subscription._replace(cursor=await self._log_end(db))
            await db.execute(
                f"INSERT INTO webhook_subscriptions ({_SUBSCRIPTION_COLUMNS}) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (*stored[:2], types_json(stored), *stored[3:8], *stored.cursor))  # type: ignore[misc]
        return stored

    async def get_subscription(self, subscription_id: str) -> Subscription | None:
        async with self._connection() as db:
            cursor = await db.execute(f"SELECT {_SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions WHERE id = %s",
                                      (subscription_id,))
            row = await cursor.fetchone()
        return None if row is None else subscription_of(row)

    async def list_subscriptions(self) -> list[Subscription]:
        async with self._connection() as db:
            cursor = await db.execute(
                f"SELECT {_SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions ORDER BY created_at, id")
            rows = await cursor.fetchall()
        return [subscription_of(row) for row in rows]

    async def update_subscription(self, subscription: Subscription) -> bool:
        s = subscription
        async with self._connection() as db:
            cursor = await db.execute(
                "UPDATE webhook_subscriptions SET endpoint = %s, types = %s, room_id = %s, event_schema = %s, "
                "secret = %s, updated_at = %s WHERE id = %s",
                (s.endpoint, types_json(s), s.room_id, s.schema, s.secret, s.updated_at, s.id))
            return cursor.rowcount > 0

    async def delete_subscription(self, subscription_id: str) -> bool:
        async with self._connection() as db:
            cursor = await db.execute("DELETE FROM webhook_subscriptions WHERE id = %s", (subscription_id,))
            return cursor.rowcount > 0

    async def enqueue_deliveries(self, subscription_id: str, expected: tuple[int, int], cursor: tuple[int, int],
                                 events: Sequence[StoredEvent], now: int) -> bool:
        async with self._transaction() as db:
            moved = await db.execute(
                "UPDATE webhook_subscriptions SET cursor_tx = %s, cursor_seq = %s "
                "WHERE id = %s AND cursor_tx = %s AND cursor_seq = %s", (*cursor, subscription_id, *expected))
            if not moved.rowcount:
                return False
            keys = sorted({e.room_id or "" for e in events})
            if keys:
                await db.execute(
                    "INSERT INTO webhook_queues (subscription_id, room_key, next_attempt_at, expires_at) "
                    "SELECT %s, key, %s, 0 FROM unnest(%s::text[]) WITH ORDINALITY AS k (key, n) ORDER BY n "
                    "ON CONFLICT (subscription_id, room_key) "
                    "DO UPDATE SET next_attempt_at = "
                    "coalesce(webhook_queues.next_attempt_at, excluded.next_attempt_at)",
                    (subscription_id, now, keys))
                await db.execute(
                    "INSERT INTO webhook_deliveries (subscription_id, room_key, event_tx, event_seq, type, subject, "
                    "time, data, state, attempts, next_attempt_at, enqueued_at) "
                    "SELECT %(sub)s, e.room_key, e.tx, e.seq, e.type, e.subject, e.time, e.data, 'pending', 0, "
                    "%(now)s, %(now)s FROM unnest(%(room)s::text[], %(tx)s::bigint[], %(seq)s::bigint[], "
                    "%(type)s::text[], %(subject)s::text[], %(time)s::bigint[], %(data)s::text[]) WITH ORDINALITY "
                    "AS e (room_key, tx, seq, type, subject, time, data, n) ORDER BY e.n ON CONFLICT DO NOTHING",
                    {"sub": subscription_id, "now": now, "room": [e.room_id or "" for e in events],
                     "tx": [e.position[0] for e in events], "seq": [e.position[1] for e in events],
                     "type": [e.type for e in events], "subject": [e.subject for e in events],
                     "time": [e.time for e in events], "data": [e.data.decode() for e in events]})
        return True

    async def claim_deliveries(self, owner: str, now: int, lease_until: int, limit: int) -> list[Delivery]:
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE webhook_queues q SET owner = %(owner)s, expires_at = %(until)s FROM (SELECT subscription_id, "
                "room_key FROM webhook_queues WHERE next_attempt_at <= %(now)s AND expires_at <= %(now)s "
                "ORDER BY next_attempt_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED) picked "
                "WHERE q.subscription_id = picked.subscription_id AND q.room_key = picked.room_key "
                "RETURNING q.subscription_id, q.room_key",
                {"owner": owner, "until": lease_until, "now": now, "limit": limit})
            claimed = []
            for subscription_id, room_key in await cursor.fetchall():
                head = await _head(db, subscription_id, room_key)
                if head is not None and head[1] <= now:
                    claimed.append(head[0])
                else:  # nothing due after all: let go, due when its first pending delivery is
                    await db.execute(_RELEASE, (None if head is None else head[1], subscription_id, room_key))
        return claimed

    async def finish_delivery(self, delivery: Delivery, owner: str, outcome: Outcome, now: int,
                              lease_until: int) -> Delivery | None:
        key = (delivery.subscription_id, delivery.room_key)
        async with self._transaction() as db:
            for statement, parameters in outcome_statements(delivery, outcome, now, "%s"):
                await db.execute(statement, parameters)
            cursor = await db.execute(f"SELECT owner FROM webhook_queues WHERE {_QUEUE} FOR UPDATE", key)
            held = await cursor.fetchone()
            if held is None or held[0] != owner:
                return None  # another instance took the queue over (or the subscription is gone)
            head = await _head(db, *key)
            if head is not None and head[1] <= now:
                await db.execute(f"UPDATE webhook_queues SET next_attempt_at = %s, expires_at = %s WHERE {_QUEUE}",
                                 (head[1], lease_until, *key))
                return head[0]
            await db.execute(_RELEASE, (None if head is None else head[1], *key))
        return None

    async def next_due(self) -> int | None:
        async with self._connection() as db:
            cursor = await db.execute("SELECT min(greatest(next_attempt_at, expires_at)) FROM webhook_queues "
                                      "WHERE next_attempt_at IS NOT NULL")
            row = await cursor.fetchone()
        return None if row is None else row[0]

    async def delivery_states(self) -> dict[str, DeliveryState]:
        async with self._connection() as db:
            cursor = await db.execute(DELIVERY_STATES)
            return states_of(await cursor.fetchall())

    async def list_dead_letters(self, subscription_id: str, limit: int) -> list[Delivery]:
        async with self._connection() as db:
            cursor = await db.execute(
                f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE subscription_id = %s AND state = 'dead' "
                "ORDER BY seq LIMIT %s", (subscription_id, limit))
            rows = await cursor.fetchall()
        return [delivery_of(row) for row in rows]

    async def redeliver(self, subscription_id: str, seqs: Collection[int] | None, now: int) -> int:
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, next_attempt_at = %(now)s, "
                "enqueued_at = %(now)s, dead_at = NULL WHERE subscription_id = %(sub)s AND state = 'dead' "
                "AND (%(seqs)s::bigint[] IS NULL OR seq = ANY(%(seqs)s::bigint[])) RETURNING room_key",
                {"now": now, "sub": subscription_id, "seqs": None if seqs is None else sorted(seqs)})
            rows = await cursor.fetchall()
            for key in sorted({row[0] for row in rows}):
                await db.execute(
                    "UPDATE webhook_queues SET next_attempt_at = least(coalesce(next_attempt_at, %s), %s) "
                    f"WHERE {_QUEUE}", (now, now, subscription_id, key))
        return len(rows)

    def listen_events(self) -> AsyncIterator[None]:  # type: ignore[empty-body]
        ...  # PostgresStore's (LISTEN on the channel of migration 0012)


async def _head(db: AsyncConnection[Any], subscription_id: str, room_key: str) -> tuple[Delivery, int] | None:
    """A queue's first pending delivery and when it is due."""
    cursor = await db.execute(
        f"SELECT {DELIVERY_COLUMNS}, next_attempt_at FROM webhook_deliveries WHERE {_QUEUE} AND state = 'pending' "
        "ORDER BY seq LIMIT 1", (subscription_id, room_key))
    row = await cursor.fetchone()
    return None if row is None else (delivery_of(row), row[-1])
