"""Webhook subscriptions, queues and dead letters in PostgreSQL (`WebhookStore`; migrations 0012, 0015, 0016, 0017).

Any number of instances dispatch at once. A subscription is leased by one of them at a time (a compare-and-set on
its row: the owner's, or one whose lease has expired), which delivers its events from the log and moves its cursor
on with a compare-and-set on the cursor and the owner. A queue (a subscription's deliveries of one room) is leased
by one of them at a time: claims take due queues whose lease has expired (or names a holder the claim names as gone)
with `FOR UPDATE SKIP LOCKED`, so two instances never claim the same one. Changes to a queue's deliveries take the
locks in one order, the subscription's row, then the deliveries', then the queue's, so that they never deadlock; and
each reads the queue's first pending delivery in a statement after it holds the queue's row, so it sees every change
committed before it. A part of `PostgresStore`: its `_connection` and `_transaction` are the ones this uses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from psycopg import AsyncConnection

from openrooms.events.subscriptions import BatchEnd, Claimed, Delivery, DeliveryState, Outcome, Subscription
from openrooms.store.sqlite_webhooks import (
    BATCH_END,
    DELIVERY_COLUMNS,
    DELIVERY_STATES,
    INSERT_PARKED,
    INSERTED_COLUMNS,
    LEASE,
    NEXT_DUE,
    NEXT_DUE_WINDOW,
    PARKED_ROOMS,
    QUEUE_HOLDERS,
    QUEUE_PARKED,
    SUBSCRIPTION_COLUMNS,
    batch_end_parameters,
    delivery_of,
    outcome_statements,
    parked_rows,
    states_of,
    subscription_of,
    types_json,
)

_DELIVERY_STATES = DELIVERY_STATES.format(after="(e.tx, e.seq) > (s.cursor_tx::text::xid8, s.cursor_seq)",
                                          types="SELECT json_array_elements_text(s.types::json)")
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
                f"INSERT INTO webhook_subscriptions ({INSERTED_COLUMNS}) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (*stored[:2], types_json(stored), *stored[3:8], *stored.cursor,  # type: ignore[misc]
                 stored.max_events_per_batch, stored.preferred_batch_kilobytes))
        return stored

    async def get_subscription(self, subscription_id: str) -> Subscription | None:
        async with self._connection() as db:
            cursor = await db.execute(f"SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions WHERE id = %s",
                                      (subscription_id,))
            row = await cursor.fetchone()
        return None if row is None else subscription_of(row)

    async def list_subscriptions(self) -> list[Subscription]:
        async with self._connection() as db:
            cursor = await db.execute(
                f"SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions ORDER BY created_at, id")
            rows = await cursor.fetchall()
        return [subscription_of(row) for row in rows]

    async def update_subscription(self, subscription: Subscription) -> bool:
        s = subscription
        async with self._connection() as db:
            cursor = await db.execute(
                "UPDATE webhook_subscriptions SET endpoint = %s, types = %s, room_id = %s, event_schema = %s, "
                "secret = %s, updated_at = %s, max_events_per_batch = %s, preferred_batch_kilobytes = %s WHERE id = %s",
                (s.endpoint, types_json(s), s.room_id, s.schema, s.secret, s.updated_at, s.max_events_per_batch,
                 s.preferred_batch_kilobytes, s.id))
            return cursor.rowcount > 0

    async def delete_subscription(self, subscription_id: str) -> bool:
        async with self._connection() as db:
            cursor = await db.execute("DELETE FROM webhook_subscriptions WHERE id = %s", (subscription_id,))
            return cursor.rowcount > 0

    async def lease_subscription(self, subscription_id: str, owner: str, now: int, lease_until: int,
                                 replacing: str | None = None) -> bool:
        async with self._connection() as db:
            cursor = await db.execute(LEASE.format(q="%s"),
                                      (owner, lease_until, subscription_id, owner, now, replacing))
            return cursor.rowcount > 0

    async def parked_rooms(self, subscription_id: str) -> set[str]:
        async with self._connection() as db:
            cursor = await db.execute(PARKED_ROOMS.format(q="%s"), (subscription_id,))
            return {row[0] for row in await cursor.fetchall()}

    async def finish_batch(self, batch: BatchEnd) -> bool:
        async with self._transaction() as db:  # the subscription's row first, then the deliveries, then the queues
            moved = await db.execute(BATCH_END.format(q="%s"), batch_end_parameters(batch))
            if not moved.rowcount:
                return False
            if batch.parked:
                deliveries, queues = parked_rows(batch)
                async with db.cursor() as writing:
                    await writing.executemany(INSERT_PARKED.format(q="%s"), deliveries)
                    await writing.executemany(QUEUE_PARKED.format(q="%s"), queues)
        return True

    async def claim_deliveries(self, owner: str, now: int, lease_until: int, limit: int,
                               replacing: Collection[str] = ()) -> Claimed:
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE webhook_queues q SET owner = %(owner)s, expires_at = %(until)s FROM (SELECT subscription_id, "
                "room_key FROM webhook_queues WHERE next_attempt_at <= %(now)s "
                "AND (expires_at <= %(now)s OR owner = ANY(%(gone)s::text[])) "
                "ORDER BY next_attempt_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED) picked "
                "WHERE q.subscription_id = picked.subscription_id AND q.room_key = picked.room_key "
                "RETURNING q.subscription_id, q.room_key",
                {"owner": owner, "until": lease_until, "now": now, "limit": limit, "gone": sorted(replacing)})
            queues = [tuple(row) for row in await cursor.fetchall()]
            if not queues:
                return Claimed([], await _next_due(db))
            heads = await _heads(db, queues)
            claimed = []
            released = []
            for key in queues:
                head = heads.get(key)
                if head is not None and head[1] <= now:
                    claimed.append(head[0])
                else:  # nothing due after all: let go, due when its first pending delivery is
                    released.append((None if head is None else head[1], *key))
            if released:
                async with db.cursor() as releasing:
                    await releasing.executemany(_RELEASE, released)
            return Claimed(claimed, await _next_due(db))

    async def queue_holders(self, now: int) -> set[str]:
        async with self._connection() as db:
            cursor = await db.execute(QUEUE_HOLDERS.format(mark="%s"), (now, NEXT_DUE_WINDOW, now))
            return {row[0] for row in await cursor.fetchall()}

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
            return await _next_due(db)

    async def delivery_states(self) -> dict[str, DeliveryState]:
        async with self._connection() as db:
            cursor = await db.execute(_DELIVERY_STATES)
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


async def _next_due(db: AsyncConnection[Any]) -> int | None:
    cursor = await db.execute(NEXT_DUE.format(mark="%s"), (NEXT_DUE_WINDOW,))
    row = await cursor.fetchone()
    return None if row is None else row[0]


async def _head(db: AsyncConnection[Any], subscription_id: str, room_key: str) -> tuple[Delivery, int] | None:
    """A queue's first pending delivery and when it is due."""
    cursor = await db.execute(
        f"SELECT {DELIVERY_COLUMNS}, next_attempt_at FROM webhook_deliveries WHERE {_QUEUE} AND state = 'pending' "
        "ORDER BY seq LIMIT 1", (subscription_id, room_key))
    row = await cursor.fetchone()
    return None if row is None else (delivery_of(row), row[-1])


async def _heads(db: AsyncConnection[Any],
                 queues: Sequence[tuple[Any, ...]]) -> dict[tuple[Any, ...], tuple[Delivery, int]]:
    """The first pending delivery of each of these queues, and when it is due, with one statement (after the one
    that holds their rows)."""
    cursor = await db.execute(
        f"SELECT {', '.join('d.' + c for c in DELIVERY_COLUMNS.split(', '))}, d.next_attempt_at "
        "FROM unnest(%s::text[], %s::text[]) AS k (subscription_id, room_key) CROSS JOIN LATERAL "
        f"(SELECT {DELIVERY_COLUMNS}, next_attempt_at FROM webhook_deliveries w WHERE w.subscription_id = "
        "k.subscription_id AND w.room_key = k.room_key AND w.state = 'pending' ORDER BY w.seq LIMIT 1) d",
        ([key[0] for key in queues], [key[1] for key in queues]))
    return {(row[1], row[2]): (delivery_of(row), row[-1]) for row in await cursor.fetchall()}
