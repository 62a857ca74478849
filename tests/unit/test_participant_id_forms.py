"""Which refusal a participant id gets, as the real service answers (the az extension's and the SDKs'
recordings). In a create, by its form: an id with a user prefix that is not `<resource>_<user>` is "not
supported", an id of no user form has an "invalid format". In a roster update (add, re-role or remove), any id
that is no user id is "not supported". Nothing is applied."""

from __future__ import annotations

import pytest

from openrooms.service.clock import TICKS_PER_SECOND, FixedClock
from openrooms.service.errors import ServiceError
from openrooms.service.model import CreateRoom, Role
from openrooms.service.rooms import RoomsService, Upsert
from openrooms.store.sqlite import SqliteStore
from tests.support import user_id

ROLES = (Role.PRESENTER, Role.ATTENDEE, Role.CONSUMER, Role.COLLABORATOR)
INVALID_FORMAT = "Invalid format for communication identifier."
USER_PREFIXED = [
    "8:acs:123456c",  # az's test_rooms_add_invalid_consumer_participant
    "8:acs:nonExistentParticipant",
    "8:acs:",
    "8:acs:1b5cc06b-f352-4571-b1e6-d9b259b7c776",  # a resource, no user
    "8:acs:1b5cc06b-f352-4571-b1e6-d9b259b7c776_",
    "8:spool:123456c",  # the other clouds' user prefixes, alike
    "8:dod-acs:123456c",
    "8:gcch-acs:123456c",
]
NO_USER_FORM = [
    "wrong_mri",  # the Python SDK's tests
    "acs:8-invalidMRI",  # az's test_rooms_create_with_invalid_participants_MRI
    "invalid MRI Values",  # the JS SDK's tests
    "8:ACS:123456c",
    "4:+14255550123",
    "8:orgid:45ab2481-1c1c-4005-be24-0ffb879b1130",
    "28:45ab2481-1c1c-4005-be24-0ffb879b1130",
]


@pytest.fixture
def service(store: SqliteStore) -> RoomsService:
    return RoomsService(store, FixedClock(1_800_000_000 * TICKS_PER_SECOND))


def refusal(exc: pytest.ExceptionInfo[ServiceError]) -> tuple[int, str, str, str | None, int]:
    return exc.value.status, exc.value.code, exc.value.message, exc.value.target, len(exc.value.details)


@pytest.mark.parametrize("raw_id", USER_PREFIXED + NO_USER_FORM)
async def test_refusal_in_create_by_form_and_in_roster_updates_alike(service: RoomsService, raw_id: str) -> None:
    not_supported = f"Communication identifier {raw_id} is not supported."
    with pytest.raises(ServiceError) as exc:
        await service.rooms_create(CreateRoom(participants={user_id(1): "Presenter", raw_id: None}), ROLES)
    assert refusal(exc) == (400, "BadRequest", not_supported if raw_id in USER_PREFIXED else INVALID_FORMAT, None, 0)

    room_id = (await service.rooms_create(CreateRoom(participants={user_id(1): "Presenter"}), ROLES)).room_id
    with pytest.raises(ServiceError) as exc:
        await service.participants_update(room_id, {user_id(2): Upsert("Attendee"), raw_id: Upsert("Consumer")}, ROLES)
    assert refusal(exc) == (400, "BadRequest", not_supported, None, 0)
    with pytest.raises(ServiceError) as exc:
        await service.participants_update(room_id, {user_id(1): None, raw_id: None}, ROLES)
    assert refusal(exc) == (400, "BadRequest", not_supported, None, 0)

    page = await service.participants_list(room_id, page_size=10)
    assert [(p.raw_id, p.role) for p in page.items] == [(user_id(1), Role.PRESENTER)]  # nothing applied
