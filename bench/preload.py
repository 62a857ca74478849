"""The fast bulk path: rooms and roster entries written straight into the SQLite schema that
`openrooms db upgrade --location DIR` creates. It BYPASSES THE API (no validation, no idempotency records);
it exists only to give the benchmarks a large database in minutes rather than hours.

    python -m bench.preload --location DIR --rooms 1000000 --participants 10000000
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from bench.wire import user_id
from openrooms.service.ids import room_id_made_at

TICKS_PER_SECOND = 10_000_000
TICKS_PER_DAY = 86_400 * TICKS_PER_SECOND
MAX_WINDOW = 180 * TICKS_PER_DAY
CREATED_SPAN = 30 * TICKS_PER_DAY
USERS = 200_000  # roster entries are drawn from this many distinct users
# Indexes that are dropped for the load and rebuilt after it (rebuilding sorts once: much faster than
# keeping them up to date row by row).
_REBUILT_INDEXES = ("rooms_by_created", "rooms_by_valid_until", "rooms_by_valid_from",
                    "participants_rooms_by_valid_from", "participants_by_seq")
HOUR = 3600 * TICKS_PER_SECOND
_BATCH = 50_000
_ROOM_COLUMNS = "id, created_at, valid_from, valid_until, pstn_dial_out_enabled"
# A roster entry with its copy of the room (migration 0014)
_ROSTER_COLUMNS = "room_id, raw_id, role, seq, created_at, valid_from, valid_until, pstn_dial_out_enabled"


def rooms_made(count: int, seed: int, now: int) -> list[tuple[str, int]]:
    """`count` rooms as (id, created_at), made over the 30 days before `now` (ticks), oldest first.

    As in a database the API filled: each id is made from its room's creation time as the server makes it (see
    `new_room_id`), and the rows go in in the order of creation, so that a table's rows, its ids and the room list's
    order agree. (Rooms made in random order would put every next room of a list scan on another page of the table,
    a layout no server writes.)"""
    rng = random.Random(seed)
    made = sorted(now - rng.randrange(CREATED_SPAN) for _ in range(count))
    ids: set[str] = set()
    rooms: list[tuple[str, int]] = []
    for created in made:
        made_ns = created * 100  # ticks of 100 ns
        room_id = room_id_made_at(made_ns, rng.randrange(100_000))
        while room_id in ids:  # rooms made in the same 10 ms: the server would draw again too
            room_id = room_id_made_at(made_ns, rng.randrange(100_000))
        ids.add(room_id)
        rooms.append((room_id, created))
    return rooms


def upgrade_schema(location: Path) -> Path:
    openrooms = Path(sys.executable).with_name("openrooms")
    subprocess.run([str(openrooms), "db", "upgrade", "--location", str(location)], check=True,
                   capture_output=True)
    return location / "openrooms.db"


def mixed_window(created: int, rng: random.Random) -> tuple[int, int]:
    """A window as scheduled meetings and standing rooms make them: half start when made (the default), half up to
    two weeks later; half last 30 minutes to a day, half the default 180 days. Of rooms made over the last 30 days,
    about 12% are upcoming now, 45% open and 43% ended."""
    start = created if rng.random() < 0.5 else created + rng.randrange(14 * TICKS_PER_DAY)
    length = MAX_WINDOW if rng.random() < 0.5 else rng.randrange(HOUR // 2, TICKS_PER_DAY)
    return start, start + length


def preload(location: Path, rooms: int, participants: int, *, seed: int = 1, quiet: bool = False,
            mixed_windows: bool = False) -> list[str]:
    """Fill a fresh database at `location` with `rooms` rooms (created over the last 30 days, valid for
    180 days from creation; with `mixed_windows`, windows of `mixed_window`) and `participants` roster entries
    spread evenly over them. Returns the ids."""
    path = upgrade_schema(location)
    made = rooms_made(rooms, seed, time.time_ns() // 100)
    windows = random.Random(seed + 1)
    ids = [room_id for room_id, _ in made]
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -262144;")
    if db.execute("SELECT count(*) FROM rooms").fetchone()[0]:
        raise RuntimeError(f"{path} already has rooms: preload needs a fresh location")
    index_sql = [row[0] for row in db.execute(
        f"SELECT sql FROM sqlite_master WHERE type = 'index' AND name IN ({','.join('?' * len(_REBUILT_INDEXES))})",
        _REBUILT_INDEXES)]
    for name in _REBUILT_INDEXES:
        db.execute(f"DROP INDEX IF EXISTS {name}")

    per_room, extra = divmod(participants, rooms) if rooms else (0, 0)

    rows_of_rooms: list[tuple[str, int, int, int, int]] = []
    for room_id, created in made:
        start, end = mixed_window(created, windows) if mixed_windows else (created, created + MAX_WINDOW)
        rows_of_rooms.append((room_id, created, start, end, 0))

    def roster_rows() -> Iterator[tuple[str, str, str, int, int, int, int, int]]:
        for n, (room_id, created, start, end, pstn) in enumerate(rows_of_rooms):
            size = per_room + (1 if n < extra else 0)
            first = (n * 7919) % USERS
            users = sorted(user_id((first + k * 9973) % USERS) for k in range(size))
            for seq, raw_id in enumerate(users, 1):  # added in raw id order, each with its copy of the room
                yield room_id, raw_id, "Attendee", seq, created, start, end, pstn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), disable=quiet) as progress:
        for table, sql, rows, total in (
            ("room_ids", "INSERT INTO room_ids (id) VALUES (?)", ((i,) for i in ids), rooms),
            ("rooms", f"INSERT INTO rooms ({_ROOM_COLUMNS}) VALUES (?, ?, ?, ?, ?)", iter(rows_of_rooms), rooms),
            ("participants", f"INSERT INTO participants ({_ROSTER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
             roster_rows(), participants),
        ):
            task = progress.add_task(f"{table:<13}", total=total)
            db.execute("BEGIN")
            batch: list[tuple[object, ...]] = []
            for row in rows:
                batch.append(row)
                if len(batch) == _BATCH:
                    db.executemany(sql, batch)
                    progress.advance(task, len(batch))
                    batch.clear()
            db.executemany(sql, batch)
            progress.advance(task, len(batch))
            db.execute("COMMIT")
        task = progress.add_task("indexes      ", total=len(index_sql))
        for sql in index_sql:
            db.execute(sql)
            progress.advance(task)
    db.execute("ANALYZE")
    db.execute("PRAGMA journal_mode = WAL")  # as the server keeps it
    db.close()
    return ids


# The tables the preload fills, with their columns, in the order they are copied (and the order of their rows).
_COPIED = (("room_ids", "id", "id"), ("rooms", _ROOM_COLUMNS, "rowid"),
           ("participants", _ROSTER_COLUMNS, "room_id, raw_id"))


def copy_to_postgres(location: Path, url: str, *, quiet: bool = False) -> None:
    """The database preloaded at `location`, copied into the migrated, empty PostgreSQL database at `url`: COPY
    with the secondary indexes dropped and rebuilt after (as the preload does), then VACUUM ANALYZE, as a database
    long in service would have been (statistics, and the visibility map that index-only scans read)."""
    import psycopg

    source = sqlite3.connect(location / "openrooms.db")
    with psycopg.connect(url, autocommit=True) as db, Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            disable=quiet) as progress:
        indexes = db.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
            "AND tablename IN ('rooms', 'participants') AND indexname NOT LIKE '%%_pkey'").fetchall()
        for name, _ in indexes:
            db.execute(f"DROP INDEX {name}")
        # Neither a foreign-key check nor a change notification (migration 0007's triggers) per row.
        db.execute("SET session_replication_role = replica")
        db.execute("SET maintenance_work_mem = '1GB'")
        for table, columns, order in _COPIED:
            total = source.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            task = progress.add_task(f"{table:<13}", total=total)
            with db.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for n, row in enumerate(source.execute(f"SELECT {columns} FROM {table} ORDER BY {order}"), 1):
                    copy.write_row(row if table == "room_ids" else (*row[:-1], bool(row[-1])))  # pstn last
                    if n % _BATCH == 0:
                        progress.advance(task, _BATCH)
        for _, definition in indexes:
            db.execute(definition)
        db.execute(f"VACUUM ANALYZE {', '.join(table for table, _, _ in _COPIED)}")
    source.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--location", type=Path, required=True, help="a new folder (as `serve --location`)")
    parser.add_argument("--rooms", type=int, default=1_000_000)
    parser.add_argument("--participants", type=int, default=10_000_000)
    args = parser.parse_args()
    started = time.monotonic()
    preload(args.location, args.rooms, args.participants)
    print(f"{args.rooms} rooms and {args.participants} roster entries in {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    main()
