"""The room queries' index by the start of the window holds every column of a room, so that a page by state is
read from the index alone, with no lookup of each room in the table: the rooms of a state are spread over the
table (a room's row lies where it was made, its place in the index is its start), and at a million rooms those
lookups cost more than the rest of the page (bench/queries.py).

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_EVERY_COLUMN = ["valid_from", "id", "valid_until", "created_at", "pstn_dial_out_enabled"]


def upgrade() -> None:
    op.drop_index("rooms_by_valid_from", "rooms")
    if op.get_bind().dialect.name == "sqlite":
        op.create_index("rooms_by_valid_from", "rooms", _EVERY_COLUMN)
    else:  # an index-only scan: the rest of the columns ride along in the leaves
        op.create_index("rooms_by_valid_from", "rooms", _EVERY_COLUMN[:2], postgresql_include=_EVERY_COLUMN[2:])


def downgrade() -> None:
    op.drop_index("rooms_by_valid_from", "rooms")
    if op.get_bind().dialect.name == "sqlite":
        op.create_index("rooms_by_valid_from", "rooms", _EVERY_COLUMN[:3])
    else:
        op.create_index("rooms_by_valid_from", "rooms", _EVERY_COLUMN[:2], postgresql_include=["valid_until"])
