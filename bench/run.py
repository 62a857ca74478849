"""Run the benchmark suite and write bench/results/report.md and report.json.

Every number is measured in the same run on the same machine: openrooms (whatever is on disk now) and a bare
ASGI baseline, both on granian with the same worker count, driven by wrk with pre-signed requests.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.markup import escape

from bench import inprocess, measure, preload, queries, report, store_limit, webhooks
from bench import migrate as migration
from bench.measure import LoadResult, RunningServer
from bench.wire import Client, write_pool
from bench.workloads import WORKLOADS, WRITES, Fixture, Pools, big_room, seed
from openrooms.config import event_loop

T = TypeVar("T")
REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
console = Console(stderr=True, width=170, log_path=False)


def scan_shape(times: Sequence[float]) -> dict[str, Any]:
    """How the time per page of a paged scan moves from its start to its end (times in seconds, page by page).

    A scan that is linear overall costs the same per page deep down as near the top. Two measures of that: the
    first and last tenth of the pages compared, which one slow moment at either end can tip; and the ends of the
    least-squares line through every page's time, which takes in the whole scan.
    """
    steady = list(times[1:] or times)  # the first page also pays for the connection and cold caches
    tenth = max(1, len(steady) // 10)
    first, last = sum(steady[:tenth]) / tenth, sum(steady[-tenth:]) / tenth
    if len(steady) > 1:
        slope, intercept = statistics.linear_regression(range(len(steady)), steady)
    else:
        slope, intercept = 0.0, statistics.fmean(steady)
    start, end = intercept, intercept + slope * (len(steady) - 1)
    return {
        "ms_per_page_first_10pct": round(first * 1000, 3), "ms_per_page_last_10pct": round(last * 1000, 3),
        "last_to_first_ratio": round(last / first, 3),
        "ms_per_page_fitted_start": round(start * 1000, 3), "ms_per_page_fitted_end": round(end * 1000, 3),
        "fitted_end_to_start_ratio": round(end / start, 3) if start > 0 else None,
        # the whole curve: a scan that is linear overall has flat tenths
        "ms_per_page_by_tenth": [round(sum(part) / len(part) * 1000, 3)
                                 for part in (steady[n * len(steady) // 10:(n + 1) * len(steady) // 10]
                                              for n in range(10)) if part],
    }


@dataclasses.dataclass
class Settings:
    seconds: float
    rounds: int
    warmup: float
    connections: int
    workloads: list[str]
    seed_rooms: int
    baseline: bool
    workers: list[int]
    postgres_url: str | None
    scale: bool
    scale_rooms: int
    scale_participants: int
    scan_seconds: float
    store_limit: bool
    work: Path
    migrate_rooms: int = 0  # `openrooms migrate from-acs` of this many rooms (0: not measured)
    query_rooms: int = 0  # the room queries' size without --scale (0: not measured)
    event_log: bool = True  # the event log's cost, in process (bench/inprocess.py, `event_log_ab`)
    call_joins: int = 0  # room calls (bench/calls.py): joins measured (0: not measured)
    call_capacity_max: int = 16
    webhooks: bool = True  # webhook delivery latency and throughput (bench/webhooks.py)


class Suite:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.runs: list[dict[str, Any]] = []
        self.sections: dict[str, Any] = {}
        self.planned = planned_runs(settings)  # for the progress shown with each run
        self.driven = 0
        self.started = time.monotonic()

    # -- servers --------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def openrooms(self, name: str, workers: int, database_url: str | None = None,
                  location: Path | None = None) -> Iterator[RunningServer]:
        port = measure.free_port()
        location = location or self.s.work / name
        command = measure.openrooms_command(port, location, workers, database_url)
        location.mkdir(parents=True, exist_ok=True)
        console.log(f"[bold]{name}[/]: openrooms serve --workers {workers}" + (" (PostgreSQL)" if database_url else ""))
        with measure.serve(command, port, self.s.work / f"{name}.log") as server:
            yield server

    @contextlib.contextmanager
    def baseline(self, workers: int) -> Iterator[RunningServer]:
        port = measure.free_port()
        with measure.serve(measure.baseline_command(port, workers), port, self.s.work / f"baseline-{workers}.log",
                           cwd=REPO) as server:
            yield server

    # -- load -----------------------------------------------------------------------------------------------
    def drive(self, server: RunningServer, pool: list[bytes], label: str, number: int = 1) -> LoadResult:
        path = write_pool(self.s.work / f"{label}.pool", pool)
        label += f" #{number}" if self.s.rounds > 1 else ""
        if self.s.warmup > 0:
            measure.run_wrk(server, path, seconds=self.s.warmup, connections=self.s.connections)
        result = measure.run_wrk(server, path, seconds=self.s.seconds, connections=self.s.connections)
        self.driven += 1
        console.log(f"{escape(self.progress().ljust(31))} {label:<44} {result.requests_per_second:>9.0f} req/s  "
                    f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  errors {result.errors}  "
                    f"server CPU {result.server_cpu_cores:.2f}  wrk CPU {result.generator_cpu_cores:.2f}  "
                    f"RSS {result.server_peak_rss_mb:.0f} MB")
        return result

    def progress(self) -> str:
        """`[run 12/96, about 6 min left]`: the runs so far, and the time they took, tell the rest."""
        left = max(0, self.planned - self.driven)
        seconds = (time.monotonic() - self.started) / self.driven * left
        return f"[run {self.driven}/{max(self.planned, self.driven)}, about {_minutes(seconds)} left]"

    def record(self, section: str, workload: str, target: str, workers: int, store: str, result: LoadResult,
               **extra: Any) -> dict[str, Any]:
        row = {"section": section, "workload": workload, "target": target, "workers": workers, "store": store,
               **dataclasses.asdict(result), **extra}
        self.runs.append(row)
        return row

    def throughput(self, section: str, workers: int, workloads: list[str], database_url: str | None = None,
                   baseline: bool = True) -> dict[str, dict[str, Any]]:
        """Each workload against openrooms and the baseline in turn, `rounds` times (both servers stay up).

        Runs taken minutes apart on a shared machine can differ by a fifth, so each ratio is of two runs taken
        back to back, and the row of a workload is its round with the median ratio (with no baseline: the
        median throughput); every run is also kept in "runs"."""
        store = "postgresql" if database_url else "sqlite"
        rows: dict[str, dict[str, Any]] = {}
        with contextlib.ExitStack() as servers:
            server = servers.enter_context(self.openrooms(section, workers, database_url))
            base = servers.enter_context(self.baseline(workers)) if baseline else None
            client = Client(server.host, server.port)
            fixture = seed(client, self.s.seed_rooms)
            client.close()
            host = f"{server.host}:{server.port}"
            for workload in workloads:
                pool = Pools(fixture, host).pool(WORKLOADS[workload][0])
                rounds = []
                for number in range(1, self.s.rounds + 1):
                    ours = self.drive(server, pool, f"{section}-{workload}", number)
                    row = self.record(section, workload, "openrooms", workers, store, ours, round=number)
                    if base is not None:
                        theirs = self.drive(base, pool, f"baseline-{workers}-{workload}", number)
                        self.record(section, workload, "baseline", workers, "none", theirs, round=number)
                        row = {**row, "baseline_rps": theirs.requests_per_second,
                               "ratio_to_baseline": round(ours.requests_per_second / theirs.requests_per_second, 3)}
                    rounds.append(row)
                rows[workload] = _median_round(rounds)
            if section == "sqlite-1-worker":
                self.sections["paged_scan"] = self.paged_scan(server, self.s.scan_seconds)
        return rows

    # -- paged scan -----------------------------------------------------------------------------------------
    def paged_scan(self, server: RunningServer, max_seconds: float) -> dict[str, Any]:
        """Follow nextLink from the first page to the last, as the SDKs' pagers do, timing every page."""
        console.log(f"  full paged scan of /rooms (at most {max_seconds:.0f} s)")
        client = Client(server.host, server.port)
        times: list[float] = []
        rooms = 0
        started = time.perf_counter()
        with measure.RssSampler(server.process.pid) as rss:
            t = time.perf_counter()
            page = client.call("GET", "/rooms?api-version=2025-03-13")
            while True:
                now = time.perf_counter()
                times.append(now - t)
                rooms += len(page["value"])
                link = page.get("nextLink")
                if not link or now - started > max_seconds:
                    break
                t = time.perf_counter()
                page = client.follow(link)
        client.close()
        result = {
            "rooms": rooms, "pages": len(times), "complete": not page.get("nextLink"),
            "seconds": round(time.perf_counter() - started, 2), **scan_shape(times),
            "server_peak_rss_mb": round(rss.peak / 2**20, 1),
        }
        console.log(f"  scan: {rooms} rooms, {len(times)} pages in {result['seconds']} s; ms/page first 10% "
                    f"{result['ms_per_page_first_10pct']}, last 10% {result['ms_per_page_last_10pct']}; fitted line "
                    f"{result['ms_per_page_fitted_start']} -> {result['ms_per_page_fitted_end']}")
        return result

    # -- scale ----------------------------------------------------------------------------------------------
    def scale(self) -> dict[str, Any]:
        """1k and 1M rooms, both servers up, each workload against one and then the other, `rounds` times."""
        sizes = {"small": (1000, 10_000), "large": (self.s.scale_rooms, self.s.scale_participants)}
        out: dict[str, Any] = {"workloads": {}}
        ids: dict[str, list[str]] = {}
        for label, (rooms, participants) in sizes.items():
            location = self.s.work / f"scale-{label}"
            shutil.rmtree(location, ignore_errors=True)
            console.log(f"[bold]scale[/]: bulk preload of {rooms:,} rooms and {participants:,} roster entries "
                        "(direct SQLite inserts, bypassing the API)")
            started = time.monotonic()
            ids[label] = preload.preload(location, rooms, participants, quiet=not console.is_terminal)
            out[f"{label}_preload_seconds"] = round(time.monotonic() - started, 1)
            out[f"{label}_database_mb"] = round((location / "openrooms.db").stat().st_size / 2**20)
            out[f"{label}_rooms"], out[f"{label}_participants"] = rooms, participants
        with contextlib.ExitStack() as stack:
            servers: dict[str, RunningServer] = {}
            fixtures: dict[str, Fixture] = {}
            for label in sizes:
                server = servers[label] = stack.enter_context(
                    self.openrooms(f"scale-{label}", 1, location=self.s.work / f"scale-{label}"))
                client = Client(server.host, server.port)
                fixtures[label] = Fixture(ids[label], big_room(client))
                client.close()
            peak = dict.fromkeys(sizes, 0.0)
            for workload in AT_SCALE:
                pools = {label: Pools(fixtures[label], f"{servers[label].host}:{servers[label].port}").pool(
                    WORKLOADS[workload][0]) for label in sizes}
                rounds = []
                for number in range(1, self.s.rounds + 1):
                    results = {}
                    for label, (rooms, _) in sizes.items():
                        result = results[label] = self.drive(servers[label], pools[label],
                                                             f"scale-{label}-{workload}", number)
                        self.record("scale", workload, "openrooms", 1, f"sqlite {rooms} rooms", result, rooms=rooms,
                                    round=number)
                        peak[label] = max(peak[label], result.server_peak_rss_mb)
                    rounds.append(results)
                # the round with the median p50 ratio, as the throughput tables pick theirs
                median = _median(rounds, key=lambda r: r["large"].p50_ms / r["small"].p50_ms)
                out["workloads"][workload] = {
                    **{label: dataclasses.asdict(median[label]) for label in sizes},
                    "p50_ratio_rounds": [round(r["large"].p50_ms / r["small"].p50_ms, 3) for r in rounds],
                }
            scan = self.paged_scan(servers["large"], 1800)  # the whole table, however long
            out["paged_scan"] = scan
            peak["large"] = max(peak["large"], scan["server_peak_rss_mb"])
            for label in sizes:
                out[f"{label}_server_peak_rss_mb"] = peak[label]
        shutil.rmtree(self.s.work / "scale-large", ignore_errors=True)  # gigabytes
        for by_size in out["workloads"].values():
            small, large = by_size["small"], by_size["large"]
            by_size["p50_ratio"] = round(large["p50_ms"] / small["p50_ms"], 3)
            by_size["p99_ratio"] = round(large["p99_ms"] / small["p99_ms"], 3)
            by_size["rps_ratio"] = round(large["requests_per_second"] / small["requests_per_second"], 3)
        return out

    # -- room queries ---------------------------------------------------------------------------------------
    def room_queries(self) -> dict[str, Any]:
        """The first page of each room query shape against the whole list's, on SQLite and (with --postgres-url)
        PostgreSQL: at the --scale size with --scale, else at --query-rooms (ten roster entries a room)."""
        rooms, participants = ((self.s.scale_rooms, self.s.scale_participants) if self.s.scale
                               else (self.s.query_rooms, self.s.query_rooms * 10))
        url, why = self.postgres_database() if self.s.postgres_url is not None else (None, "no --postgres-url given")
        console.log(f"[bold]room queries[/]: {rooms:,} rooms, {participants:,} roster entries (bulk preload, mixed "
                    f"windows){'' if url else f'; PostgreSQL skipped: {why}'}")
        out = queries.measure(self.s.work, rooms, participants, url, quiet=not console.is_terminal)
        if not url:
            out["postgresql_skipped"] = why
        shutil.rmtree(self.s.work / "room-queries", ignore_errors=True)  # gigabytes at scale
        for store, measured in out["stores"].items():
            console.log(f"  {store}: " + ", ".join(f"{name} {shape['ratio']}x" for name, shape
                                                   in measured["shapes"].items() if name != queries.BASELINE))
        return out

    # -- PostgreSQL -----------------------------------------------------------------------------------------
    def postgres_database(self) -> tuple[str | None, str]:
        """A fresh database for the PostgreSQL runs, or why there is none."""
        help_text = subprocess.run([str(Path(sys.executable).with_name("openrooms")), "serve", "--help"],
                                   capture_output=True, text=True).stdout
        if "--database-url" not in help_text:
            return None, "`openrooms serve --help` has no --database-url"
        if not self.s.postgres_url:
            return None, "no --postgres-url given"
        try:
            import psycopg
            from psycopg.conninfo import conninfo_to_dict, make_conninfo

            with psycopg.connect(self.s.postgres_url, autocommit=True, connect_timeout=3) as conn:
                conn.execute("DROP DATABASE IF EXISTS openrooms_bench")
                conn.execute("CREATE DATABASE openrooms_bench")
            params = conninfo_to_dict(self.s.postgres_url)
            params["dbname"] = "openrooms_bench"
            info = conninfo_to_dict(make_conninfo("", **params))
            url = (f"postgresql://{info.get('user', 'postgres')}@{info.get('host', '127.0.0.1')}:"
                   f"{info.get('port', 5432)}/openrooms_bench")
            subprocess.run([str(Path(sys.executable).with_name("openrooms")), "db", "upgrade", "--database-url", url],
                           check=True, capture_output=True)
        except Exception as exc:
            return None, f"PostgreSQL unavailable: {exc}"
        return url, ""

    def postgres_throughput(self) -> dict[str, Any]:
        """Every workload on PostgreSQL, per worker count, each on a fresh database. No baseline runs of its own:
        the ratios are to the SQLite section's baseline with the same worker count, measured in the same hour."""
        sections: dict[str, Any] = {}
        for workers in self.s.workers:
            driven = self.driven
            sections[f"{workers}-worker"] = rows = self.postgres_section(workers)
            if "skipped" in rows:  # its runs will not be made: the time left is that of the others
                self.planned -= len(self.s.workloads) * self.s.rounds - (self.driven - driven)
                continue
            base = self.sections["throughput"].get(f"{workers}-worker", {})
            for workload, row in rows.items():
                if "baseline_rps" in base.get(workload, {}):
                    row["baseline_rps"] = base[workload]["baseline_rps"]
                    row["ratio_to_baseline"] = round(row["requests_per_second"] / row["baseline_rps"], 3)
        return sections

    def postgres_section(self, workers: int) -> dict[str, Any]:
        url, why = self.postgres_database()
        if not url:
            return {"skipped": why}
        try:
            return self.throughput(f"postgresql-{workers}-worker", workers, self.s.workloads, database_url=url,
                                   baseline=False)
        except RuntimeError as exc:  # e.g. the server does not start against PostgreSQL
            last = [ln for ln in str(exc).splitlines() if ln.strip()][-1]
            console.log(f"[red]PostgreSQL run failed[/]: {last}")
            return {"skipped": f"the run failed: {last}"}

    def postgres_store_limit(self) -> dict[str, Any]:
        url, why = self.postgres_database()
        if not url:
            return {"skipped": why}
        try:
            limit = store_limit.measure_postgres(url)
        except Exception as exc:  # reported, as a failed PostgreSQL run is
            limit = {"skipped": (str(exc).splitlines() or [type(exc).__name__])[0]}
        console.log(f"PostgreSQL store limit: {limit}")
        return limit

    def calls(self) -> dict[str, Any]:
        """Room calls (bench/calls.py), or loudly why not: they need root, iproute2, Janus and Chromium."""
        from bench import calls

        why = calls.missing()
        if why is None:
            try:
                section = calls.measure(self.s.call_joins, capacity_max=self.s.call_capacity_max)
            except Exception as exc:  # reported, as a failed PostgreSQL run is
                why = f"it failed: {(str(exc).splitlines() or [type(exc).__name__])[0]}"
            else:
                console.log(f"room calls: {section}")
                return section
        console.rule(f"[bold red]ROOM CALL BENCHMARK NOT RUN: {escape(why)}")
        return {"skipped": why}

    # -- all ------------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        s = self.s
        if s.store_limit:
            self.sections["store_limit"] = store_limit.measure(s.work / "store-limit")
            console.log(f"store limit: {self.sections['store_limit']}")
        self.sections["throughput"] = {
            f"{w}-worker": self.throughput(f"sqlite-{w}-worker", w, s.workloads, baseline=s.baseline)
            for w in s.workers
        }
        if s.postgres_url is not None:
            self.sections["postgresql"] = self.postgres_throughput()
            if s.store_limit:
                self.sections["postgresql_store_limit"] = self.postgres_store_limit()
        if s.scale:
            self.sections["scale"] = self.scale()
        if s.event_log:
            self.sections["event_log"] = inprocess.event_log_section()
            console.log(f"event log: {self.sections['event_log']}")
        if s.scale or s.query_rooms:
            self.sections["room_queries"] = self.room_queries()
        if s.webhooks:
            console.log("[bold]webhooks[/]: delivery latency and throughput, create throughput with and without")
            self.sections["webhooks"] = webhooks.measure_webhooks(s.work, s.seconds, s.connections, rounds=s.rounds)
            console.log(f"webhooks: {self.sections['webhooks']}")
        if s.migrate_rooms:
            self.sections["migration"] = migration.measure_migration(s.work, s.migrate_rooms, s.migrate_rooms * 5)
            console.log(f"migration: {self.sections['migration']}")
        if s.call_joins:
            self.sections["calls"] = self.calls()
        return self.document(time.monotonic() - started)

    def document(self, seconds: float) -> dict[str, Any]:
        granian = subprocess.run([sys.executable, "-m", "granian", "--version"], capture_output=True, text=True)
        wrk_version = subprocess.run([measure.wrk_path(), "--version"], capture_output=True, text=True).stdout
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"], capture_output=True,
                               text=True).stdout.strip()
        return {
            "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "total_seconds": round(seconds, 1),
            "machine": {
                "cpus": __import__("os").cpu_count(), "platform": platform.platform(),
                "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
                "granian": granian.stdout.strip() or granian.stderr.strip(), "event_loop": event_loop(),
                "wrk": wrk_version.splitlines()[0] if wrk_version else "",
                "commit": commit + (" + uncommitted changes in src/" if dirty else ""),
            },
            "settings": {"seconds_per_run": self.s.seconds, "rounds": self.s.rounds, "warmup_seconds": self.s.warmup,
                         "connections": self.s.connections, "wrk_threads": 1, "seed_rooms": self.s.seed_rooms,
                         "tls": False},
            "workloads": {name: what for name, (_, what) in WORKLOADS.items() if name in self.s.workloads},
            "writes": sorted(WRITES & set(self.s.workloads)),
            **self.sections,
            "targets": report.targets(self.sections),
            "runs": self.runs,
        }


