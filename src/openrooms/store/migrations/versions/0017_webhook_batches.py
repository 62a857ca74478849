"""Batched webhook delivery (docs/events.md, "Batches"): a subscription's `max_events_per_batch` (1 to 5000) and
`preferred_batch_kilobytes` (1 to 1024), Event Grid's `maxEventsPerBatch` and `preferredBatchSizeInKilobytes`.
Existing subscriptions get Event Grid's defaults, 1 and 64: one event per request, as before.

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_subscriptions") as table:
        table.add_column(sa.Column("max_events_per_batch", sa.Integer, nullable=False, server_default="1"))
        table.add_column(sa.Column("preferred_batch_kilobytes", sa.Integer, nullable=False, server_default="64"))


def downgrade() -> None:
    with op.batch_alter_table("webhook_subscriptions") as table:
        table.drop_column("preferred_batch_kilobytes")
        table.drop_column("max_events_per_batch")
