"""How long `openrooms.testing.Emulator` takes to be ready: from `start()` until it has answered a signed request
over TLS, in a fresh interpreter each time.

- cold: the first emulator of a process, its imports included (openrooms' server, uvicorn, the store and its
  migrations: what a test session's first `openrooms` fixture costs);
- warm: another emulator in the same process (what each `openrooms_fresh` test costs after the first).

`python -m bench.emulator_start [--runs N]` prints one JSON object: every run's seconds and the medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from typing import Any

TARGET_SECONDS = 0.5

# Runs in a fresh interpreter: openrooms.testing is imported first (it imports no server), then timed.
_PROBE = r"""
import json, time, urllib.request, ssl
from openrooms.testing import Emulator, sign_headers

def ready_in():
    started = time.perf_counter()
    emulator = Emulator().start()
    path = "/rooms?api-version=2025-03-13"
    request = urllib.request.Request(emulator.endpoint.rstrip("/") + path,
                                     headers=sign_headers("GET", path, f"127.0.0.1:{emulator.port}"))
    with urllib.request.urlopen(request, context=ssl.create_default_context(cafile=emulator.ca)) as answer:
        assert answer.status == 200
    seconds = time.perf_counter() - started
    emulator.stop()
    return seconds

cold = ready_in()
warm = ready_in()
print(json.dumps({"cold": cold, "warm": warm}))
"""


def measure(runs: int) -> dict[str, Any]:
    samples = []
    for _ in range(runs):
        finished = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True,
                                  timeout=120)
        samples.append(json.loads(finished.stdout.strip().splitlines()[-1]))
    cold = [s["cold"] for s in samples]
    warm = [s["warm"] for s in samples]
    return {
        "runs": runs,
        "cold_seconds": [round(v, 3) for v in cold],
        "warm_seconds": [round(v, 3) for v in warm],
        "cold_median": round(statistics.median(cold), 3),
        "warm_median": round(statistics.median(warm), 3),
        "target_seconds": TARGET_SECONDS,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.emulator_start", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh interpreters to measure in (default 5)")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.runs), indent=2))


if __name__ == "__main__":
    main()
