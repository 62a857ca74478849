"""Idempotent-create records made before 0005 kept the answer's JSON; 0005 turns each into the room as created,
from which the same answer is rendered again: a repeat sent across the upgrade still gets its first answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import sqlalchemy as sa

from openrooms.http import versions
from openrooms.http.rooms import room_json
from openrooms.service import timestamps
from openrooms.service.clock import TICKS_PER_SECOND
from openrooms.service.model import Room
from openrooms.store import migrate, postgres
from openrooms.store.postgres import PostgresStore
from openrooms.store.sqlite import SqliteStore
from tests.store import postgres_schema

T0 = 1_790_000_000 * TICKS_PER_SECOND + 1_234_500
DIAL_OUT = versions.ROOMS.resolve("2024-04-15")
NO_DIAL_OUT = versions.ROOMS.resolve("2023-06-14")
ROOMS = {  # request id -> (room, the api-version its create was answered for)
    "with-dial-out": (Room("10000000000000001", T0, T0 + 5, T0 + 3600 * TICKS_PER_SECOND, True), DIAL_OUT),
    "without-dial-out": (Room("10000000000000002", T0, T0, T0 + 86_400 * TICKS_PER_SECOND, False), NO_DIAL_OUT),
}


def answer_before_0005(room: Room, version: versions.ApiVersion) -> bytes:
    """A create's answer as openrooms wrote it into `create_requests.response`."""
    body: dict[str, object] = {"id": room.id, "createdAt": timestamps.format(room.created_at),
                               "validFrom": timestamps.format(room.valid_from),
                               "validUntil": timestamps.format(room.valid_until)}
    if version.pstn_dial_out:
        body["pstnDialOutEnabled"] = room.pstn_dial_out_enabled
    return msgspec.json.encode(body)


def keep_records_at_0004(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        migrate.upgrade(connection, "0004")
        for request_id, (room, version) in ROOMS.items():
            connection.execute(
                sa.text("INSERT INTO create_requests (request_id, fingerprint, room_id, response, created_at) "
                        "VALUES (:request_id, 'fingerprint', :room_id, :response, :created_at)"),
                {"request_id": request_id, "room_id": room.id, "response": answer_before_0005(room, version),
                 "created_at": room.created_at},
            )


@pytest.fixture
def postgres_url_at_0004() -> Iterator[str]:
    with postgres_schema.fresh_schema(postgres_schema.base_url(), upgrade=False) as url:
        yield url


async def test_sqlite_records_keep_their_answers_across_0005(tmp_path: Path) -> None:
    path = tmp_path / "openrooms.db"
    keep_records_at_0004(sa.create_engine(f"sqlite:///{path}", poolclass=sa.pool.NullPool))
    SqliteStore.upgrade(path)
    store = SqliteStore.open(path)
    try:
        for request_id, (room, version) in ROOMS.items():
            record = await store.get_create_record(request_id)
            assert record is not None and record.room == room
            assert room_json(record.room, version) == answer_before_0005(room, version)
    finally:
        await store.close()


async def test_postgres_records_keep_their_answers_across_0005(postgres_url_at_0004: str) -> None:
    keep_records_at_0004(sa.create_engine(postgres.sqlalchemy_url(postgres_url_at_0004), poolclass=sa.pool.NullPool))
    postgres.upgrade(postgres_url_at_0004)
    store = PostgresStore.open(postgres_url_at_0004)
    try:
        for request_id, (room, version) in ROOMS.items():
            record = await store.get_create_record(request_id)
            assert record is not None and record.room == room
            assert room_json(record.room, version) == answer_before_0005(room, version)
    finally:
        await store.close()
