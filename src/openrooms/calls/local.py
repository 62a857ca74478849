"""A local Janus for development and tests: a private configuration folder (VideoRoom plugin and WebSocket
transport only, stock ICE settings) and the `janus -F <folder>` process; and a private network namespace for call
tests and benchmarks (neither Janus nor Chromium uses loopback for ICE: in a namespace of its own with a veth
pair, media never leaves the machine)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

CLONE_NEWNET = 0x40000000

PLUGINS = Path("/usr/lib/x86_64-linux-gnu/janus/plugins")
TRANSPORTS = Path("/usr/lib/x86_64-linux-gnu/janus/transports")


def write_config(folder: Path, *, ws_port: int, api_secret: str, rtp_ports: tuple[int, int] = (20000, 20999),
                 interface: str = "127.0.0.1") -> Path:
    """Write Janus's configuration into `folder` (created) and answer it."""
    folder.mkdir(parents=True, exist_ok=True)
    plugins = PLUGINS if PLUGINS.is_dir() else Path("/usr/lib/janus/plugins")
    transports = TRANSPORTS if TRANSPORTS.is_dir() else Path("/usr/lib/janus/transports")
    (folder / "janus.jcfg").write_text(f"""general: {{
    configs_folder = "{folder}"
    plugins_folder = "{plugins}"
    transports_folder = "{transports}"
    events_folder = "{folder}/none"
    loggers_folder = "{folder}/none"
    log_to_stdout = true
    debug_level = 3
    api_secret = "{api_secret}"
    session_timeout = 60
}}
media: {{
    rtp_port_range = "{rtp_ports[0]}-{rtp_ports[1]}"
}}
nat: {{
}}
plugins: {{
    disable = "{_others(plugins, 'libjanus_videoroom.so')}"
}}
transports: {{
    disable = "{_others(transports, 'libjanus_websockets.so')}"
}}
events: {{
    broadcast = false
}}
""")
    (folder / "janus.plugin.videoroom.jcfg").write_text("general: {\n}\n")
    (folder / "janus.transport.websockets.jcfg").write_text(f"""general: {{
    json = "compact"
    ws = true
    ws_port = {ws_port}
    ws_ip = "{interface}"
    wss = false
}}
admin: {{
    admin_ws = false
    admin_wss = false
}}
""")
    return folder


def _others(folder: Path, keep: str) -> str:
    return ",".join(sorted(p.name for p in folder.glob("*.so") if p.name != keep))


def janus_binary() -> str | None:
    return shutil.which("janus")


def start(folder: Path, log: Path) -> subprocess.Popen[bytes]:
    binary = janus_binary()
    if binary is None:
        raise FileNotFoundError("janus is not installed (apt-get install janus)")
    with log.open("wb") as out:
        # in its folder: whatever Janus writes where it runs (a core dump, should it crash) lands there
        return subprocess.Popen([binary, "-F", str(folder)], cwd=folder, stdout=out, stderr=subprocess.STDOUT)


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns failed")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextlib.contextmanager
def private_network(name: str) -> Iterator[str]:
    """Create network namespace `name` (root; `ip netns`) with `lo` and a veth pair (10.203.0.1 and .2), and
    delete it afterwards. Enter it with `inside`."""
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
        _ip("-n", name, "addr", "add", "10.203.0.1/24", "dev", "v0")
        _ip("-n", name, "addr", "add", "10.203.0.2/24", "dev", "v1")
        _ip("-n", name, "link", "set", "v0", "up")
        _ip("-n", name, "link", "set", "v1", "up")
        yield name
    finally:
        _ip("netns", "del", name)


@contextlib.contextmanager
def inside(name: str) -> Iterator[None]:
    """Move the calling thread into namespace `name` (the sockets it opens and the processes it starts meanwhile
    live there; they stay there after), and back to where it was."""
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(original)
    finally:
        os.close(original)
