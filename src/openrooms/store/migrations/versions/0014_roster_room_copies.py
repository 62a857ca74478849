"""Each roster entry holds a copy of its room's row (`created_at`, `valid_from`, `valid_until`,
`pstn_dial_out_enabled`), and the roster's index by raw id is ordered by the start of the window and holds the
rest: a participant's rooms are read as a page of the room queries (the start of the window, then the id; a state's
condition checked in the index) from that index alone, with no lookup of each room in `rooms` (`room_queries.py`).
A participant's rooms lie anywhere in `rooms`, so those lookups, one per room, cost about four times a first page
of all rooms at a million rooms (bench/queries.py). Every write of a room's values writes its roster's copies in
the same transaction; a room's id, its roster's key, never changes.

The index `participants_rooms_by_valid_from` takes the place of the roster's index by raw id (SQLite's
`participants_by_raw_id`, PostgreSQL's `participants_by_raw_id_room` of 0008): it answers every lookup by raw id
that one did, so a roster entry still costs one index besides the table's key and the order of addition.

The rosters stored before this revision take their rooms' values. Every later insert gives them: on PostgreSQL the
columns have no default (an entry without them is refused); SQLite cannot drop a column's default without
rebuilding the table, so there the default of the upgrade stays, unused.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_COPIES = (("created_at", sa.BigInteger, "0"), ("valid_from", sa.BigInteger, "0"), ("valid_until", sa.BigInteger, "0"),
           ("pstn_dial_out_enabled", sa.Boolean, sa.false()))
_KEY = ["raw_id", "valid_from", "room_id"]  # a participant's rooms in the order of the room queries
_CARRIED = ["valid_until", "created_at", "pstn_dial_out_enabled"]


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for name, kind, default in _COPIES:
        op.add_column("participants", sa.Column(name, kind, nullable=False, server_default=default))
    op.execute("UPDATE participants SET created_at = rooms.created_at, valid_from = rooms.valid_from, "
               "valid_until = rooms.valid_until, pstn_dial_out_enabled = rooms.pstn_dial_out_enabled "
               "FROM rooms WHERE rooms.id = participants.room_id")
    if sqlite:
        # Without rowid, an index holds the table's key: (raw_id, room_id) are in it already.
        op.create_index("participants_rooms_by_valid_from", "participants", _KEY + _CARRIED)
        op.drop_index("participants_by_raw_id", "participants")
    else:  # an index-only scan: the rest of the room rides along in the leaves
        op.execute("ALTER TABLE participants "
                   + ", ".join(f"ALTER COLUMN {name} DROP DEFAULT" for name, _, _ in _COPIES))
        op.create_index("participants_rooms_by_valid_from", "participants", _KEY, postgresql_include=_CARRIED)
        op.drop_index("participants_by_raw_id_room", "participants")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.create_index("participants_by_raw_id", "participants", ["raw_id"])
    else:
        op.create_index("participants_by_raw_id_room", "participants", ["raw_id", "room_id"])
    op.drop_index("participants_rooms_by_valid_from", "participants")
    with op.batch_alter_table("participants") as batch:
        for name, _, _ in reversed(_COPIES):
            batch.drop_column(name)
