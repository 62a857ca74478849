"""The identity service's rules: users, token issue, verification, revocation and deletion (in-memory store,
fixed clock: nothing here depends on wall time)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from openrooms.service import ids
from openrooms.service.clock import TICKS_PER_SECOND, FixedClock
from openrooms.service.errors import ServiceError
from openrooms.service.identity import DEFAULT_TOKEN_MINUTES, IdentityService
from openrooms.service.model import CreateRoom, Role
from openrooms.service.rooms import RoomsService
from openrooms.store.sqlite import SqliteStore

START = 1_790_000_000 * TICKS_PER_SECOND + 4_321_000
MINUTE = 60 * TICKS_PER_SECOND
RESOURCE = "1b5cc06b-f352-4571-b1e6-d9b259b7c776"
USER_PART = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
def service(store: SqliteStore, clock: FixedClock) -> IdentityService:
    return IdentityService(store, clock)


def assert_error(exc: pytest.ExceptionInfo[ServiceError], status: int, code: str, message: str,
                 target: str | None = None) -> None:
    assert (exc.value.status, exc.value.code, exc.value.message, exc.value.target) == (status, code, message, target)


async def test_users_are_acs_users_of_this_resource(service: IdentityService) -> None:
    resource = await service.resource_id()
    first, token = await service.create_user()
    second, _ = await service.create_user()
    assert token is None
    assert first.raw_id != second.raw_id
    for user in (first, second):
        prefix, _, user_part = user.raw_id.partition("_")
        assert prefix == f"8:acs:{resource}"
        assert USER_PART.fullmatch(user_part)
        ids.check_participant_id(user.raw_id)  # rooms accept them


async def test_configured_resource_id_is_used(store: SqliteStore, clock: FixedClock) -> None:
    service = IdentityService(store, clock, resource_id=RESOURCE.upper())
    user, _ = await service.create_user()
    assert user.raw_id.startswith(f"8:acs:{RESOURCE}_")


async def test_create_with_scopes_issues_a_token_valid_for_a_day(service: IdentityService) -> None:
    user, token = await service.create_user(["voip", "chat"])
    assert token is not None
    assert token.expires_at == (START // TICKS_PER_SECOND) * TICKS_PER_SECOND + DEFAULT_TOKEN_MINUTES * MINUTE
    verified = await service.verify_token(token.token)
    assert (verified.raw_id, verified.scopes, verified.issued_at) == (user.raw_id, ("voip", "chat"), START)


@pytest.mark.parametrize("minutes", [60, 61, 1439, 1440])
async def test_token_lifetime_within_bounds(service: IdentityService, minutes: int) -> None:
    user, _ = await service.create_user()
    token = await service.issue_token(user.raw_id, ["chat"], minutes)
    assert token.expires_at == (START // TICKS_PER_SECOND) * TICKS_PER_SECOND + minutes * MINUTE


@pytest.mark.parametrize("minutes", [-1, 0, 59, 1441, 100_000])
async def test_token_lifetime_out_of_bounds(service: IdentityService, minutes: int) -> None:
    user, _ = await service.create_user()
    message = f"ExpiresInMinutes value {minutes} is invalid. Value must be within the [60, 1440] interval."
    with pytest.raises(ServiceError) as exc:
        await service.issue_token(user.raw_id, ["chat"], minutes)
    assert_error(exc, 400, "ValidationError", message, "ExpiresInMinutes")
    with pytest.raises(ServiceError) as exc:
        await service.create_user(["chat"], minutes)
    assert_error(exc, 400, "ValidationError", message, "ExpiresInMinutes")


async def test_scopes_are_required_known_and_not_empty(service: IdentityService) -> None:
    user, _ = await service.create_user()
    with pytest.raises(ServiceError) as exc:
        await service.issue_token(user.raw_id, None)
    assert_error(exc, 400, "ValidationError", "Scopes: The Scopes field is required.", "Scopes")
    with pytest.raises(ServiceError) as exc:
        await service.issue_token(user.raw_id, [])
    assert_error(exc, 400, "ValidationError", "Invalid scopes - Scopes field is required.", "scopes")
    with pytest.raises(ServiceError) as exc:
        await service.issue_token(user.raw_id, ["chat", "telepathy"])
    assert_error(
        exc, 400, "ValidationError",
        "Scopes: 'telepathy' is not a valid scope. Valid scopes: chat, voip, chat.join, chat.join.limited, voip.join.",
        "Scopes",
    )
    with pytest.raises(ServiceError) as exc:
        await service.create_user(["x", "y"])
    assert exc.value.target == "CreateTokenWithScopes"
    assert exc.value.message.startswith("CreateTokenWithScopes: 'x', 'y' are not valid scopes.")


async def test_refused_create_creates_no_user(service: IdentityService, store: SqliteStore) -> None:
    with pytest.raises(ServiceError):
        await service.create_user(["telepathy"])
    rows = await store._read(lambda db: db.execute("SELECT count(*) FROM identities").fetchone())
    assert rows == (0,)


async def test_unknown_and_malformed_users(service: IdentityService) -> None:
    resource = await service.resource_id()
    unknown = f"8:acs:{resource}_00000005-14a2-493b-8a72-5a3a0d000081"
    for operation in (service.delete_user, service.revoke_tokens):
        with pytest.raises(ServiceError) as exc:
            await operation(unknown)
        assert (exc.value.status, exc.value.code) == (404, "IdentityNotFound")
        with pytest.raises(ServiceError) as exc:
            await operation("8:acs:not-a-user")
        assert (exc.value.status, exc.value.target) == (400, "id")
    with pytest.raises(ServiceError) as exc:
        await service.issue_token(unknown, ["chat"])
    assert exc.value.status == 404
    with pytest.raises(ServiceError) as exc:
        await service.issue_token("4:+14255550123", ["chat"])
    assert exc.value.status == 400


async def test_tokens_expire(service: IdentityService, clock: FixedClock) -> None:
    user, _ = await service.create_user()
    token = await service.issue_token(user.raw_id, ["chat"], 60)
    clock.advance(token.expires_at - clock.now() - 1)
    await service.verify_token(token.token)
    clock.advance(1)
    with pytest.raises(ServiceError) as exc:
        await service.verify_token(token.token)
    assert_error(exc, 401, "InvalidAccessToken", "The access token is not valid: it has expired.")


async def test_revoke_stops_tokens_issued_before_it_only(service: IdentityService, clock: FixedClock) -> None:
    user, _ = await service.create_user()
    other, _ = await service.create_user()
    before = await service.issue_token(user.raw_id, ["chat"])
    others = await service.issue_token(other.raw_id, ["chat"])
    clock.advance(1)
    same_tick = await service.issue_token(user.raw_id, ["chat"])
    await service.revoke_tokens(user.raw_id)
    for revoked in (before, same_tick):  # at the revoke's own tick too: when in doubt, refuse
        with pytest.raises(ServiceError) as exc:
            await service.verify_token(revoked.token)
        assert_error(exc, 401, "InvalidAccessToken", "The access token is not valid: it was revoked.")
    await service.verify_token(others.token)
    clock.advance(1)  # one tick later: revocation is exact to the tick, not to the second
    after = await service.issue_token(user.raw_id, ["voip"])
    assert (await service.verify_token(after.token)).scopes == ("voip",)


async def test_revocation_instant_never_moves_back(service: IdentityService, clock: FixedClock) -> None:
    user, _ = await service.create_user()
    clock.advance(MINUTE)
    token = await service.issue_token(user.raw_id, ["chat"])
    clock.advance(1)
    await service.revoke_tokens(user.raw_id)
    clock.advance(-MINUTE)  # an instance whose clock lags revokes again
    await service.revoke_tokens(user.raw_id)
    clock.advance(MINUTE)
    with pytest.raises(ServiceError):
        await service.verify_token(token.token)


async def test_delete_stops_tokens_and_leaves_every_room(
    service: IdentityService, store: SqliteStore, clock: FixedClock
) -> None:
    rooms = RoomsService(store, clock)
    user, token = await service.create_user(["voip"])
    stays, _ = await service.create_user()
    assert token is not None
    room_ids = []
    for _ in range(2):
        created = await rooms.rooms_create(
            CreateRoom(participants={user.raw_id: "Presenter", stays.raw_id: None}),
            list(Role),
        )
        room_ids.append(created.room_id)
    await service.delete_user(user.raw_id)
    for room_id in room_ids:
        roster = (await rooms.participants_list(room_id)).items
        assert [(p.raw_id, p.role) for p in roster] == [(stays.raw_id, Role.ATTENDEE)]
    with pytest.raises(ServiceError) as exc:
        await service.verify_token(token.token)
    assert_error(exc, 401, "InvalidAccessToken", "The access token is not valid: its user was deleted.")
    with pytest.raises(ServiceError) as exc:
        await service.delete_user(user.raw_id)
    assert exc.value.status == 404


async def test_tokens_of_another_server_or_tampered_do_not_verify(service: IdentityService, clock: FixedClock) -> None:
    foreign_store = SqliteStore.open(None)
    try:
        foreign = IdentityService(foreign_store, clock)
        _, token = await foreign.create_user(["chat"])
        assert token is not None
        with pytest.raises(ServiceError) as exc:
            await service.verify_token(token.token)
        assert exc.value.message == "The access token is not valid: it was not signed by this server."
    finally:
        await foreign_store.close()
    _, own = await service.create_user(["chat"])
    assert own is not None
    header, payload, signature = own.token.split(".")
    with pytest.raises(ServiceError) as exc:
        await service.verify_token(f"{header}.{payload}.{signature[::-1]}")
    assert exc.value.message == "The access token is not valid: the token signature is not valid."
    with pytest.raises(ServiceError) as exc:
        await service.verify_token("not a token")
    assert exc.value.status == 401


async def test_instances_sharing_a_database_share_resource_id_and_keys(tmp_path: Path, clock: FixedClock) -> None:
    path = tmp_path / "openrooms.db"
    first_store, second_store = SqliteStore.open(path), SqliteStore.open(path)
    try:
        first, second = IdentityService(first_store, clock), IdentityService(second_store, clock)
        user, token = await first.create_user(["chat"])
        assert token is not None
        assert (await second.verify_token(token.token)).raw_id == user.raw_id
        assert await second.resource_id() == await first.resource_id()
        assert await first.jwks() == await second.jwks()
        await second.revoke_tokens(user.raw_id)
        with pytest.raises(ServiceError):
            await first.verify_token(token.token)
        resource = await first.resource_id()
    finally:
        await first_store.close()
        await second_store.close()
    reopened = SqliteStore.open(path)
    try:
        again = IdentityService(reopened, clock)
        assert await again.resource_id() == resource
        later, _ = await again.create_user()
        assert later.raw_id.startswith(f"8:acs:{resource}_")
    finally:
        await reopened.close()


async def test_jwks_publishes_the_signing_key_before_any_token(service: IdentityService) -> None:
    jwks = await service.jwks()
    assert [key["kty"] for key in jwks["keys"]] == ["RSA"]
    _, token = await service.create_user(["chat"])
    assert token is not None
    assert await service.jwks() == jwks


async def test_teams_token_exchange_is_refused(service: IdentityService) -> None:
    with pytest.raises(ServiceError) as exc:
        service.exchange_teams_token()
    assert (exc.value.status, exc.value.code) == (501, "NotSupported")
    assert "Teams token exchange is not available in openrooms" in exc.value.message
