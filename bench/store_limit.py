"""The raw store limit for writes: how many durable single-row INSERT transactions the store does per second
on this machine, with the durability openrooms uses, and no HTTP or Python server in the way.

- SQLite: the pragmas openrooms sets (WAL, synchronous=FULL), one connection.
- PostgreSQL: the server's own settings, which openrooms leaves as they are (reported with the numbers), one
  connection and then as many at once as a worker's pool holds: PostgreSQL flushes the log of concurrent
  commits together, so the second number is the one a busy server can approach.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.preload import upgrade_schema


def _rate(db: sqlite3.Connection, statement: str, seconds: float, rows: int = 1) -> float:
    n, started = 0, time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        db.execute("BEGIN IMMEDIATE")
        for k in range(rows):
            db.execute(statement, (f"{n:017d}-{k}",))
        db.execute("COMMIT")
        n += 1
    return n / (time.perf_counter() - started)


def measure(location: Path, seconds: float = 2.0) -> dict[str, float]:
    db_path = upgrade_schema(location)
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("CREATE TABLE bench_rows (id TEXT PRIMARY KEY) WITHOUT ROWID")
    single = _rate(db, "INSERT INTO bench_rows (id) VALUES (?)", seconds)
    # the two inserts of a create (the id ledger and the room), one transaction, as the SQLite store does it
    create = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        room_id = f"{10**16 + create}"
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO room_ids (id) VALUES (?)", (room_id,))
        db.execute("INSERT INTO rooms (id, created_at, valid_from, valid_until, pstn_dial_out_enabled) "
                   "VALUES (?, 1, 1, 2, 0)", (room_id,))
        db.execute("COMMIT")
        create += 1
    create_rate = create / (time.perf_counter() - started)
    db.close()
    return {"single_row_insert_per_s": round(single, 1), "create_transaction_per_s": round(create_rate, 1)}


def measure_postgres(url: str, seconds: float = 2.0, connections: int = 10) -> dict[str, Any]:
    """On the migrated database at `url`: tables shaped as openrooms' own (`LIKE ... INCLUDING ALL`) in a schema
    of their own, dropped afterwards, so that the rows never reach the rooms the server lists."""
    import psycopg

    schema = f"openrooms_store_limit_{os.getpid()}"
    with psycopg.connect(url, autocommit=True) as admin:
        settings = {name: admin.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
                    for name in ("synchronous_commit", "fsync", "wal_sync_method")}
        admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            admin.execute(f"CREATE TABLE {schema}.rows (id text PRIMARY KEY)")
            for table in ("room_ids", "rooms"):  # openrooms' tables, wherever `url`'s search path finds them
                admin.execute(f"CREATE TABLE {schema}.{table} (LIKE {table} INCLUDING ALL)")
            rates = [_pg_rate(url, schema, seconds, n, write) for n in (1, connections)
                     for write in (_pg_single, _pg_create)]
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
    single, create, single_many, create_many = rates
    return {
        "single_row_insert_per_s": round(single, 1), "create_transaction_per_s": round(create, 1),
        "connections": connections, "single_row_insert_per_s_concurrent": round(single_many, 1),
        "create_transaction_per_s_concurrent": round(create_many, 1), "settings": settings,
    }


_RUNS = itertools.count(1)


def _pg_single(db: Any, key: str) -> None:
    with db.transaction():
        db.execute("INSERT INTO rows (id) VALUES (%s)", (key,))


def _pg_create(db: Any, key: str) -> None:
    # the two inserts of a create as the PostgreSQL store does them: the id ledger, then the room
    with db.transaction():
        db.execute("INSERT INTO room_ids (id) VALUES (%s) ON CONFLICT DO NOTHING", (key,))
        db.execute("INSERT INTO rooms (id, created_at, valid_from, valid_until, pstn_dial_out_enabled) "
                   "VALUES (%s, 1, 1, 2, false)", (key,))


def _pg_rate(url: str, schema: str, seconds: float, connections: int, write: Callable[[Any, str], None]) -> float:
    """Transactions per second of `connections` connections writing at once into `schema`, each in a thread of its
    own (psycopg lets go of the GIL while it waits on the server)."""
    import psycopg

    run_number = next(_RUNS)
    counts = [0] * connections
    failures: list[BaseException] = []
    start = threading.Barrier(connections + 1)

    def run(slot: int) -> None:
        try:
            with psycopg.connect(url, autocommit=True, options=f"-c search_path={schema}") as db:
                start.wait()
                deadline = time.perf_counter() + seconds
                while time.perf_counter() < deadline:
                    write(db, f"{run_number:02d}{slot:03d}{counts[slot]:010d}")  # distinct across runs and slots
                    counts[slot] += 1
        except BaseException as exc:
            failures.append(exc)
            start.abort()

    threads = [threading.Thread(target=run, args=(slot,)) for slot in range(connections)]
    for thread in threads:
        thread.start()
    with contextlib.suppress(threading.BrokenBarrierError):  # a connection failed: its error is raised below
        start.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"the PostgreSQL store limit could not be measured: {failures[0]}") from failures[0]
    return sum(counts) / (time.perf_counter() - started)
