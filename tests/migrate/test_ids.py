"""Ids openrooms mints after a migration never collide with the imported ones: the store refuses an id it holds
(or ever issued) and the service draws again."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from openrooms.migrate.target import MigrationStore
from openrooms.service import identity, ids
from openrooms.service.clock import FixedClock
from openrooms.service.identity import IdentityService
from openrooms.service.model import CommunicationUser, CreateRoom, Participant, Role, Room
from openrooms.service.rooms import RoomsService
from openrooms.store.postgres import PostgresStore
from openrooms.store.sqlite import SqliteStore
from tests.store import postgres_schema

NOW = 17_000_000_000_000_000
RESOURCE = "1b5cc06b-f352-4571-b1e6-d9b259b7c776"
IMPORTED_ROOM = "99465124738427593"
IMPORTED_PART = "00000005-14a2-493b-8a72-000000000001"


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with postgres_schema.fresh_schema(postgres_schema.base_url()) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[MigrationStore]:
    """Each store openrooms has, empty."""
    if request.param == "sqlite":
        opened: MigrationStore = SqliteStore.open(None)
    else:
        url = request.getfixturevalue("postgres_url")
        postgres_schema.truncate_all(url)
        opened = PostgresStore.open(url, pool_size=2)
    yield opened
    await opened.close()


def drawn(*values: str) -> Iterator[str]:
    yield from values


async def test_a_new_room_never_gets_an_imported_rooms_id(
    store: MigrationStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.insert_room(Room(IMPORTED_ROOM, NOW - 10, NOW - 10, NOW + 10**12, False),
                            [Participant(f"8:acs:{RESOURCE}_{IMPORTED_PART}", Role.PRESENTER)], None)
    draws = drawn(IMPORTED_ROOM, "12345678901234567")
    monkeypatch.setattr(ids, "new_room_id", lambda: next(draws))
    service = RoomsService(store, FixedClock(NOW))
    created = await service.rooms_create(CreateRoom(), [Role.ATTENDEE])
    assert created.room_id == "12345678901234567"
    kept = await store.get_room(IMPORTED_ROOM)
    assert kept is not None and kept.created_at == NOW - 10


async def test_a_new_user_never_gets_an_imported_users_id(
    store: MigrationStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await store.adopt_resource_id(RESOURCE) == RESOURCE
    imported = f"8:acs:{RESOURCE}_{IMPORTED_PART}"
    assert await store.insert_users([CommunicationUser(imported, NOW)]) == 1
    draws = drawn(IMPORTED_PART, "00000005-14a2-493b-8a72-000000000002")
    monkeypatch.setattr(identity, "new_user_part", lambda: next(draws))
    user, _ = await IdentityService(store, FixedClock(NOW)).create_user()
    assert user.raw_id == f"8:acs:{RESOURCE}_00000005-14a2-493b-8a72-000000000002"


async def test_insert_users_skips_the_users_that_exist(store: MigrationStore) -> None:
    users = [CommunicationUser(f"8:acs:{RESOURCE}_{n}", NOW) for n in ("a", "b")]
    assert await store.insert_users(users[:1]) == 1
    assert await store.insert_users(users) == 1
    assert await store.insert_users([]) == 0


async def test_adopting_a_resource_id(store: MigrationStore) -> None:
    other = "0c6d9a55-59cc-4a8b-8a7a-3b0b0a7a1a11"
    assert await store.ensure_resource_id(other) == other
    assert await store.adopt_resource_id(RESOURCE, write=False) == RESOURCE  # nothing held yet: it would adopt
    assert await store.ensure_resource_id("x") == other  # ... but wrote nothing
    assert await store.adopt_resource_id(RESOURCE) == RESOURCE
    await store.insert_users([CommunicationUser(f"8:acs:{RESOURCE}_a", NOW)])
    assert await store.adopt_resource_id(other) == RESOURCE  # users held: kept
