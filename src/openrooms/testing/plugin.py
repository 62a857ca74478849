"""The pytest plugin (entry point `pytest11`): the `openrooms` fixtures. Loaded by pytest only; it starts nothing
until a test asks for one of its fixtures.

- `openrooms`: one emulator for the whole session (rooms and users made by one test are seen by the next);
- `openrooms_fresh`: an emulator of the test's own, started clean and stopped after it. With
  `@pytest.mark.openrooms(clock=datetime(2030, 1, 1, tzinfo=UTC))` (or `clock=True`: the time at start) its
  clock is fixed, and `openrooms_fresh.clock` moves it; any other keyword of the mark is a setting
  (e.g. `page_size=5`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from openrooms.testing import Emulator

MARK = "openrooms"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARK}(clock=None, **settings): options of the `openrooms_fresh` emulator: a fixed clock (a datetime, "
        "or True for the time at start) and settings such as page_size",
    )


def _start(**options: Any) -> Emulator:
    from openrooms.testing import Emulator

    return Emulator(**options).start()


@pytest.fixture(scope="session")
def openrooms() -> Iterator[Emulator]:
    """openrooms in memory over HTTPS on a free port, shared by the session: `.endpoint`, `.connection_string`,
    `.ca`, and the official SDK's clients from `.rooms_client()`, `.async_rooms_client()`, `.identity_client()`
    and `.async_identity_client()`."""
    emulator = _start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def openrooms_fresh(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    """Like `openrooms`, started clean for this test alone; `@pytest.mark.openrooms(clock=...)` fixes its clock."""
    options: dict[str, Any] = {}
    for mark in reversed(list(request.node.iter_markers(MARK))):  # the closest mark wins
        options.update(mark.kwargs)
    emulator = _start(**options)
    try:
        yield emulator
    finally:
        emulator.stop()
