"""Room call benchmark: join latency (signalling WebSocket open to the first remote video frame) over repeated
joins, the CPU openrooms spends during a steady call compared with Janus's (media never passes openrooms), and a
room's capacity on this machine: participants, all sending fake camera and microphone, added one at a time until
a join fails, its first remote frame takes longer than a bound, or a participant stops decoding video.

Needs root (it creates a private network namespace: no media leaves the machine), iproute2, Janus and Chromium;
`make bench` runs it (and says loudly when it cannot). Alone: `python -m bench.calls [--joins 20]
[--steady-seconds 10] [--capacity-max 16]`. Prints a small report; not a timed test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import Browser, Page, async_playwright
from playwright.async_api import Error as PlaywrightError

from bench.measure import cpu_seconds, openrooms_command, process_tree, serve
from bench.wire import signed_headers
from openrooms.calls import local

JANUS_PORT = 8188
PORT = 8765
SECRET = "bench-janus-secret"
ROOMS_V, IDENTITY_V = "api-version=2025-03-13", "api-version=2025-06-30"
CHROMIUM = "/usr/bin/chromium"
# Capacity: the bound on a newcomer's first remote frame.
FIRST_FRAME_BOUND_S = 5.0
CHROMIUM_ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", "--no-sandbox",
                 "--disable-features=WebRtcHideLocalIpsWithMdns"]


def api(method: str, path_and_query: str, body: Any) -> Any:
    host = f"127.0.0.1:{PORT}"
    content = json.dumps(body).encode()
    headers = {**signed_headers(method, path_and_query, host, content), "content-type": "application/json"}
    answer = httpx.request(method, f"http://{host}{path_and_query}", content=content, headers=headers)
    answer.raise_for_status()
    return answer.json()


def user() -> tuple[str, str]:
    answer = api("POST", f"/identities?{IDENTITY_V}", {"createTokenWithScopes": ["voip"]})
    return answer["identity"]["id"], answer["accessToken"]["token"]


def machine_busy() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


def missing() -> str | None:
    """Why the benchmark cannot run here, or None."""
    if os.geteuid() != 0:
        return "it needs root (a private network namespace of its own)"
    if shutil.which("ip") is None:
        return "it needs iproute2 (`ip netns`)"
    if local.janus_binary() is None:
        return "janus is not installed (apt-get install janus)"
    if not Path(CHROMIUM).exists():
        return "chromium is not installed (apt-get install chromium)"
    return None


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def capacity(browser: Browser, most: int) -> dict[str, Any]:
    """Participants of one room, all sending, added one at a time until one is not admitted, its first remote
    frame comes later than FIRST_FRAME_BOUND_S, or a participant stops decoding video (the machine cannot keep up
    any more); the count that held, and why it stopped. The machine's CPU use after each join is reported beside
    (on a machine shared with other work it says little about the call alone)."""
    people = [user() for _ in range(most)]
    room = api("POST", f"/rooms?{ROOMS_V}", {"participants": {raw_id: {"role": "Attendee"} for raw_id, _ in people}})
    url = f"http://127.0.0.1:{PORT}/call/{room['id']}#token="
    steps: list[dict[str, Any]] = []
    pages: list[Page] = []
    held, reason = 0, f"reached --capacity-max {most}"
    for n, (_, token) in enumerate(people, start=1):
        before = machine_busy()
        page = await (await browser.new_context()).new_page()
        pages.append(page)
        await page.goto(url + token)
        bound = FIRST_FRAME_BOUND_S * 1000
        try:
            await page.wait_for_function("window.openrooms.status !== 'connecting'", timeout=bound)
            if await page.evaluate("window.openrooms.status") != "joined":
                reason = f"participant {n} was not admitted: {await page.evaluate('window.openrooms.message')}"
                break
            first_frame = None
            if n > 1:
                await page.wait_for_function("window.openrooms.timing.firstFrame !== null", timeout=bound)
                timing = await page.evaluate("window.openrooms.timing")
                first_frame = round((timing["firstFrame"] - timing["wsOpen"]) / 1000, 3)
                if first_frame > FIRST_FRAME_BOUND_S:  # (counted from the WebSocket's open, the join included)
                    raise PlaywrightError("late")
        except PlaywrightError:
            reason = f"participant {n} saw no remote frame within {FIRST_FRAME_BOUND_S} s"
            break
        await asyncio.sleep(2)  # the newcomer's feed reaches the others meanwhile
        decoded = [await p.evaluate("window.openrooms.stats.framesDecoded") for p in pages]
        await asyncio.sleep(2)
        stalled = [i + 1 for i, p in enumerate(pages)
                   if n > 1 and await p.evaluate("window.openrooms.stats.framesDecoded") <= decoded[i]]
        after = machine_busy()
        busy = round((after[0] - before[0]) / max(1, after[1] - before[1]), 3)
        steps.append({"participants": n, "first_frame_s": first_frame, "machine_cpu_busy": busy})
        if stalled:
            reason = f"with {n} participants, participant(s) {stalled} stopped decoding video"
            break
        held = n
    for page in pages:
        await page.context.close()
    return {"participants": held, "stopped_because": reason, "first_frame_bound_s": FIRST_FRAME_BOUND_S,
            "cpus": os.cpu_count(), "steps": steps}


async def run(joins: int, steady_seconds: float, janus_pid: int, openrooms_pids: list[int],
              capacity_max: int = 0) -> dict[str, Any]:
    presenter, presenter_token = user()
    joiners = [user() for _ in range(joins)]
    room = api("POST", f"/rooms?{ROOMS_V}", {"participants": {
        presenter: {"role": "Presenter"}, **{raw_id: {"role": "Attendee"} for raw_id, _ in joiners}}})
    url = f"http://127.0.0.1:{PORT}/call/{room['id']}#token="
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        host = await (await browser.new_context()).new_page()
        await host.goto(url + presenter_token)
        await host.wait_for_function("window.openrooms.status === 'joined'")
        latencies = []
        for _, token in joiners:  # one at a time: each joins, receives the presenter's video, leaves
            page = await (await browser.new_context()).new_page()
            await page.goto(url + token)
            await page.wait_for_function("window.openrooms.timing.firstFrame !== null", timeout=30000)
            timing = await page.evaluate("window.openrooms.timing")
            latencies.append((timing["firstFrame"] - timing["wsOpen"]) / 1000)
            await page.context.close()
        # A steady call: the presenter and three attendees (fewer with fewer joins), all sending; CPU of each side
        # over the same span.
        steady = []
        for _, token in joiners[:3]:
            page = await (await browser.new_context()).new_page()
            await page.goto(url + token)
            steady.append(page)
        for page in steady:
            await page.wait_for_function(f"window.openrooms.stats.inboundFeeds >= {len(steady)}", timeout=30000)
        janus_before, openrooms_before = cpu_seconds([janus_pid]), cpu_seconds(openrooms_pids)
        started = time.monotonic()
        await asyncio.sleep(steady_seconds)
        elapsed = time.monotonic() - started
        janus_cpu = (cpu_seconds([janus_pid]) - janus_before) / elapsed
        openrooms_cpu = (cpu_seconds(openrooms_pids) - openrooms_before) / elapsed
        for page in [host, *steady]:
            await page.context.close()
        room_capacity = await capacity(browser, capacity_max) if capacity_max else None
        await browser.close()
    return {
        "joins": joins,
        "join_to_first_frame_p50_s": round(statistics.median(latencies), 3),
        "join_to_first_frame_p99_s": round(percentile(latencies, 99), 3),
        "steady_participants": 1 + len(steady),
        "janus_cpu_cores": round(janus_cpu, 3),
        "openrooms_cpu_cores": round(openrooms_cpu, 3),
        "openrooms_to_janus_cpu": round(openrooms_cpu / janus_cpu, 3) if janus_cpu else None,
        **({"capacity": room_capacity} if room_capacity else {}),
    }


def measure(joins: int = 20, steady_seconds: float = 10.0, capacity_max: int = 16) -> dict[str, Any]:
    """The whole benchmark, in a network namespace of its own with its own Janus and openrooms."""
    with tempfile.TemporaryDirectory() as scratch, local.private_network(f"orbench{os.getpid()}") as name, \
            local.inside(name):
        folder = local.write_config(Path(scratch) / "janus", ws_port=JANUS_PORT, api_secret=SECRET)
        janus = local.start(folder, Path(scratch) / "janus.log")
        try:
            command = [*openrooms_command(PORT, Path(scratch) / "openrooms", 1), "--in-memory",
                       "--janus-url", f"ws://127.0.0.1:{JANUS_PORT}/", "--janus-api-secret", SECRET]
            with serve(command, PORT, Path(scratch) / "openrooms.log") as server:
                return asyncio.run(run(joins, steady_seconds, janus.pid, process_tree(server.process.pid),
                                       capacity_max))
        finally:
            janus.terminate()
            janus.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--joins", type=int, default=20)
    parser.add_argument("--steady-seconds", type=float, default=10.0)
    parser.add_argument("--capacity-max", type=int, default=16, help="most participants tried (0: no capacity run)")
    args = parser.parse_args()
    if (why := missing()) is not None:
        raise SystemExit(f"the room call benchmark cannot run: {why}")
    print(json.dumps(measure(args.joins, args.steady_seconds, args.capacity_max), indent=2))


if __name__ == "__main__":
    main()
