"""An index of the pending webhook deliveries alone (`state = 'pending'`), by subscription, room and order: a
dispatcher reads a subscription's parked rooms (the rooms with a pending delivery) at every batch from it,
without passing over the subscription's dead letters, which are kept until they are redelivered or the
subscription is deleted and can far outnumber what is pending (a queue's first pending delivery was read without
them already, along `webhook_deliveries_queue`). Rows are written only for rooms whose delivery failed. `state` is
in it though constant there, so that SQLite reads those queries from the index alone (it counts a column the
index's WHERE fixes as one it would have to look up).

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_PENDING = sa.text("state = 'pending'")


def upgrade() -> None:
    op.create_index("webhook_deliveries_pending", "webhook_deliveries", ["subscription_id", "room_key", "state", "seq"],
                    sqlite_where=_PENDING, postgresql_where=_PENDING)


def downgrade() -> None:
    op.drop_index("webhook_deliveries_pending", "webhook_deliveries")
