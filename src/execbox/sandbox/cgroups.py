"""Per-box cgroups: memory, CPU and process limits, OOM accounting, and kill-everything.

Each box gets one cgroup per controller under an ``execbox`` parent at the top of the
hierarchy (not under the server's own cgroup): ``/sys/fs/cgroup/<controller>/execbox/<box>``
on cgroup v1, ``/sys/fs/cgroup/execbox/<box>`` on v2. A process joins by writing its pid
to every ``procs_files()`` entry before it execs the sandbox, so everything it forks is
born inside. ``Cgroup.for_box`` picks the implementation the host supports.

A box's live Python kernel (fork-server path) sits in a child cgroup, ``kernel``: the
box's limits cover it (limits are hierarchical), but the sweep that follows every other
execution (``kill()``) leaves it alone; ``kill(recursive=True)`` and ``remove()`` do not.
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
KERNEL_LEAF = "kernel"
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


def favor_dynmods() -> bool:
    """Put the kernel's cgroup locking in "favor dynamic modifications" mode.

    Moving a process into a cgroup otherwise waits for an RCU grace period after the
    system was idle (5-9 ms measured on cgroup v1), on every fork-server execution. With
    it, the move takes ~0.5 ms; forks and exits host-wide pay slightly more. On v1 the
    mode is switched on by mounting a named hierarchy with the option (it stays on until
    reboot once set; the mount itself is removed at once); on v2 by remounting the
    unified hierarchy with it. Best effort: False when the kernel refuses.
    """
    import subprocess
    import tempfile

    try:
        if version() == 2:
            cmd = ["mount", "-o", "remount,favordynmods", str(ROOT)]
            return subprocess.run(cmd, capture_output=True, timeout=10).returncode == 0
        with tempfile.TemporaryDirectory(prefix="execbox-cgroup-") as where:
            cmd = ["mount", "-t", "cgroup", "-o", "none,name=execbox-favordynmods,favordynmods", "cgroup", where]
            if subprocess.run(cmd, capture_output=True, timeout=10).returncode != 0:
                return False
            subprocess.run(["umount", where], capture_output=True, timeout=10)
            return True
    except (OSError, subprocess.SubprocessError):
        return False


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

    def procs_files(self, leaf: str | None = None) -> list[Path]:
        return [(d / leaf if leaf else d) / "cgroup.procs" for d in self.dirs]

    def pids(self, recursive: bool = False) -> list[int]:
        found = _pids(self.procs_files()[0])
        return found + _pids(self.procs_files(KERNEL_LEAF)[0]) if recursive else found

    def _make_leaves(self) -> None:
        for d in self.dirs:
            (d / KERNEL_LEAF).mkdir(exist_ok=True)

    def oom_kills(self) -> int:
        """How many processes the kernel's OOM killer has killed in this cgroup so far."""
        raise NotImplementedError

    def cpu_seconds(self) -> float:
        """CPU time consumed by the cgroup so far."""
        raise NotImplementedError

    def kill(self, wait_s: float = 5.0, recursive: bool = False) -> bool:
        """SIGKILL every process in the cgroup (and its kernel's, if ``recursive``); True
        once that is empty."""
        raise NotImplementedError

    def remove(self) -> None:
        """Kill what is left and delete the cgroups."""
        self.kill(recursive=True)
        for d in self.dirs:
            for path in (d / KERNEL_LEAF, d):
                for _ in range(100):  # rmdir is EBUSY until exiting tasks are fully gone
                    try:
                        path.rmdir()
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.01)

    def _wait_empty(self, deadline: float, recursive: bool = False) -> bool:
        while self.pids(recursive):
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
        self._make_leaves()

    def pids(self, recursive: bool = False) -> list[int]:
        freezer = self._dir("freezer")
        found = _pids(freezer / "cgroup.procs")
        return found + _pids(freezer / KERNEL_LEAF / "cgroup.procs") if recursive else found

    def oom_kills(self) -> int:
        # v1 counts a kill in the victim's own cgroup only (not its parents'): add the kernel's.
        memory = self._dir("memory")
        return sum(_counter(d / "memory.oom_control", "oom_kill") for d in (memory, memory / KERNEL_LEAF))

    def cpu_seconds(self) -> float:
        try:
            return int((self._dir("cpuacct") / "cpuacct.usage").read_text()) / 1e9
        except FileNotFoundError:
            return 0.0

    def kill(self, wait_s: float = 5.0, recursive: bool = False) -> bool:
        deadline = time.monotonic() + wait_s
        state = self._dir("freezer") / "freezer.state"
        while self.pids(recursive):
            if time.monotonic() > deadline:
                return False
            # Frozen, nothing can fork while we kill; thawed, the SIGKILLs are delivered.
            # (Freezing is hierarchical: a kernel spared here is only paused for a moment.)
            _write(state, "FROZEN")
            while state.read_text().strip() != "FROZEN" and time.monotonic() < deadline:
                time.sleep(0.001)
            for pid in self.pids(recursive):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            _write(state, "THAWED")
            self._wait_empty(min(deadline, time.monotonic() + 0.5), recursive)
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
        self._make_leaves()

    def oom_kills(self) -> int:
        return _counter(self.dirs[0] / "memory.events", "oom_kill")

    def cpu_seconds(self) -> float:
        return _counter(self.dirs[0] / "cpu.stat", "usage_usec") / 1e6

    def kill(self, wait_s: float = 5.0, recursive: bool = False) -> bool:
        d = self.dirs[0]
        deadline = time.monotonic() + wait_s
        if not self.pids(recursive):
            return True
        if recursive and (d / "cgroup.kill").exists():  # cgroup.kill takes descendants too
            _write(d / "cgroup.kill", 1)
            return self._wait_empty(deadline, recursive)
        while self.pids(recursive) and time.monotonic() < deadline:
            _write(d / "cgroup.freeze", 1)
            for pid in self.pids(recursive):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            _write(d / "cgroup.freeze", 0)
            self._wait_empty(min(deadline, time.monotonic() + 0.5), recursive)
        return not self.pids(recursive)
