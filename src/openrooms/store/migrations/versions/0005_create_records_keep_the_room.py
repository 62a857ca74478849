"""Idempotent-create records keep the room as created, not the answer's JSON: the answer is rendered again
from it. `create_requests.response` becomes `created_room`, a MessagePack array
`[created_at, valid_from, valid_until, pstn_dial_out_enabled]` (see `openrooms.store.records`); the records
already kept are converted, so that a repeat sent across the upgrade still gets its first answer.

Revision ID: 0005
Revises: 0004
"""

import calendar
import json
import re

import msgspec
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# The instants openrooms wrote in answers: whole seconds, up to seven fractional digits, always UTC.
_INSTANT = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,7}))?\+00:00")
_TICKS_PER_SECOND = 10_000_000


def _ticks(text: str) -> int:
    match = _INSTANT.fullmatch(text)
    if match is None:
        raise ValueError(f"not an instant openrooms writes: {text!r}")
    *fields, fraction = match.groups()
    seconds = calendar.timegm((*(int(f) for f in fields), 0, 0, 0))
    return seconds * _TICKS_PER_SECOND + int((fraction or "").ljust(7, "0"))


def upgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT request_id, response FROM create_requests")).fetchall()
    for request_id, response in rows:
        body = json.loads(bytes(response))
        value = msgspec.msgpack.encode((
            _ticks(body["createdAt"]), _ticks(body["validFrom"]), _ticks(body["validUntil"]),
            bool(body.get("pstnDialOutEnabled", False)),
        ))
        bind.execute(sa.text("UPDATE create_requests SET response = :value WHERE request_id = :id"),
                     {"value": value, "id": request_id})
    op.execute("ALTER TABLE create_requests RENAME COLUMN response TO created_room")


def downgrade() -> None:
    # The JSON of an answer depends on the api-version it was made for, which the record does not keep: the
    # records (a day's worth of repeat protection) are dropped rather than rendered wrongly.
    op.execute("DELETE FROM create_requests")
    op.execute("ALTER TABLE create_requests RENAME COLUMN created_room TO response")
