"""Room calls' events go to the event log (`events`) like every other change: the `call_events` table is dropped.
Each call's server row also keeps who started it and its correlation id, which all of its events carry.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("call_events_by_room", "call_events")
    op.drop_table("call_events")
    with op.batch_alter_table("call_servers") as table:
        table.add_column(sa.Column("started_by", sa.Text, nullable=False, server_default=""))  # a raw id
        table.add_column(sa.Column("started_by_role", sa.String(16), nullable=False, server_default=""))
        table.add_column(sa.Column("correlation_id", sa.String(64), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("call_servers") as table:
        table.drop_column("correlation_id")
        table.drop_column("started_by_role")
        table.drop_column("started_by")
    op.create_table(
        "call_events",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_type", sa.String(32), nullable=False),
        sa.Column("server_call_id", sa.String(64), nullable=False),
        sa.Column("room_id", sa.String(32), nullable=False),
        sa.Column("raw_id", sa.Text, nullable=True),
        sa.Column("role", sa.String(16), nullable=True),
        sa.Column("display_name", sa.Text, nullable=True),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("duration_ticks", sa.BigInteger, nullable=True),
        sa.Column("end_reason", sa.Text, nullable=True),
        sa.Column("sub_code", sa.Integer, nullable=True),
    )
    op.create_index("call_events_by_room", "call_events", ["room_id", "seq"])
