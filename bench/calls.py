"""Room call benchmark: join latency (signalling WebSocket open to the first remote video frame) over repeated
joins, and the CPU openrooms spends during a steady call compared with Janus's (media never passes openrooms).

Run as root (it creates a private network namespace: no media leaves the machine), with Janus and Chromium
installed: `python -m bench.calls [--joins 20] [--steady-seconds 10]`. Prints a small report; not a timed test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import async_playwright

from bench.measure import cpu_seconds, openrooms_command, process_tree, serve
from bench.wire import signed_headers
from openrooms.calls import local

JANUS_PORT = 8188
PORT = 8765
SECRET = "bench-janus-secret"
ROOMS_V, IDENTITY_V = "api-version=2025-03-13", "api-version=2025-06-30"
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


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def run(joins: int, steady_seconds: float, janus_pid: int, openrooms_pids: list[int]) -> dict[str, Any]:
    presenter, presenter_token = user()
    joiners = [user() for _ in range(joins)]
    room = api("POST", f"/rooms?{ROOMS_V}", {"participants": {
        presenter: {"role": "Presenter"}, **{raw_id: {"role": "Attendee"} for raw_id, _ in joiners}}})
    url = f"http://127.0.0.1:{PORT}/call/{room['id']}#token="
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
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
        # A steady call: the presenter and three attendees, all sending; CPU of each side over the same span.
        steady = []
        for _, token in joiners[:3]:
            page = await (await browser.new_context()).new_page()
            await page.goto(url + token)
            steady.append(page)
        for page in steady:
            await page.wait_for_function("window.openrooms.stats.inboundFeeds >= 3", timeout=30000)
        janus_before, openrooms_before = cpu_seconds([janus_pid]), cpu_seconds(openrooms_pids)
        started = time.monotonic()
        await asyncio.sleep(steady_seconds)
        elapsed = time.monotonic() - started
        janus_cpu = (cpu_seconds([janus_pid]) - janus_before) / elapsed
        openrooms_cpu = (cpu_seconds(openrooms_pids) - openrooms_before) / elapsed
        await browser.close()
    return {
        "joins": joins,
        "join_to_first_frame_p50_s": round(statistics.median(latencies), 3),
        "join_to_first_frame_p99_s": round(percentile(latencies, 99), 3),
        "steady_participants": 4,
        "janus_cpu_cores": round(janus_cpu, 3),
        "openrooms_cpu_cores": round(openrooms_cpu, 3),
        "openrooms_to_janus_cpu": round(openrooms_cpu / janus_cpu, 3) if janus_cpu else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--joins", type=int, default=20)
    parser.add_argument("--steady-seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, local.private_network(f"orbench{os.getpid()}") as name, \
            local.inside(name):
        folder = local.write_config(Path(scratch) / "janus", ws_port=JANUS_PORT, api_secret=SECRET)
        janus = local.start(folder, Path(scratch) / "janus.log")
        try:
            command = [*openrooms_command(PORT, Path(scratch) / "openrooms", 1), "--in-memory",
                       "--janus-url", f"ws://127.0.0.1:{JANUS_PORT}/", "--janus-api-secret", SECRET]
            with serve(command, PORT, Path(scratch) / "openrooms.log") as server:
                report = asyncio.run(run(args.joins, args.steady_seconds, janus.pid, process_tree(server.process.pid)))
        finally:
            janus.terminate()
            janus.wait()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
