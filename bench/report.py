"""The report: targets checked against what was measured, and report.md written from report.json."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

# Each optimisation's before and after, what was tried and not kept: kept in the docs, appended to every report.
OPTIMISATIONS = Path(__file__).resolve().parents[1] / "docs" / "performance.md"
RATIO_TARGETS = {"get_room": 0.5, "create_room": 0.35, "mixed": 0.45}
GET_P99_MS = 10.0
SCALE_LATENCY_RATIO = 1.3
SCALE_WORKLOADS = ("get_room", "create_room", "list_rooms_first_page")
SCAN_RATIO = 1.3
RSS_MB = 250
# The event log and the window events, in process: throughput with / without, and the window events' lateness.
EVENT_LOG_RATIOS = {"create_room": 0.9, "create_room_opening_ahead": 0.9, "get_room": 0.9}
WINDOW_EVENT_MAX_MS = 1000


def _target(name: str, goal: str, measured: Any, met: bool | None) -> dict[str, Any]:
    return {"target": name, "goal": goal, "measured": measured, "met": met}


def targets(sections: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    one = sections.get("throughput", {}).get("1-worker", {})
    for workload, goal in RATIO_TARGETS.items():
        row = one.get(workload, {})
        if "ratio_to_baseline" in row:
            ratio = row["ratio_to_baseline"]
            out.append(_target(f"{workload} vs baseline (1 worker)", f">= {goal}x", f"{ratio}x", ratio >= goal))
    if "get_room" in one:
        p99 = one["get_room"]["p99_ms"]
        out.append(_target("get_room p99 at 32 connections", f"<= {GET_P99_MS} ms", f"{p99} ms", p99 <= GET_P99_MS))
    out += _event_log_targets(sections.get("event_log"))
    scale = sections.get("scale")
    if scale:
        large = scale["large_rooms"]
        for workload in SCALE_WORKLOADS:
            by_size = scale["workloads"].get(workload)
            if by_size:
                ratio = by_size["p50_ratio"]
                out.append(_target(f"{workload} p50 latency at {large:,} vs 1,000 rooms",
                                   f"<= {SCALE_LATENCY_RATIO}x", f"{ratio}x", ratio <= SCALE_LATENCY_RATIO))
        rss = scale["large_server_peak_rss_mb"]
        out.append(_target(f"server peak RSS with {large:,} rooms", f"<= {RSS_MB} MB", f"{rss} MB", rss <= RSS_MB))
        scan = scale.get("paged_scan")
        if scan:
            # None: the line starts at or below zero, so steep that it is not flat by any measure
            ratio = scan.get("fitted_end_to_start_ratio")
            out.append(_target(f"paged scan of {scan['rooms']:,} rooms: ms/page at its end vs its start "
                               "(least-squares line through every page)", f"<= {SCAN_RATIO}x",
                               "n/a" if ratio is None else f"{ratio}x", ratio is not None and ratio <= SCAN_RATIO))
    rq: dict[str, Any] = sections.get("room_queries") or {}
    for store, measured in rq.get("stores", {}).items():
        for name, shape in measured["shapes"].items():
            if name != "unfiltered":
                out.append(_target(f"room query first page, {name} vs unfiltered ({store}, {rq['rooms']:,} rooms)",
                                   f"<= {rq['target_ratio']}x", f"{shape['ratio']}x",
                                   shape["ratio"] <= rq["target_ratio"]))
    return out


def _room_queries(rq: dict[str, Any]) -> list[str]:
    stores = list(rq["stores"])
    shapes = list(rq["stores"][stores[0]]["shapes"]) if stores else []
    states = ", ".join(f"{count:,} {state}" for state, count in rq["states"].items())
    out = [f"## Room queries: {rq['rooms']:,} rooms, {rq['participants']:,} roster entries\n",
           f"Preloaded through the bulk path with mixed windows ({states}) in {rq['preload_seconds']} s"
           + (f", copied into PostgreSQL in {rq['postgres_copy_seconds']} s" if "postgres_copy_seconds" in rq else
              f"; PostgreSQL skipped: {rq.get('postgresql_skipped')}")
           + f". Each shape's first page ({rq['page_size']} rooms, one more read to know there is a next page) "
           f"{rq['calls']} times through the store itself, the shapes in turn; the ratio is of the medians, to the "
           "first page of the whole list in the same order. By participant: a different user each call.\n",
           _table(["shape", *(f"{store} {what}" for store in stores for what in ("p50 ms", "ratio", "rooms/page"))],
                  [[name, *(v for store in stores for v in (rq["stores"][store]["shapes"][name]["p50_ms"],
                                                            f"{rq['stores'][store]['shapes'][name]['ratio']}x",
                                                            rq["stores"][store]["shapes"][name]["rooms_per_page"]))]
                   for name in shapes])]
    for store in stores:
        out.append(f"### Query plans: {store}\n")
        for name, plan in rq["stores"][store]["plans"].items():
            out.append(f"{name}:\n\n```\n" + "\n".join(plan) + "\n```\n")
    return out


def _event_log_targets(section: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not section:
        return []
    out = []
    for workload, goal in EVENT_LOG_RATIOS.items():
        ratio = section["in_process_ab"][workload]["ratio"]
        out.append(_target(f"{workload} with the event log vs without (in process)", f">= {goal}x", f"{ratio}x",
                           ratio >= goal))
    late = section["window_events"]["max_ms"]
    out.append(_target("window events: the latest after its instant", f"<= {WINDOW_EVENT_MAX_MS} ms", f"{late} ms",
                       late <= WINDOW_EVENT_MAX_MS))
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    return str(value)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _throughput_rows(rows: dict[str, dict[str, Any]]) -> list[list[Any]]:
    return [[name, r["requests_per_second"], r.get("baseline_rps", "-"),
             f"{r['ratio_to_baseline']:.3f}x" if "ratio_to_baseline" in r else "-", _rounds(r), r["p50_ms"],
             r["p99_ms"], r["errors"], r["server_cpu_cores"], r["server_peak_rss_mb"], r["generator_cpu_cores"]]
            for name, r in rows.items() if isinstance(r, dict)]


def _rounds(row: dict[str, Any]) -> str:
    if "ratio_to_baseline_rounds" in row:
        return ", ".join(f"{ratio:.2f}" for ratio in row["ratio_to_baseline_rounds"])
    return ", ".join(f"{rps:,.0f}" for rps in row.get("requests_per_second_rounds", []))


THROUGHPUT_HEADERS = ["workload", "req/s", "baseline req/s", "ratio", "every round", "p50 ms", "p99 ms", "errors",
                      "server CPU (cores)", "server peak RSS MB", "wrk CPU (cores)"]


def markdown(doc: dict[str, Any]) -> str:
    m, s = doc["machine"], doc["settings"]
    out = [
        "# openrooms benchmark report\n",
        f"{doc['generated_at']}, {doc['total_seconds']} s. {m['cpus']} CPUs, {m['platform']}, Python {m['python']}, "
        f"SQLite {m['sqlite']}, {m['granian']} (event loop: {m.get('event_loop', 'asyncio')}), {m['wrk']}; "
        f"openrooms at {m['commit']}.\n",
        f"wrk, 1 thread, {s['connections']} keep-alive connections, {s['seconds_per_run']} s per run after "
        f"{s['warmup_seconds']} s of warm-up, plain HTTP; every request is a distinct pre-signed HMAC request "
        "from a pool of 4,000. The baseline is a bare ASGI app on the same granian with the same worker count, "
        "answering the same requests with bodies of the same shape (no auth, no store). "
        f"Each workload runs {s.get('rounds', 1)} time(s) against openrooms and the baseline in turn, both "
        "servers up; a row is the round with the median ratio (\"every round\" lists all of them; without a "
        "baseline, the median throughput and every round's req/s). Server CPU is from "
        "/proc of the server's process tree, in cores (1.00 = one core busy); wrk CPU likewise. Server and wrk "
        "share the machine.\n",
        "## Targets\n",
        _table(["target", "goal", "measured", "met"],
               [[t["target"], t["goal"], t["measured"], {True: "yes", False: "**no**", None: "-"}[t["met"]]]
                for t in doc["targets"]]),
        "## Workloads\n",
        _table(["workload", "what"], [[k, v] for k, v in doc["workloads"].items()]),
    ]
    for label, rows in doc.get("throughput", {}).items():
        out += [f"## Throughput: SQLite, {label}\n", _table(THROUGHPUT_HEADERS, _throughput_rows(rows))]
    pg = doc.get("postgresql") or {}
    for label, rows in pg.items():
        out.append(f"## Throughput: PostgreSQL (`--database-url`), {label}\n")
        if "skipped" in rows:
            out.append(f"Skipped: {rows['skipped']}\n")
            continue
        out += ["A fresh database for each worker count. No baseline runs of its own: each ratio is to the SQLite "
                "section's baseline with the same worker count, measured in the same run.\n",
                _table(THROUGHPUT_HEADERS, _throughput_rows(rows))]
    scaling = _scaling_rows("SQLite", doc.get("throughput", {})) + _scaling_rows("PostgreSQL", pg)
    if scaling:
        headers = ["store", "workload", "1 worker req/s", "2 workers req/s", "2 / 1"]
        out += ["## 1 vs 2 worker processes\n", _table(headers, scaling)]
    if "store_limit" in doc:
        sl = doc["store_limit"]
        out += ["## Raw store limit for writes: SQLite\n",
                "SQLite on this disk with the server's pragmas (WAL, synchronous=FULL), one connection, no HTTP: "
                "every write transaction waits for an fsync, so this caps every write workload with the SQLite "
                "store.\n",
                _table(["what", "transactions/s"], [["single-row INSERT, one per transaction",
                                                     sl["single_row_insert_per_s"]],
                                                    ["create-room transaction (room id ledger + room)",
                                                     sl["create_transaction_per_s"]]])]
    pl = doc.get("postgresql_store_limit")
    if pl:
        out.append("## Raw store limit for writes: PostgreSQL\n")
        if "skipped" in pl:
            out.append(f"Skipped: {pl['skipped']}\n")
        else:
            settings = ", ".join(f"{name}={value}" for name, value in pl["settings"].items())
            n = pl["connections"]
            out += [f"The same PostgreSQL server as the runs above, with its own durability settings ({settings}), "
                    f"which openrooms leaves as they are; no HTTP. One connection, then {n} at once (a worker's "
                    "pool): PostgreSQL flushes the log of concurrent commits together.\n",
                    _table(["what", "1 connection, transactions/s", f"{n} connections, transactions/s"],
                           [["single-row INSERT, one per transaction", pl["single_row_insert_per_s"],
                             pl["single_row_insert_per_s_concurrent"]],
                            ["create-room transaction (room id ledger + room)", pl["create_transaction_per_s"],
                             pl["create_transaction_per_s_concurrent"]]])]
    if "paged_scan" in doc:
        out += ["## Full paged scan (default database)\n", _scan(doc["paged_scan"])]
    sc = doc.get("scale")
    if sc:
        out += [f"## Scale: {sc['small_rooms']:,} vs {sc['large_rooms']:,} rooms\n",
                f"Preloaded through the bulk path (direct SQLite inserts into the migrated schema, bypassing the "
                f"API): {sc['small_rooms']:,} rooms / {sc['small_participants']:,} roster entries in "
                f"{sc['small_preload_seconds']} s; {sc['large_rooms']:,} rooms / {sc['large_participants']:,} roster "
                f"entries in {sc['large_preload_seconds']} s ({sc['large_database_mb']:,} MB). 1 worker.\n",
                "Both servers run at once; each workload runs against one and then the other, "
                f"{s.get('rounds', 1)} time(s), and a row is the round with the median p50 ratio.\n",
                _table(["workload", "req/s small", "req/s large", "p50 ms small", "p50 ms large", "p50 ratio",
                        "every round", "p99 ms small", "p99 ms large", "p99 ratio", "errors"],
                       [[w, r["small"]["requests_per_second"], r["large"]["requests_per_second"], r["small"]["p50_ms"],
                         r["large"]["p50_ms"], f"{r['p50_ratio']}x",
                         ", ".join(f"{x:.2f}" for x in r.get("p50_ratio_rounds", [])), r["small"]["p99_ms"],
                         r["large"]["p99_ms"], f"{r['p99_ratio']}x", r["small"]["errors"] + r["large"]["errors"]]
                        for w, r in sc["workloads"].items()]),
                f"Server peak RSS: {sc['small_server_peak_rss_mb']} MB with {sc['small_rooms']:,} rooms, "
                f"{sc['large_server_peak_rss_mb']} MB with {sc['large_rooms']:,} rooms.\n"]
        if "paged_scan" in sc:
            out += [f"### Full paged scan of {sc['large_rooms']:,} rooms\n", _scan(sc["paged_scan"])]
    if "room_queries" in doc:
        out += _room_queries(doc["room_queries"])
    if "migration" in doc:
        mg = doc["migration"]
        out += [f"## `openrooms migrate from-acs`: {mg['rooms']:,} rooms, {mg['participants']:,} participants\n",
                _table(["run", "seconds", "rooms/s", "participants/s", "source requests/s"],
                       [[label, mg[label]["seconds"], mg[label]["rooms_per_second"],
                         mg[label]["participants_per_second"], mg[label]["source_requests_per_second"]]
                        for label in ("copy", "unchanged_rerun", "verify")])]
    if "calls" in doc:
        out += _calls(doc["calls"])
    if "webhooks" in doc:
        wh = doc["webhooks"]
        runs: dict[str, Any] = wh.get("runs", {"measured": wh})  # one column per maxEventsPerBatch
        out += ["## Webhook delivery (SQLite, 1 worker, one subscription)\n",
                "A receiver on loopback; the rooms' events queue up under `serve --no-webhooks`, then drain under "
                "`serve` (delivery throughput, first delivery to last); then rooms are created while they are "
                "delivered (latency: eventTime, when the change committed, to arrival) and without dispatching, in "
                "alternating order, each round on a fresh location; medians of the rounds. See bench/webhooks.py.\n",
                _table(["what", *runs], [[what, *(cell(run, key) for run in runs.values())] for what, key in [
                    ("delivery throughput, events/s", "delivery_per_second"),
                    ("events per request while draining", "events_per_request"),
                    ("backlog drained, events", "backlog_events"),
                    ("latency p50 / p99 under the create load, ms", "latency"),
                    ("create req/s, not dispatching", "create_rps_not_dispatching"),
                    ("create req/s, dispatching", "create_rps_dispatching"),
                    ("ratio, dispatching to not", "create_ratio_dispatching_to_not"),
                    ("errors", "errors")]])]
    if OPTIMISATIONS.exists():  # one level down, under the report's own title
        out.append(re.sub(r"^(#+) ", r"#\1 ", OPTIMISATIONS.read_text(), flags=re.MULTILINE))
    return "\n".join(out)


def cell(run: dict[str, Any], key: str) -> Any:
    """One figure of a webhook run (`latency`: p50 / p99)."""
    if key == "latency":
        return f"{run['latency_p50_ms']} / {run['latency_p99_ms']}"
    return run.get(key)


def _calls(calls: dict[str, Any]) -> list[str]:
    if "skipped" in calls:
        return ["## Room calls: NOT RUN\n", f"The room call benchmark did not run: {calls['skipped']}.\n"]
    out = ["## Room calls (Janus, Chromium with fake media, in a network namespace)\n",
           _table(["measure", "value"], [
               [f"join → first remote frame, p50 / p99 ({calls['joins']} joins)",
                f"{calls['join_to_first_frame_p50_s']} s / {calls['join_to_first_frame_p99_s']} s"],
               [f"Janus CPU, {calls['steady_participants']} participants sending", f"{calls['janus_cpu_cores']} cores"],
               ["openrooms CPU, same span", f"{calls['openrooms_cpu_cores']} cores "
                                            f"({calls['openrooms_to_janus_cpu']} of Janus's)"],
           ])]
    if "capacity" in calls:
        capacity = calls["capacity"]
        out += [f"Room capacity on this machine ({capacity['cpus']} CPUs): **{capacity['participants']} "
                f"participants** all sending; stopped because {capacity['stopped_because']}.\n",
                _table(["participants", "newcomer's first remote frame (s)", "machine CPU busy"],
                       [[step["participants"], step["first_frame_s"], step["machine_cpu_busy"]]
                        for step in capacity["steps"]])]
    return out


def _scaling_rows(store: str, by_workers: dict[str, Any]) -> list[list[Any]]:
    """Each workload measured with 1 and with 2 workers (and not skipped): its rates and what the second adds."""
    one, two = by_workers.get("1-worker", {}), by_workers.get("2-worker", {})
    rows = []
    for workload, row in two.items():
        single = one.get(workload)
        if isinstance(row, dict) and isinstance(single, dict):
            rps, single_rps = row["requests_per_second"], single["requests_per_second"]
            rows.append([store, workload, single_rps, rps, f"{rps / single_rps:.2f}x"])
    return rows


def _scan(scan: dict[str, Any]) -> str:
    bound = "" if scan["complete"] else " (stopped at its time bound)"
    return (f"Followed nextLink as the SDK pagers do (default page size, one connection): {scan['rooms']:,} rooms in "
            f"{scan['pages']:,} pages, {scan['seconds']} s{bound}; "
            f"{scan['ms_per_page_first_10pct']} ms/page over the first 10% of pages (after the first), "
            f"{scan['ms_per_page_last_10pct']} ms/page over the last 10% "
            f"({scan['last_to_first_ratio']}x).{_fitted(scan)}{_tenths(scan)}\n")


def _fitted(scan: dict[str, Any]) -> str:
    if "ms_per_page_fitted_start" not in scan:
        return ""
    ratio = scan["fitted_end_to_start_ratio"]
    shown = "n/a: the line starts at or below 0" if ratio is None else f"{ratio}x"
    return (f" The least-squares line through every page's time runs from {scan['ms_per_page_fitted_start']} "
            f"ms/page at the start to {scan['ms_per_page_fitted_end']} at the end (**{shown}**).")


def _tenths(scan: dict[str, Any]) -> str:
    tenths = scan.get("ms_per_page_by_tenth")
    return f" Each tenth of the scan in turn, ms/page: {', '.join(str(t) for t in tenths)}." if tenths else ""
