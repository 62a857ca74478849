"""Group commit for SQLite: one thread owns the write connection and commits queued transactions together.

With `synchronous=FULL` every COMMIT waits for an fsync. Done on the event loop, that wait would stall every
request of the process; done one transaction at a time, it caps writes at one fsync each. Here the event loop
hands each write transaction (a function of the connection) to the writer thread and awaits it. The thread
takes everything queued, runs each transaction in its own SAVEPOINT inside one `BEGIN IMMEDIATE`, and COMMITs
once: one fsync for the whole batch. A transaction that raises is rolled back to its savepoint alone; its
exception, like every result, is delivered only after the COMMIT, so nothing is acknowledged before it is
durable. If the database itself fails (disk full, read-only, locked too long), the whole batch is rolled back and
every transaction in it fails with `StoreUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from openrooms.store.protocol import StoreUnavailable

T = TypeVar("T")
Transaction = Callable[[sqlite3.Connection], Any]
_Job = tuple[Transaction, asyncio.Future[Any], asyncio.AbstractEventLoop]
MAX_BATCH = 128


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():  # the request went away; its transaction still happened (or did not) as decided
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class GroupCommitWriter:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="openrooms-sqlite-writer", daemon=True)
        self._thread.start()

    async def run(self, transaction: Callable[[sqlite3.Connection], T]) -> T:
        """Run `transaction` in the writer thread; return once it is committed (or raise its error)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((transaction, future, loop))
        return await future

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join()
        self._db.close()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            batch = [job]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[_Job]) -> None:
        outcomes: list[tuple[Any, BaseException | None]] = []
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            for transaction, _, _ in batch:
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
            db.execute("COMMIT")
        except Exception as exc:  # never let the thread die: every waiting request must get an answer
            # A transaction left open would make every later BEGIN fail: roll back, so the store recovers
            # by itself once the disk or the lock does.
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            failure = StoreUnavailable(str(exc)) if isinstance(exc, sqlite3.Error) else exc
            outcomes = [(None, failure)] * len(batch)
        for (_, future, loop), (result, error) in zip(batch, outcomes, strict=True):
            loop.call_soon_threadsafe(_settle, future, result, error)
