"""Rooms, their rosters, every room id ever issued, and idempotent-create records.

Times are BIGINT ticks of 100 ns since the Unix epoch (UTC), the precision of ACS timestamps.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

# PostgreSQL compares text by the database's locale unless told otherwise; ids are ordered and paged
# byte-wise, as SQLite does, so their columns use the "C" collation there.
ROOM_ID = sa.String(20).with_variant(sa.String(20, collation="C"), "postgresql")
RAW_ID = sa.String(256).with_variant(sa.String(256, collation="C"), "postgresql")

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rooms",
        sa.Column("id", ROOM_ID, primary_key=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("valid_from", sa.BigInteger, nullable=False),
        sa.Column("valid_until", sa.BigInteger, nullable=False),
        sa.Column("pstn_dial_out_enabled", sa.Boolean, nullable=False),
    )
    op.create_index("rooms_by_created", "rooms", ["created_at", "id"])
    op.create_index("rooms_by_valid_until", "rooms", ["valid_until"])
    op.create_table(
        "participants",
        sa.Column("room_id", ROOM_ID, sa.ForeignKey("rooms.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("raw_id", RAW_ID, primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_index("participants_by_raw_id", "participants", ["raw_id"])
    # Every id ever issued, so that no id is issued twice even after its room is deleted or purged.
    op.create_table("room_ids", sa.Column("id", ROOM_ID, primary_key=True), sqlite_with_rowid=False)
    op.create_table(
        "create_requests",
        sa.Column("request_id", sa.String(128), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("room_id", sa.String(20), nullable=False),
        sa.Column("response", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("create_requests_by_created", "create_requests", ["created_at"])


def downgrade() -> None:
    op.drop_table("create_requests")
    op.drop_table("room_ids")
    op.drop_table("participants")
    op.drop_table("rooms")
