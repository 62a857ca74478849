"""The event log: every change's event, written in the change's transaction (an outbox), in one order.

`seq` numbers the events as they are written. On SQLite writers take turns, so that is also the order they
commit in. On PostgreSQL transactions commit in any order: each event also records its transaction id (`tx`),
and readers go by (tx, seq) and read only the events of transactions older than every one still running (see
`PostgresStore.list_events`). `data` is the event's JSON as written; `time` is in ticks of 100 ns. SQLite's
`seq` is AUTOINCREMENT: a number is never given out twice, even once the purge has emptied the log. An event's
id is derived from its place (see `events.log.event_id`), so it is not stored.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    columns: list[sa.Column[object]] = [
        sa.Column("seq", sa.BigInteger, sa.Identity(), primary_key=True) if postgres
        else sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("room_id", sa.Text, nullable=True),
        sa.Column("time", sa.BigInteger, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
    ]
    op.create_table("events", *columns, sqlite_autoincrement=True)
    if postgres:
        op.execute("ALTER TABLE events ADD COLUMN tx xid8 NOT NULL DEFAULT pg_current_xact_id()")
        op.create_index("events_by_position", "events", ["tx", "seq"])
        op.create_index("events_by_time", "events", ["time"])  # SQLite purges in `seq` order instead


def downgrade() -> None:
    op.drop_table("events")
