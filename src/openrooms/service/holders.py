"""Lease holders named after their process, so that a lease whose holder has died on this machine is taken over at
once rather than when it runs out (docs/events.md, "Many instances").

A dispatcher names itself `<boot id>/<pid namespace>/<pid>/<start time>/<random>`. Another dispatcher can tell for
sure that such a holder is gone only when it runs under the same kernel boot and in the same pid namespace (then
`/proc/<pid>` is that process, if it still runs, and its start time tells it from a later process given the same
pid). Anything else (another machine, another container's pid namespace, a name of another form) is never judged
gone: its lease is waited out, as before.
"""

from __future__ import annotations

import functools
import os
import uuid
from pathlib import Path


@functools.cache
def _here() -> tuple[str, str] | None:
    """This machine's boot id and this process's pid namespace, or None where /proc does not tell them."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return boot, namespace.removeprefix("pid:[").removesuffix("]")


def _start_time(pid: int) -> str | None:
    """A process's start time (clock ticks since boot, field 22 of /proc/<pid>/stat); None if it does not run.
    Raises PermissionError where /proc hides other users' processes (`hidepid`): it may well run."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):  # no such process, or it was reaped while being read
        return None
    fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces
    return fields[19] if len(fields) > 19 and fields[0] not in ("Z", "X") else None


def name() -> str:
    """A lease holder's name for a dispatcher of this process."""
    here = _here()
    pid = os.getpid()
    started = _start_time(pid) if here is not None else None
    if here is None or started is None:
        return str(uuid.uuid4())
    return f"{here[0]}/{here[1]}/{pid}/{started}/{uuid.uuid4().hex}"


def gone(holder: str | None) -> bool:
    """Whether `holder` is certainly a process of this machine and pid namespace that no longer runs."""
    here = _here()
    if holder is None or here is None:
        return False
    parts = holder.split("/")
    if len(parts) != 5 or (parts[0], parts[1]) != here or not parts[2].isdigit():
        return False
    try:
        return _start_time(int(parts[2])) != parts[3]
    except OSError:  # hidden from this user, or unreadable: it cannot be told, so it is not gone
        return False
