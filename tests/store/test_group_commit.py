"""The SQLite group-commit writer: transactions of one batch share a COMMIT, and one that fails leaves no trace;
alike when it writes inline (BEGIN to COMMIT in one go on the event loop, as the webhook delivery process does)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from openrooms.store.protocol import StoreUnavailable
from openrooms.store.writer import GroupCommitWriter


class Refused(Exception):
    pass


@pytest.fixture(params=[False, True], ids=["threaded", "inline"])
def inline(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def writer_on(path: Path, inline: bool = False) -> GroupCommitWriter:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)")
    return GroupCommitWriter(db, path.with_name("lock"), inline=inline)


def stored(path: Path) -> list[int]:
    with sqlite3.connect(path) as db:
        return [n for (n,) in db.execute("SELECT n FROM t ORDER BY n")]


@pytest.mark.parametrize("failing", [set(), {0}, {3}, {7}, {1, 2, 5}, set(range(8))])
async def test_a_failing_transaction_leaves_no_trace_and_the_rest_of_its_batch_is_kept(
    tmp_path: Path, failing: set[int], inline: bool
) -> None:
    path = tmp_path / "db"
    writer = writer_on(path, inline)
    runs: Counter[int] = Counter()

    def insert(n: int) -> Callable[[sqlite3.Connection], int]:
        def transaction(db: sqlite3.Connection) -> int:
            runs[n] += 1
            db.execute("INSERT INTO t (n) VALUES (?)", (n,))
            db.execute("INSERT INTO t (n) VALUES (?)", (100 + n,))
            if n in failing:
                raise Refused(n)  # after its statements: they must be undone
            return n

        return transaction

    try:
        results = await asyncio.gather(*(writer.run(insert(n)) for n in range(8)), return_exceptions=True)
    finally:
        await writer.close()
    for n, result in enumerate(results):
        assert isinstance(result, Refused) if n in failing else result == n
    kept = [n for n in range(8) if n not in failing]
    assert stored(path) == kept + [100 + n for n in kept]
    assert set(runs.values()) == {1}  # each ran once, whatever failed


async def test_a_constraint_violation_fails_only_its_transaction(tmp_path: Path, inline: bool) -> None:
    path = tmp_path / "db"
    writer = writer_on(path, inline)
    try:
        first, clash, last = await asyncio.gather(
            writer.run(lambda db: db.execute("INSERT INTO t (n) VALUES (1)").rowcount),
            writer.run(lambda db: db.execute("INSERT INTO t (n) VALUES (1)").rowcount),
            writer.run(lambda db: db.execute("INSERT INTO t (n) VALUES (2)").rowcount),
            return_exceptions=True,
        )
    finally:
        await writer.close()
    assert (first, last) == (1, 1)
    assert isinstance(clash, sqlite3.IntegrityError)
    assert stored(path) == [1, 2]


async def test_a_failing_database_fails_the_whole_batch(tmp_path: Path, inline: bool) -> None:
    path = tmp_path / "db"
    writer = writer_on(path, inline)
    try:
        results = await asyncio.gather(
            writer.run(lambda db: db.execute("INSERT INTO t (n) VALUES (1)").rowcount),
            writer.run(lambda db: db.execute("INSERT INTO missing (n) VALUES (1)")),
            return_exceptions=True,
        )
        assert all(isinstance(result, StoreUnavailable) for result in results)
        assert await writer.run(lambda db: db.execute("INSERT INTO t (n) VALUES (2)").rowcount) == 1  # recovered
    finally:
        await writer.close()
    assert stored(path) == [2]


async def test_a_writer_that_does_not_take_turns_is_waited_for_off_the_event_loop(tmp_path: Path) -> None:
    # The sqlite3 shell, say: it holds SQLite's write lock without the lock file. The group commit waits for it
    # (up to the connection's busy timeout, here 30 s), but on its helper thread: the event loop goes on serving.
    path = tmp_path / "db"
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)")
    writer = GroupCommitWriter(db, path.with_name("lock"))
    foreign = sqlite3.connect(path, isolation_level=None)
    foreign.execute("BEGIN IMMEDIATE")
    try:
        write = asyncio.create_task(writer.run(lambda db: db.execute("INSERT INTO t (n) VALUES (1)")))
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.sleep(0.2)
        assert loop.time() - started < 10  # not stalled for the busy timeout
        assert not write.done()  # still waiting for the lock
        foreign.execute("ROLLBACK")
        await write
        assert stored(path) == [1]
        await writer.run(lambda db: db.execute("INSERT INTO t (n) VALUES (2)"))  # and the next BEGIN, unlocked
        assert stored(path) == [1, 2]
    finally:
        foreign.close()
        await writer.close()
