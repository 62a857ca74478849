"""Webhook subscriptions (docs/events.md, "Webhooks"): the subscriptions, their delivery queues and dead letters,
and their queues: one row per subscription and room, that says when its next delivery is due and holds the
lease that lets one instance at a time deliver that subscription's events of that room.

As this migration made them, a subscription's `cursor_tx`, `cursor_seq` was the place in the event log up to which
its events were queued: every event it matched was copied into `webhook_deliveries` and delivered from there.
(Since 0015 it is the place up to which its events are dealt with: delivered from the log a batch at a time or,
when they failed, queued as copies with their room's later events; see 0015.) Deliveries of one subscription and
one room go out in `seq` order, one at a time; `state` is `pending` or `dead`. A queue row (`webhook_queues`) says
when the first pending delivery of a subscription's room is due (`next_attempt_at`, NULL when none is pending) and
names the instance delivering them (`owner`), until `expires_at` (ticks): once that has passed, another instance
takes over (or before, once the holder named is known to be gone: `openrooms.service.holders`). Changes to a
queue's deliveries lock its row first (after the subscription's, when they change that too), so that a queue never
ends up pending without being due.

On PostgreSQL, a statement trigger announces new events on the channel `openrooms_events` (LISTEN/NOTIFY), so that
every instance's dispatcher wakes at once.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

CHANNEL = "openrooms_events"


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "webhook_subscriptions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("endpoint", sa.Text, nullable=False),
        sa.Column("types", sa.Text, nullable=True),  # a JSON array; NULL: every type
        sa.Column("room_id", sa.Text, nullable=True),
        sa.Column("event_schema", sa.String(32), nullable=False),
        sa.Column("secret", sa.Text, nullable=False),  # signs the deliveries: guard the database
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("cursor_tx", sa.BigInteger, nullable=False),
        sa.Column("cursor_seq", sa.BigInteger, nullable=False),
        sa.Column("last_success_at", sa.BigInteger, nullable=True),
        sa.Column("consecutive_failures", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("seq", sa.BigInteger, sa.Identity(), primary_key=True) if postgres
        else sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("subscription_id", sa.String(36),
                  sa.ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("room_key", sa.Text, nullable=False),
        sa.Column("event_tx", sa.BigInteger, nullable=False),
        sa.Column("event_seq", sa.BigInteger, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("time", sa.BigInteger, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger, nullable=False),
        sa.Column("enqueued_at", sa.BigInteger, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("dead_at", sa.BigInteger, nullable=True),
        sa.UniqueConstraint("subscription_id", "event_tx", "event_seq", name="webhook_deliveries_once"),
        sqlite_autoincrement=True,
    )
    op.create_index("webhook_deliveries_queue", "webhook_deliveries", ["subscription_id", "room_key", "state", "seq"])
    op.create_table(
        "webhook_queues",
        sa.Column("subscription_id", sa.String(36),
                  sa.ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("room_key", sa.Text, primary_key=True),
        sa.Column("next_attempt_at", sa.BigInteger, nullable=True),
        sa.Column("owner", sa.Text, nullable=True),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )
    op.create_index("webhook_queues_due", "webhook_queues", ["next_attempt_at"])
    if postgres:
        op.execute(f"""CREATE FUNCTION openrooms_notify_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', '');
    RETURN NULL;
END $$""")
        op.execute("CREATE TRIGGER openrooms_notify_events AFTER INSERT ON events "
                   "FOR EACH STATEMENT EXECUTE FUNCTION openrooms_notify_events()")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS openrooms_notify_events ON events")
        op.execute("DROP FUNCTION IF EXISTS openrooms_notify_events()")
    op.drop_index("webhook_queues_due", "webhook_queues")
    op.drop_table("webhook_queues")
    op.drop_index("webhook_deliveries_queue", "webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_subscriptions")
