"""Per-box cgroups: memory, CPU and process limits, OOM accounting, and kill-everything.

Each box gets one cgroup per controller under an ``execbox`` parent at the top of the
hierarchy (not under the server's own cgroup): ``/sys/fs/cgroup/<controller>/execbox/<box>``
on cgroup v1, ``/sys/fs/cgroup/execbox/<box>`` on v2. A process joins by writing its pid
to every ``procs_files()`` entry before it execs the sandbox, so everything it forks is
born inside. ``Cgroup.for_box`` picks the implementation the host supports.
"""

from __future__ import annotations

import os
import signal
import time
from functools import cache
from pathlib import Path

from execbox.sandbox.types import Limits

ROOT = Path("/sys/fs/cgroup")
PARENT = "execbox"
CFS_PERIOD_US = 100_000
V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids", "freezer")
V2_CONTROLLERS = ("memory", "cpu", "pids")


def _write(path: Path, value: object) -> None:
    path.write_text(f"{value}\n")


def _pids(procs: Path) -> list[int]:
    try:
        return [int(line) for line in procs.read_text().split()]
    except FileNotFoundError:
        return []


def _counter(path: Path, key: str) -> int:
    """A ``key value`` line of a cgroup stats file (0 when absent)."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except FileNotFoundError:
        pass
    return 0


@cache
def version() -> int | None:
    """The cgroup version usable for boxes: 2 (unified with controllers), 1, or None."""
    controllers = ROOT / "cgroup.controllers"
    if controllers.exists():
        return 2 if set(V2_CONTROLLERS) <= set(controllers.read_text().split()) else None
    if all((ROOT / name / "cgroup.procs").exists() for name in V1_CONTROLLERS):
        return 1
    return None


class Cgroup:
    """One box's cgroups. Methods are idempotent; ``kill`` and ``remove`` block briefly."""

    def __init__(self, box_id: str) -> None:
        self.box_id = box_id

    @staticmethod
    def for_box(box_id: str) -> Cgroup:
        found = version()
        if found == 1:
            return CgroupV1(box_id)
        if found == 2:
            return CgroupV2(box_id)
        raise RuntimeError("no usable cgroup hierarchy with memory, cpu and pids controllers")

    @property
    def dirs(self) -> list[Path]:
        raise NotImplementedError

    def create(self, limits: Limits) -> None:
        """Create the cgroups (if missing) and apply ``limits``."""
        raise NotImplementedError

    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in self.dirs]

    def pids(self) -> list[int]:
        return _pids(self.procs_files()[0])

    def oom_kills(self) -> int:
        """How many processes the kernel's OOM killer has killed in this cgroup so far."""
        raise NotImplementedError

    def cpu_seconds(self) -> float:
        """CPU time consumed by the cgroup so far."""
        raise NotImplementedError

    def kill(self, wait_s: float = 5.0) -> bool:
        """SIGKILL every process in the cgroup; True once it is empty."""
        raise NotImplementedError

    def remove(self) -> None:
        """Kill what is left and delete the cgroups."""
        self.kill()
        for d in self.dirs:
            for _ in range(100):  # rmdir is EBUSY until exiting tasks are fully gone
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)

    def _wait_empty(self, deadline: float) -> bool:
        while self.pids():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)
        return True


@cache
def _v1_root(controller: str) -> Path:
    # Co-mounted controllers (cpu,cpuacct) are one directory under two names.
    return (ROOT / controller).resolve()


class CgroupV1(Cgroup):
    @property
    def dirs(self) -> list[Path]:
        return [root / PARENT / self.box_id for root in dict.fromkeys(map(_v1_root, V1_CONTROLLERS))]

    def _dir(self, controller: str) -> Path:
        return _v1_root(controller) / PARENT / self.box_id

    def create(self, limits: Limits) -> None:
        for d in self.dirs:
            d.mkdir(parents=True, exist_ok=True)
        memory = self._dir("memory")
        memsw = memory / "memory.memsw.limit_in_bytes"
        # The memory+swap limit can never be below the memory limit: order the writes.
        try:
            _write(memory / "memory.limit_in_bytes", limits.memory_bytes)
            if memsw.exists():
                _write(memsw, limits.memory_bytes)
        except OSError:
            _write(memsw, limits.memory_bytes)
            _write(memory / "memory.limit_in_bytes", limits.memory_bytes)
        _write(memory / "memory.swappiness", 0)
        cpu = self._dir("cpu")
        _write(cpu / "cpu.cfs_period_us", CFS_PERIOD_US)
        _write(cpu / "cpu.cfs_quota_us", max(1000, int(limits.cpus * CFS_PERIOD_US)))
        _write(self._dir("pids") / "pids.max", limits.pids)

    def pids(self) -> list[int]:
        return _pids(self._dir("freezer") / "cgroup.procs")

    def oom_kills(self) -> int:
        return _counter(self._dir("memory") / "memory.oom_control", "oom_kill")

    def cpu_seconds(self) -> float:
        try:
            return int((self._dir("cpuacct") / "cpuacct.usage").read_text()) / 1e9
        except FileNotFoundError:
            return 0.0

    def kill(self, wait_s: float = 5.0) -> bool:
        deadline = time.monotonic() + wait_s
        state = self._dir("freezer") / "freezer.state"
        while self.pids():
            if time.monotonic() > deadline:
                return False
            # Frozen, nothing can fork while we kill; thawed, the SIGKILLs are delivered.
            _write(state, "FROZEN")
            while state.read_text().strip() != "FROZEN" and time.monotonic() < deadline:
                time.sleep(0.001)
            for pid in self.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            _write(state, "THAWED")
            self._wait_empty(min(deadline, time.monotonic() + 0.5))
        return True


class CgroupV2(Cgroup):
    @property
    def dirs(self) -> list[Path]:
        return [ROOT / PARENT / self.box_id]

    def create(self, limits: Limits) -> None:
        parent = ROOT / PARENT
        parent.mkdir(exist_ok=True)
        enable = " ".join(f"+{name}" for name in V2_CONTROLLERS)
        _write(ROOT / "cgroup.subtree_control", enable)
        _write(parent / "cgroup.subtree_control", enable)
        d = self.dirs[0]
        d.mkdir(exist_ok=True)
        _write(d / "memory.max", limits.memory_bytes)
        if (d / "memory.swap.max").exists():
            _write(d / "memory.swap.max", 0)
        _write(d / "cpu.max", f"{max(1000, int(limits.cpus * CFS_PERIOD_US))} {CFS_PERIOD_US}")
        _write(d / "pids.max", limits.pids)

    def oom_kills(self) -> int:
        return _counter(self.dirs[0] / "memory.events", "oom_kill")

    def cpu_seconds(self) -> float:
        return _counter(self.dirs[0] / "cpu.stat", "usage_usec") / 1e6

    def kill(self, wait_s: float = 5.0) -> bool:
        d = self.dirs[0]
        deadline = time.monotonic() + wait_s
        if not self.pids():
            return True
        if (d / "cgroup.kill").exists():
            _write(d / "cgroup.kill", 1)
            return self._wait_empty(deadline)
        while self.pids() and time.monotonic() < deadline:
            _write(d / "cgroup.freeze", 1)
            for pid in self.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            _write(d / "cgroup.freeze", 0)
            self._wait_empty(min(deadline, time.monotonic() + 0.5))
        return not self.pids()