AT_SCALE = ["get_room", "list_rooms_first_page", "list_participants_1000", "create_room"]


def planned_runs(s: Settings) -> int:
    """How many measured runs the settings make (a PostgreSQL run that is skipped makes fewer)."""
    per_section = len(s.workloads) * s.rounds
    runs = len(s.workers) * per_section * (2 if s.baseline else 1)
    if s.postgres_url is not None:
        runs += len(s.workers) * per_section
    if s.scale:
        runs += len(AT_SCALE) * s.rounds * 2  # against 1k rooms, then against 1M
    return runs


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _median(items: Sequence[T], key: Callable[[T], float]) -> T:
    """The item with the median key (of an even number of items, the lower of the middle two)."""
    return sorted(items, key=key)[(len(items) - 1) // 2]


def _median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median ratio to the baseline (or throughput), with every round's number beside it."""
    key = "ratio_to_baseline" if "ratio_to_baseline" in rounds[0] else "requests_per_second"
    row = dict(_median(rounds, key=lambda r: r[key]))
    row.pop("round", None)
    row[f"{key}_rounds"] = [r[key] for r in rounds]
    return row


def parse(argv: list[str] | None = None) -> tuple[Settings, Path]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=4, help="measured seconds per run (default 4)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs of each workload, openrooms and baseline back to back (default 3; the median "
                             "round is reported)")
    parser.add_argument("--warmup", type=float, default=1, help="warm-up seconds before each run (default 1)")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections (default 32)")
    parser.add_argument("--workload", action="append", choices=list(WORKLOADS), help="only these (repeatable)")
    parser.add_argument("--workers", default="1,2", help="worker counts to compare (default 1,2)")
    parser.add_argument("--seed-rooms", type=int, default=1000, help="rooms created through the API first")
    parser.add_argument("--no-baseline", action="store_true", help="skip the bare-ASGI baseline runs")
    parser.add_argument("--no-store-limit", action="store_true",
                        help="skip the raw store insert rates (SQLite, and PostgreSQL with --postgres-url)")
    parser.add_argument("--postgres-url", default=None,
                        help="a PostgreSQL server to also run every workload against, with each worker count "
                             "(a database openrooms_bench is dropped and created there for each)")
    parser.add_argument("--scale", action="store_true", help="also preload 1M rooms / 10M roster entries and "
                        "compare latency at 1k vs 1M rooms (takes minutes)")
    parser.add_argument("--scale-rooms", type=int, default=1_000_000)
    parser.add_argument("--scale-participants", type=int, default=10_000_000)
    parser.add_argument("--query-rooms", type=int, default=50_000,
                        help="rooms (and ten roster entries each) of the room queries' run without --scale (0: none)")
    parser.add_argument("--scan-seconds", type=float, default=15, help="bound of the default run's paged scan")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where report.md/json go (default bench/results)")
    parser.add_argument("--migrate", action="store_true", help="also measure `openrooms migrate from-acs` "
                        "(bench/migrate.py): --migrate-rooms rooms, five participants each")
    parser.add_argument("--migrate-rooms", type=int, default=migration.DEFAULT_ROOMS)
    parser.add_argument("--no-event-log", action="store_true",
                        help="skip the in-process measurement of the event log's cost (about a minute)")
    parser.add_argument("--calls", action="store_true", help="also measure room calls (bench/calls.py: join "
                        "latency, CPU beside Janus's, a room's capacity; needs root, Janus and Chromium)")
    parser.add_argument("--call-joins", type=int, default=20, help="joins the room call latency is measured over")
    parser.add_argument("--call-capacity-max", type=int, default=16,
                        help="most participants the room capacity run adds (default 16)")
    parser.add_argument("--no-webhooks", action="store_true", help="skip the webhook delivery measurement "
                        "(bench/webhooks.py)")
    args = parser.parse_args(argv)
    work = args.output / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    settings = Settings(
        seconds=args.seconds, rounds=max(1, args.rounds), warmup=args.warmup, connections=args.connections,
        workloads=args.workload or list(WORKLOADS), seed_rooms=args.seed_rooms, baseline=not args.no_baseline,
        workers=[int(w) for w in args.workers.split(",") if w], postgres_url=args.postgres_url, scale=args.scale,
        scale_rooms=args.scale_rooms, scale_participants=args.scale_participants, scan_seconds=args.scan_seconds,
        store_limit=not args.no_store_limit, work=work, migrate_rooms=args.migrate_rooms if args.migrate else 0,
        query_rooms=args.query_rooms, event_log=not args.no_event_log,
        call_joins=args.call_joins if args.calls else 0, call_capacity_max=args.call_capacity_max,
        webhooks=not args.no_webhooks,
    )
    return settings, args.output


def main(argv: list[str] | None = None) -> None:
    settings, output = parse(argv)
    document = Suite(settings).run()
    (output / "report.json").write_text(json.dumps(document, indent=2) + "\n")
    (output / "report.md").write_text(report.markdown(document))
    shutil.rmtree(settings.work, ignore_errors=True)
    console.log(f"wrote {output / 'report.md'} and {output / 'report.json'} in {document['total_seconds']} s")
