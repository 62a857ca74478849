"""Profile the server under one workload: py-spy samples the worker process while wrk drives it.

    python -m bench.profile get_room [--seconds 10] [--workers 1]

Writes bench/results/profile-<workload>.txt (py-spy's flat top functions) and a speedscope JSON.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from bench import measure
from bench.run import RESULTS
from bench.wire import Client, write_pool
from bench.workloads import WORKLOADS, Pools, seed


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("workload", choices=list(WORKLOADS))
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "py-spy"], check=True)
    work = RESULTS / "profile-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    port = measure.free_port()
    with measure.serve(measure.openrooms_command(port, work / "db", 1), port, work / "server.log") as server:
        client = Client(server.host, server.port)
        fixture = seed(client, 1000)
        client.close()
        pools = Pools(fixture, f"{server.host}:{server.port}")
        pool = write_pool(work / "pool", pools.pool(WORKLOADS[args.workload][0]))
        worker = server.pids[-1]  # granian's worker: the Python process that runs the app
        output = RESULTS / f"profile-{args.workload}"
        # --nonblocking: py-spy otherwise stops the worker for each sample, and the stops land mostly on lines
        # around system calls (`asyncio.get_running_loop`, which calls getpid, showed a quarter of the loop's time).
        spy = subprocess.Popen([py_spy, "record", "--nonblocking", "--pid", str(worker), "--duration",
                                str(args.seconds), "--rate", "250", "--format", "speedscope",
                                "--output", f"{output}.speedscope.json"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        result = measure.run_wrk(server, pool, seconds=args.seconds, connections=args.connections)
        spy.wait()
        print(f"{args.workload}: {result.requests_per_second} req/s under the profiler; p99 {result.p99_ms} ms")
        # a flat summary: py-spy's top functions by own and total time
        top = subprocess.run([py_spy, "dump", "--pid", str(worker)], capture_output=True, text=True).stdout
        (RESULTS / f"profile-{args.workload}.txt").write_text(top)
    print(f"wrote {output}.speedscope.json")


if __name__ == "__main__":
    main()
