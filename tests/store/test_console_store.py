"""The web console's sessions and failed sign-ins on both stores, through two stores on one database (two instances):
a session is read by its token's hash wherever it was written, and deleted everywhere; failures are counted in one
window per client that starts again once it has passed, concurrent ones all counted; the sweep deletes what has
expired and nothing else."""

from __future__ import annotations

import asyncio

from openrooms.service.ports import ConsoleSessionRecord
from tests.store.conftest import StoreFactory

NOW = 2_000_000_000
WINDOW = 60


def session(n: int, expires_at: int, key_id: str | None = "k" * 64) -> ConsoleSessionRecord:
    return ConsoleSessionRecord(f"{n:064x}", "access-key" if key_id else "oidc", f"principal {n}", key_id,
                                expires_at - 3600, expires_at)


async def test_a_session_is_shared_and_ended_everywhere(open_store: StoreFactory) -> None:
    one, other = open_store(), open_store()
    first, second = session(1, NOW + 3600), session(2, NOW + 3600, None)
    await one.insert_console_session(first)
    await other.insert_console_session(second)
    assert await other.get_console_session(first.token_hash) == first
    assert await one.get_console_session(second.token_hash) == second
    assert await one.get_console_session(session(3, NOW).token_hash) is None
    assert await other.delete_console_session(first.token_hash)
    assert await one.get_console_session(first.token_hash) is None
    assert not await one.delete_console_session(first.token_hash)
    assert await other.get_console_session(second.token_hash) == second


async def test_failures_count_in_one_window_per_client(open_store: StoreFactory) -> None:
    one, other = open_store(), open_store()
    assert await one.get_sign_in_failures("a") is None
    await one.add_sign_in_failure("a", NOW, WINDOW)
    await other.add_sign_in_failure("a", NOW + 10, WINDOW)
    await other.add_sign_in_failure("b", NOW + 20, WINDOW)
    assert await one.get_sign_in_failures("a") == (2, NOW)  # the window starts at the first failure
    assert await one.get_sign_in_failures("b") == (1, NOW + 20)
    await one.add_sign_in_failure("a", NOW + WINDOW - 1, WINDOW)
    assert await other.get_sign_in_failures("a") == (3, NOW)
    await other.add_sign_in_failure("a", NOW + WINDOW, WINDOW)  # the window has passed: a new one
    assert await one.get_sign_in_failures("a") == (1, NOW + WINDOW)
    await asyncio.gather(*(store.add_sign_in_failure("c", NOW, WINDOW) for store in (one, other) for _ in range(5)))
    assert await one.get_sign_in_failures("c") == (10, NOW)


async def test_the_sweep_deletes_only_what_has_expired(open_store: StoreFactory) -> None:
    one, other = open_store(), open_store()
    gone, kept = session(1, NOW), session(2, NOW + 1)
    for record in (gone, kept):
        await one.insert_console_session(record)
    await one.add_sign_in_failure("old", NOW - WINDOW, WINDOW)
    await one.add_sign_in_failure("recent", NOW - WINDOW + 1, WINDOW)
    assert await other.sweep_console(NOW, WINDOW) == (1, 1)
    assert await one.get_console_session(gone.token_hash) is None
    assert await one.get_console_session(kept.token_hash) == kept
    assert await one.get_sign_in_failures("old") is None
    assert await one.get_sign_in_failures("recent") == (1, NOW - WINDOW + 1)
    assert await one.sweep_console(NOW, WINDOW) == (0, 0)
