"""Group commit for SQLite: concurrent write transactions share one COMMIT, and so one fsync.

With `synchronous=FULL` every COMMIT waits for an fsync. Done on the event loop, that wait would stall every
request of the process; done one transaction at a time, it caps writes at one fsync each. So each write
transaction (a function of the connection) is queued, and one flush at a time takes everything queued:

1. a helper thread takes the write lock: `BEGIN IMMEDIATE`, which may have to wait for another process;
2. the event loop runs each transaction in its own SAVEPOINT (the statements are quick: pages in memory);
3. the helper thread COMMITs: the fsync, while the event loop goes on serving (reads have their own
   connection, and new writes queue up for the next flush);
   then the `before_commit` step, still in the group's transaction (the SQLite store writes the group's
   events there, with one statement);
4. the `after_commit` step runs while the write lock is still held, told whether the COMMIT succeeded (the
   SQLite store bumps its change counters there and moves its kept reads forward, see `changes`);
5. only then does each transaction's caller get its result or its exception: nothing is acknowledged before
   it is durable.

The statements run on the event loop's own thread rather than on a writer thread: a writer thread would have
to win Python's GIL back from the busy event loop after every statement, and spent most of its time waiting
for it. A transaction that raises is rolled back to its savepoint alone. If the database itself fails (disk full,
read-only, locked too long), the whole batch is rolled back and every transaction in it fails with
`StoreUnavailable`.

Several worker processes share one database file, and SQLite lets one of them write at a time. A writer that
finds the database locked would wait in SQLite's busy handler, which sleeps 1, 2, 5, 10... ms between tries
however soon the lock is free. So the writers of all processes first take an exclusive `flock` on a lock file
next to the database: the kernel wakes the next writer the moment the lock is released, and while it waits
its queue fills, so that it commits a bigger batch in turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from openrooms.store.protocol import StoreUnavailable

T = TypeVar("T")
Transaction = Callable[[sqlite3.Connection], Any]
_Job = tuple[Transaction, asyncio.Future[Any]]
_Outcome = tuple[Any, BaseException | None]
MAX_BATCH = 256


class GroupCommitWriter:
    def __init__(self, connection: sqlite3.Connection, lock_path: Path | None = None, *,
                 inline: bool = False) -> None:
        self._db = connection
        # A background process (the webhook delivery process) writes `inline`: BEGIN, its transactions and COMMIT
        # in one go on its event loop, blocking it, so that it holds the write lock, which the serving processes
        # wait for, only as long as the writing itself takes, and not while its busy loop gets round to the next
        # step (a process serving requests could not afford to block its loop; one that delivers webhooks can).
        self._inline = inline
        self._lock_fd = _open_lock(lock_path) if lock_path is not None else None
        # BEGIN and COMMIT, the two steps that may wait (for another process, for the disk), run here.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="openrooms-sqlite-commit")
        self._queue: list[_Job] = []
        self._flushing: asyncio.Task[None] | None = None
        # Called after each group's COMMIT (True) or its failure (False) while this process still holds the write
        # lock.
        self.after_commit: Callable[[bool], None] | None = None
        # Called after the group's transactions, before its COMMIT, in the group's transaction (the SQLite store
        # writes the group's events there); if it raises, the whole group fails.
        self.before_commit: Callable[[sqlite3.Connection], None] | None = None

    @property
    def locks_across_processes(self) -> bool:
        """Whether writers of other processes take turns with this one through the lock file."""
        return self._lock_fd is not None

    async def run(self, transaction: Callable[[sqlite3.Connection], T]) -> T:
        """Run `transaction` in the next group commit; return once it is committed (or raise its error)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append((transaction, future))
        if self._flushing is None:
            self._flushing = loop.create_task(self._flush())
        return await future

    async def close(self) -> None:
        if self._flushing is not None and not self._flushing.done():
            await asyncio.shield(self._flushing)
        self._thread.shutdown()
        self._db.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                try:
                    outcomes = await self._commit(batch)
                except Exception as exc:  # every waiting request must get an answer
                    failure = StoreUnavailable(str(exc)) if isinstance(exc, sqlite3.Error) else exc
                    outcomes = [(None, failure)] * len(batch)
                for (_, future), (result, error) in zip(batch, outcomes, strict=True):
                    _settle(future, result, error)
        finally:
            self._flushing = None

    async def _commit(self, batch: list[_Job]) -> list[_Outcome]:
        """One group: BEGIN, each transaction in its savepoint, `before_commit`, COMMIT. BEGIN and COMMIT, which
        may wait, run on the helper thread, or on the loop itself for an `inline` writer."""
        step = self._here if self._inline else self._on_thread
        await step(self._begin)
        committed = False
        try:
            outcomes = self._transact(batch)
            if self.before_commit is not None:
                self.before_commit(self._db)
            await step(self._db.execute, "COMMIT")
            committed = True
        except BaseException:
            # A transaction left open would make every later BEGIN fail: roll back, so the store recovers by
            # itself once the disk or the lock does.
            if self._db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            raise
        finally:
            if self.after_commit is not None:
                self.after_commit(committed)
            self._unlock()
        return outcomes

    async def _on_thread(self, step: Callable[..., Any], *args: Any) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, step, *args)

    async def _here(self, step: Callable[..., Any], *args: Any) -> None:
        step(*args)  # the loop waits: no other task runs between BEGIN and COMMIT

    def _begin(self) -> None:
        """This process's turn among all processes writing the database, then SQLite's write lock."""
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._unlock()
            raise

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _transact(self, batch: list[_Job]) -> list[_Outcome]:
        db = self._db
        outcomes: list[_Outcome] = []
        for transaction, _ in batch:
            db.execute("SAVEPOINT job")
            try:
                result = transaction(db)
            except Exception as exc:
                if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.IntegrityError):
                    raise  # the database failed, not this transaction: the whole batch goes
                db.execute("ROLLBACK TO job")
                db.execute("RELEASE job")
                outcomes.append((None, exc))
            else:
                db.execute("RELEASE job")
                outcomes.append((result, None))
        return outcomes


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():  # the request went away; its transaction still happened (or did not) as decided
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


def _open_lock(path: Path) -> int | None:
    """The lock file's descriptor; None where it cannot be had (a read-only location: SQLite's own locking,
    with its busy handler, still keeps writers apart)."""
    for flags in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):
        with contextlib.suppress(OSError):
            return os.open(path, flags | os.O_CLOEXEC, 0o600)
    return None
