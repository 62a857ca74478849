"""Room calls: which media server room holds each room's call (found by any instance), and a record of every
call start and end and every participant joining and leaving, with what ACS's Event Grid call events carry.

On PostgreSQL, triggers also announce every change to a room, its roster or a user on the channel
`openrooms_changes` (payload `room:<id>` or `user:<raw id>`; PostgreSQL folds repeats within a transaction), so
that every instance applies it to the calls it serves at once (LISTEN/NOTIFY).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "call_servers",
        sa.Column("room_id", sa.String(32), primary_key=True),
        sa.Column("server", sa.Text, nullable=False),  # the Janus server's WebSocket URL
        sa.Column("janus_room", sa.BigInteger, nullable=False),
        sa.Column("secret", sa.Text, nullable=False),  # the VideoRoom's secret and pin: guard the database
        sa.Column("pin", sa.Text, nullable=False),
        sa.Column("server_call_id", sa.String(64), nullable=False),
        sa.Column("started_at", sa.BigInteger, nullable=False),  # ticks of 100 ns since the epoch
    )
    op.create_table(
        "call_events",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_type", sa.String(32), nullable=False),  # CallStarted, CallEnded, CallParticipant...
        sa.Column("server_call_id", sa.String(64), nullable=False),
        sa.Column("room_id", sa.String(32), nullable=False),
        sa.Column("raw_id", sa.Text, nullable=True),  # the participant (participant events)
        sa.Column("role", sa.String(16), nullable=True),
        sa.Column("display_name", sa.Text, nullable=True),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("duration_ticks", sa.BigInteger, nullable=True),  # ended / removed: since started / added
        sa.Column("end_reason", sa.Text, nullable=True),
        sa.Column("sub_code", sa.Integer, nullable=True),
    )
    op.create_index("call_events_by_room", "call_events", ["room_id", "seq"])
    if op.get_bind().dialect.name == "postgresql":
        for table, function, payload in _NOTIFIERS:
            op.execute(f"""CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('{CHANNEL}', {payload.format(row="OLD")});
    ELSE
        PERFORM pg_notify('{CHANNEL}', {payload.format(row="NEW")});
    END IF;
    RETURN NULL;
END $$""")
            op.execute(f"CREATE TRIGGER {function} AFTER INSERT OR UPDATE OR DELETE ON {table} "
                       f"FOR EACH ROW EXECUTE FUNCTION {function}()")


CHANNEL = "openrooms_changes"
_NOTIFIERS = (
    ("rooms", "openrooms_notify_room", "'room:' || {row}.id"),
    ("participants", "openrooms_notify_participant", "'room:' || {row}.room_id"),
    ("identities", "openrooms_notify_identity", "'user:' || {row}.raw_id"),
)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, function, _ in _NOTIFIERS:
            op.execute(f"DROP TRIGGER IF EXISTS {function} ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS {function}()")
    op.drop_index("call_events_by_room", "call_events")
    op.drop_table("call_events")
    op.drop_table("call_servers")
