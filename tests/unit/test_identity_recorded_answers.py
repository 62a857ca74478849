"""Identity answers that follow the real service's recorded ones (the JS Identity SDK's tests and recordings):
an empty scope list on issue, and user ids of another resource."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from openrooms.service.clock import TICKS_PER_SECOND, FixedClock
from openrooms.service.errors import ServiceError
from openrooms.service.identity import IdentityService
from openrooms.service.model import CreateRoom, Role
from openrooms.service.rooms import RoomsService
from openrooms.store.sqlite import SqliteStore

START = 1_790_000_000 * TICKS_PER_SECOND
RESOURCE = "1b5cc06b-f352-4571-b1e6-d9b259b7c776"
USER_PART = "00000005-14a2-493b-8a72-5a3a0d000081"
# The id the JS SDK's tests send as "an invalid user": well formed, of a resource that is not the client's.
JS_SDK_FAKE_USER = "8:acs:00000000-0000-0000-0000-000000000000_00000000-0000-0000-0000-000000000000"
NOT_OWNED = (401, "IdentityNotOwned", "Provided identity doesn't belong to the resource.", None)

Operation = Callable[[IdentityService, str], Awaitable[object]]
OPERATIONS: dict[str, Operation] = {
    "issue": lambda service, raw_id: service.issue_token(raw_id, ["chat", "voip"]),
    "revoke": lambda service, raw_id: service.revoke_tokens(raw_id),
    "delete": lambda service, raw_id: service.delete_user(raw_id),
}


@pytest.fixture
def service(store: SqliteStore) -> IdentityService:
    return IdentityService(store, FixedClock(START), resource_id=RESOURCE)


def error_of(exc: pytest.ExceptionInfo[ServiceError]) -> tuple[int, str, str, str | None]:
    return exc.value.status, exc.value.code, exc.value.message, exc.value.target


async def test_an_empty_scope_list_is_refused_in_the_real_service_words(service: IdentityService) -> None:
    user, _ = await service.create_user()
    with pytest.raises(ServiceError) as exc:
        await service.issue_token(user.raw_id, [])
    assert error_of(exc) == (400, "ValidationError", "Invalid scopes - Scopes field is required.", "scopes")
    assert not exc.value.details
    # No `scopes` at all is another case, answered in other words.
    with pytest.raises(ServiceError) as exc:
        await service.issue_token(user.raw_id, None)
    assert error_of(exc) == (400, "ValidationError", "Scopes: The Scopes field is required.", "Scopes")


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize(
    "raw_id",
    [
        JS_SDK_FAKE_USER,
        f"8:acs:6a4e0fd3-7b57-4bc0-9b6f-0b8e4c3a5e11_{USER_PART}",  # another resource of this cloud
        f"8:gcch-acs:{RESOURCE}_{USER_PART}",  # this resource's GUID under another cloud's prefix
        f"8:spool:{RESOURCE}_{USER_PART}",
    ],
)
async def test_a_user_of_another_resource_is_not_owned(service: IdentityService, operation: str, raw_id: str) -> None:
    with pytest.raises(ServiceError) as exc:
        await OPERATIONS[operation](service, raw_id)
    assert error_of(exc) == NOT_OWNED
    assert not exc.value.details


@pytest.mark.parametrize("operation", OPERATIONS)
async def test_a_missing_user_of_this_resource_stays_not_found(service: IdentityService, operation: str) -> None:
    for raw_id in (f"8:acs:{RESOURCE}_{USER_PART}", f"8:acs:{RESOURCE.upper()}_{USER_PART}"):
        with pytest.raises(ServiceError) as exc:
            await OPERATIONS[operation](service, raw_id)
        assert error_of(exc) == (404, "IdentityNotFound", f"Identity {raw_id} does not exist (or was deleted).", "id")


async def test_a_refused_delete_of_a_foreign_id_changes_nothing(store: SqliteStore, service: IdentityService) -> None:
    """The foreign id is refused before the store is asked: this resource's users and rosters stay as they were."""
    user, _ = await service.create_user()
    rooms = RoomsService(store, FixedClock(START))
    room = await rooms.rooms_create(CreateRoom(participants={user.raw_id: "Presenter"}), (Role.PRESENTER,))
    foreign = user.raw_id.replace(RESOURCE, "00000000-0000-0000-0000-000000000000")
    with pytest.raises(ServiceError) as exc:
        await service.delete_user(foreign)
    assert error_of(exc) == NOT_OWNED
    page = await rooms.participants_list(room.room_id, page_size=10)
    assert [(p.raw_id, p.role) for p in page.items] == [(user.raw_id, Role.PRESENTER)]
    assert (await service.issue_token(user.raw_id, ["voip"])).token
