"""Rosters in the order of addition: each roster entry's place in its room (`seq`), from 1.

A participant added to a room takes the place after the last one there; a role change keeps it. Rosters stored
before this revision have no recorded order: their entries are numbered in raw id order, the order they were
listed in until now, so that a listing in progress reads on the same way.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every later insert gives its place explicitly; the default only fills the rows that are there now.
    op.add_column("participants", sa.Column("seq", sa.BigInteger, nullable=False, server_default="0"))
    op.execute(
        "UPDATE participants SET seq = numbered.n FROM (SELECT room_id, raw_id, "
        "row_number() OVER (PARTITION BY room_id ORDER BY raw_id) AS n FROM participants) AS numbered "
        "WHERE participants.room_id = numbered.room_id AND participants.raw_id = numbered.raw_id"
    )
    if op.get_bind().dialect.name == "sqlite":
        # An index of a table without rowid holds the table's key (the raw id) too: with the role in it, a page
        # of a roster is read from the index alone.
        op.create_index("participants_by_seq", "participants", ["room_id", "seq", "role"])
    else:
        op.create_index("participants_by_seq", "participants", ["room_id", "seq"], unique=True)


def downgrade() -> None:
    op.drop_index("participants_by_seq", "participants")
    with op.batch_alter_table("participants") as batch:
        batch.drop_column("seq")
