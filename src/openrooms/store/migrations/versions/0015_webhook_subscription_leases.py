"""Webhooks delivered from the event log (docs/events.md, "How delivery runs"): a subscription is leased by one
dispatcher at a time (`owner`, until `expires_at`, ticks), which reads the subscription's events after its cursor
straight from the log and moves the cursor on once a batch is delivered. Only what failed (and what comes after it
in the same room) is copied into `webhook_deliveries`, as before. From here on the cursor is the place in the log
up to which a subscription's events are dealt with: delivered from the log, or, when they failed, queued as copies
(so that a retry does not depend on the log's retention); 0012's docstring tells what it meant before.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_subscriptions") as table:
        table.add_column(sa.Column("owner", sa.Text, nullable=True))
        table.add_column(sa.Column("expires_at", sa.BigInteger, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("webhook_subscriptions") as table:
        table.drop_column("expires_at")
        table.drop_column("owner")
