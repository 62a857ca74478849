"""IdentityService.issue_teams_user_token: the ACS token of a Teams user, expiring with its Entra ID token."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from openrooms.service import errors, tokens
from openrooms.service.clock import TICKS_PER_SECOND, FixedClock
from openrooms.service.identity import IdentityService
from openrooms.store.sqlite import SqliteStore

NOW = 1_900_000_000 * TICKS_PER_SECOND


@pytest.fixture
async def service() -> AsyncIterator[IdentityService]:
    store = SqliteStore.open(None)
    yield IdentityService(store, FixedClock(NOW))
    await store.close()


async def test_the_token_is_the_teams_users_and_expires_with_the_entra_token(service: IdentityService) -> None:
    token = await service.issue_teams_user_token("oid-1", NOW + 3600 * TICKS_PER_SECOND + 123)
    assert token.expires_at == NOW + 3600 * TICKS_PER_SECOND  # a whole second, as `exp`
    key = await service._active_key()
    claims = tokens.verified_claims(token.token, key)
    assert claims.raw_id == "8:orgid:oid-1"
    assert claims.scopes == ("voip", "chat")


@pytest.mark.parametrize(("object_id", "expires_at"), [("oid-1", NOW), ("", NOW + TICKS_PER_SECOND)])
async def test_an_expired_token_or_no_user_is_refused(service: IdentityService, object_id: str,
                                                      expires_at: int) -> None:
    with pytest.raises(errors.ServiceError) as raised:
        await service.issue_teams_user_token(object_id, expires_at)
    assert (raised.value.status, raised.value.code) == (401, "InvalidAccessToken")
