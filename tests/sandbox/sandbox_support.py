"""Shared by the sandbox tests: test-sized limits, fixture types, host-side probes."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from execbox.sandbox.cgroups import Cgroup
from execbox.sandbox.types import Box, Engine, ExecResult, Limits

TEST_LIMITS = Limits(
    memory_bytes=256 * 1024**2,
    cpus=1.0,
    pids=64,
    disk_bytes=64 * 1024**2,
    nofile=128,
    open_files=2048,  # 32 per process
    timeout_s=10.0,  # generous for imports on a loaded machine; timeout tests pass their own
    output_bytes=64 * 1024,
    output_file_bytes=1024 * 1024,
    output_total_bytes=4 * 1024 * 1024,
)
# Forks until the pids limit refuses; prints how many children it made and the errno.
FORK_BOMB = (
    "import errno, os, time\n"
    "children = 0\n"
    "try:\n"
    "    while True:\n"
    "        if os.fork() == 0:\n            time.sleep(60)\n            os._exit(0)\n"
    "        children += 1\n"
    "except OSError as e:\n    print(children, errno.errorcode[e.errno])\n"
)
MakeBox = Callable[..., Awaitable[Box]]
EngineWith = Callable[[Limits], Awaitable[Engine]]
Run = Callable[..., Awaitable[ExecResult]]


def host_pids_of(uid: int) -> list[int]:
    """Live host processes whose real uid is ``uid`` (zombies, already dead, are left out)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields["Uid"].split()[0]) == uid and not fields["State"].strip().startswith("Z"):
            pids.append(int(entry))
    return pids


def read(engine: Engine, box: Box, path: str) -> bytes:
    """A workspace file's contents, as the files API reads them."""
    with engine.open_file(box, path, 1024 * 1024) as file:
        return file.read()


async def live_pids_of(uid: int, within_s: float = 2.0, leaving: tuple[int, ...] = ()) -> list[int]:
    """``host_pids_of(uid)`` once only ``leaving`` are left, or when ``within_s`` ran out: a
    killed process leaves its cgroup a moment before it turns into a zombie."""
    deadline = time.monotonic() + within_s
    while sorted(host_pids_of(uid)) != sorted(leaving) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return sorted(host_pids_of(uid))


async def drained(cgroup: Cgroup, within_s: float = 2.0, leaving: tuple[int, ...] = ()) -> list[int]:
    """The cgroup's pids once only ``leaving`` are left, or when ``within_s`` ran out. On the
    fork path a finished execution's processes are already killed when it returns, but pid 1
    of its namespace (the forked interpreter) is still being torn down for a few ms."""
    deadline = time.monotonic() + within_s
    while sorted(cgroup.pids(recursive=True)) != sorted(leaving) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return sorted(cgroup.pids(recursive=True))
