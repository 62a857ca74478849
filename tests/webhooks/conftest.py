"""The store fixtures of tests/store: each webhook test runs on SQLite and on PostgreSQL. A webhook test fails when
the dispatcher logged an error: a dispatcher that fails and tries again still delivers, late, and would pass."""

from collections.abc import Iterator

import pytest

from tests.store.conftest import open_store, postgres_url, store

__all__ = ["open_store", "postgres_url", "store"]


@pytest.fixture(autouse=True)
def no_dispatcher_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    yield
    errors = [r for r in caplog.get_records("call") if r.name.startswith("openrooms") and r.levelname == "ERROR"]
    assert not errors, "logged: " + "; ".join(r.getMessage() + (f" ({r.exc_info[1]!r})" if r.exc_info else "")
                                              for r in errors)
