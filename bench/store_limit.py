"""The raw store limit for writes: how many durable single-row INSERT transactions SQLite does per second
on this disk, with the pragmas openrooms uses (WAL, synchronous=FULL)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

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
