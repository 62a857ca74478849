"""The rooms' window events (`OpenRooms.RoomWindowOpened` at `validFrom`, `RoomWindowClosed` at `validUntil`):
`window_clock` holds one row, the instant up to which they were all emitted (see store/windows.py), moved in
the transaction that appends them. The openings are found through a partial index of the rooms that open after
their creation (most rooms open at once and are not in it); the closings through `rooms_by_valid_until`.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

AHEAD = sa.text("valid_from > created_at")


def upgrade() -> None:
    op.create_table(
        "window_clock",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),  # always 1
        sa.Column("covered", sa.BigInteger, nullable=False),  # ticks
    )
    op.create_index("rooms_by_valid_from_ahead", "rooms", ["valid_from"], postgresql_where=AHEAD,
                    sqlite_where=AHEAD)


def downgrade() -> None:
    op.drop_index("rooms_by_valid_from_ahead", "rooms")
    op.drop_table("window_clock")
