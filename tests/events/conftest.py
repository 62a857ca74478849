"""A test of tests/events fails when an `openrooms` logger logged an ERROR during it (see `no_openrooms_errors`)."""

from collections.abc import Iterator

import pytest

from tests import support


@pytest.fixture(autouse=True)
def no_openrooms_errors(request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    with support.no_openrooms_errors(request, caplog):
        yield
