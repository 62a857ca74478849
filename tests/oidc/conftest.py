from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.oidc.issuer import Issuer


@pytest.fixture
async def issuer() -> AsyncIterator[Issuer]:
    async with Issuer().serving() as serving:
        yield serving
