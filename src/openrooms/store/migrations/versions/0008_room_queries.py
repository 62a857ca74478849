"""Indexes of the room queries (the openrooms extension's `GET /rooms?participant=...&state=...`, docs/rooms.md):
rooms by the start of their window (then id, the order the queries page in), with the end of the window in the
index, so that a query by state skips rooms from the index alone; and on PostgreSQL a participant's rooms from the
index alone (SQLite's index on raw_id holds the room id already: its table is keyed by (room_id, raw_id)).

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.create_index("rooms_by_valid_from", "rooms", ["valid_from", "id", "valid_until"])
    else:
        op.create_index("rooms_by_valid_from", "rooms", ["valid_from", "id"], postgresql_include=["valid_until"])
        op.create_index("participants_by_raw_id_room", "participants", ["raw_id", "room_id"])
        op.drop_index("participants_by_raw_id", "participants")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.create_index("participants_by_raw_id", "participants", ["raw_id"])
        op.drop_index("participants_by_raw_id_room", "participants")
    op.drop_index("rooms_by_valid_from", "rooms")
