"""`python -m openrooms.testing [options] [COMMAND ...]`: the emulator for test suites in other languages.

With a command (e.g. `node --test`), starts the emulator, runs the command with the emulator's details in its
environment, stops the emulator and exits with the command's status. Without one, prints the details and serves
until interrupted (Ctrl-C or SIGTERM).

The environment of the command:
  OPENROOMS_CONNECTION_STRING  endpoint=https://127.0.0.1:<port>/;accesskey=<key>
  OPENROOMS_ENDPOINT           https://127.0.0.1:<port>/
  OPENROOMS_CA                 the path of the emulator's CA certificate (PEM)
  NODE_EXTRA_CA_CERTS          the same path, so that Node trusts the emulator
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading

from openrooms.testing import Emulator


def environment(emulator: Emulator) -> dict[str, str]:
    """What a command run next to the emulator needs to reach it."""
    env = {"OPENROOMS_CONNECTION_STRING": emulator.connection_string, "OPENROOMS_ENDPOINT": emulator.endpoint}
    if emulator.tls:
        env.update({"OPENROOMS_CA": emulator.ca, "NODE_EXTRA_CA_CERTS": emulator.ca})
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m openrooms.testing",
        description="Run COMMAND next to an in-memory openrooms emulator (or, without one, serve until stopped).",
    )
    parser.add_argument("--no-tls", action="store_true", help="serve plain HTTP instead of HTTPS with a CA")
    parser.add_argument("--page-size", type=int, default=None, help="items per page of a listing")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, e.g. node --test")
    args = parser.parse_args(argv)
    settings = {} if args.page_size is None else {"page_size": args.page_size}
    with Emulator(tls=not args.no_tls, **settings) as emulator:
        env = environment(emulator)
        if args.command:
            return subprocess.run(args.command, env={**os.environ, **env}, check=False).returncode
        for name, value in env.items():
            print(f"{name}={value}", flush=True)
        stopped = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        with contextlib.suppress(KeyboardInterrupt):
            stopped.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
