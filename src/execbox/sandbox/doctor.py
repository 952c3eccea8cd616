"""``execbox doctor``: which isolation features work on this host, tried for real.

Every namespace of the sandbox policy (``policy.NAMESPACES``), the seccomp filter, the
cgroup hierarchy and the loop-mounted disk are exercised in throwaway sandboxes (as an
unprivileged uid, like real boxes), not guessed from kernel configuration; then the fork
server is started and one execution runs on it through the same policy. ``serve`` refuses
to start on any FAIL unless ``--insecure``; a fork server that does not work is a warning
(executions then take the reference path).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from execbox.sandbox import cgroups, disk, policy, seccomp
from execbox.sandbox.cgroups import Cgroup
from execbox.sandbox.runtime import is_complete, library_versions, resolve_runtime_dir
from execbox.sandbox.types import Limits

# An otherwise unused uid for the probes (boxes get their own, from the containers layer).
PROBE_UID = 65533
PROBE_TIMEOUT_S = 20
# How the probe asks bwrap for each namespace of the policy.
NAMESPACE_PROBES = {
    "user": ["--uid", "1000"],
    "mount": ["--tmpfs", "/tmp"],
    "pid": ["--unshare-pid"],
    "net": ["--unshare-net"],
    "ipc": ["--unshare-ipc"],
    "uts": ["--unshare-uts"],
    "cgroup": ["--unshare-cgroup"],
}
KEY_LIBRARIES = ("numpy", "pandas", "scipy", "scikit-learn", "matplotlib")
# Per cgroup version: what each controller must show in a box cgroup, and the verdict without it.
CGROUP_FILES: dict[int, dict[str, tuple[str, Literal["FAIL", "warn"]]]] = {
    1: {
        "memory": ("memory.limit_in_bytes", "FAIL"),
        "memory+swap": ("memory.memsw.limit_in_bytes", "warn"),  # harmless on hosts without swap
        "cpu": ("cpu.cfs_quota_us", "FAIL"),
        "cpuacct": ("cpuacct.usage", "warn"),
        "pids": ("pids.max", "FAIL"),
        "freezer (kill)": ("freezer.state", "FAIL"),
    },
    2: {
        "memory": ("memory.max", "FAIL"),
        "memory+swap": ("memory.swap.max", "warn"),
        "cpu": ("cpu.max", "FAIL"),
        "pids": ("pids.max", "FAIL"),
        "kill": ("cgroup.kill", "warn"),  # before Linux 5.14: freeze and kill each process
    },
}


@dataclass(frozen=True)
class Check:
    name: str
    verdict: Literal["ok", "FAIL", "warn"]
    detail: str


def _probe(extra: list[str], command: list[str], pass_fds: tuple[int, ...] = ()) -> subprocess.CompletedProcess:
    """Run ``command`` in a minimal bwrap sandbox as PROBE_UID."""
    argv = [
        "setpriv", f"--reuid={PROBE_UID}", f"--regid={PROBE_UID}", "--clear-groups", "--inh-caps=-all",
        "--bounding-set=-all", "bwrap", "--unshare-user", "--die-with-parent", *extra,
        "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
        "--symlink", "usr/lib64", "/lib64", "--proc", "/proc", "--dev", "/dev", "--", *command,
    ]
    return subprocess.run(argv, capture_output=True, text=True, pass_fds=pass_fds, timeout=PROBE_TIMEOUT_S,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, stdin=subprocess.DEVNULL)


def _failure(result: subprocess.CompletedProcess) -> str:
    lines = (result.stderr or result.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit status {result.returncode}"


def _check_root() -> Check:
    if os.geteuid() == 0:
        return Check("root", "ok", "running as root")
    return Check("root", "FAIL", f"running as uid {os.geteuid()}: sandboxes need root to set up")


def _check_tools() -> list[Check]:
    checks = []
    if shutil.which("bwrap"):
        version = subprocess.run(["bwrap", "--version"], capture_output=True, text=True).stdout.strip()
        checks.append(Check("bubblewrap", "ok", version))
    else:
        checks.append(Check("bubblewrap", "FAIL", "bwrap not found: apt-get install bubblewrap"))
    if shutil.which("setpriv"):
        checks.append(Check("setpriv", "ok", shutil.which("setpriv") or ""))
    else:
        checks.append(Check("setpriv", "FAIL", "setpriv not found: apt-get install util-linux"))
    return checks


def _check_namespaces() -> list[Check]:
    checks = []
    for name in policy.NAMESPACES:
        result = _probe(NAMESPACE_PROBES[name], ["/usr/bin/true"])
        if result.returncode == 0:
            checks.append(Check(f"namespace: {name}", "ok", "created as an unprivileged user"))
        else:
            checks.append(Check(f"namespace: {name}", "FAIL", _failure(result)))
    result = _probe(["--disable-userns"], ["/usr/bin/unshare", "--user", "/usr/bin/true"])
    if result.returncode != 0:
        checks.append(Check("nested user namespaces", "ok", "refused inside the sandbox"))
    else:
        checks.append(Check("nested user namespaces", "FAIL", "sandboxed code could create user namespaces"))
    return checks


def _check_seccomp() -> Check:
    test = (
        "import errno, socket\n"
        "try:\n    socket.socket(socket.AF_INET)\nexcept OSError as e:\n"
        "    raise SystemExit(0 if e.errno == errno.EAFNOSUPPORT else 3)\n"
        "raise SystemExit(4)\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = seccomp.export(Path(tmp) / "filter.bpf")
        size = path.stat().st_size // 8
        fd = os.open(path, os.O_RDONLY)
        try:
            result = _probe(["--unshare-net", "--seccomp", str(fd)], ["/usr/bin/python3", "-c", test], (fd,))
        finally:
            os.close(fd)
    if result.returncode == 0:
        return Check("seccomp", "ok", f"filter of {size} instructions loaded; an AF_INET socket was refused")
    return Check("seccomp", "FAIL", f"the filter did not take effect: {_failure(result)}")


def _check_cgroups() -> list[Check]:
    version = cgroups.version()
    if version is None:
        return [Check("cgroups", "FAIL", "no hierarchy with memory, cpu and pids controllers")]
    probe = Cgroup.for_box(f"doctor-{uuid.uuid4().hex[:8]}")
    try:
        probe.create(Limits())
        present = {name for d in probe.dirs for name in os.listdir(d)}
    except OSError as exc:
        return [Check("cgroups", "FAIL", f"cgroup v{version}, but creating a box cgroup failed: {exc}")]
    finally:
        probe.remove()
    checks = [Check("cgroups", "ok", f"cgroup v{version}, box cgroups under {cgroups.PARENT}/")]
    for name, (file, missing) in CGROUP_FILES[version].items():
        if file in present:
            checks.append(Check(f"cgroup: {name}", "ok", file))
        else:
            checks.append(Check(f"cgroup: {name}", missing, f"{file} missing"))
    return checks


def _check_disk() -> Check:
    if not shutil.which("mkfs.ext4") or not Path("/dev/loop-control").exists():
        return Check("disk quota", "FAIL", "needs mkfs.ext4 (e2fsprogs) and loop devices")
    with tempfile.TemporaryDirectory() as tmp:
        image, mount = Path(tmp) / "disk.img", Path(tmp) / "mnt"
        mount.mkdir()
        with open(image, "wb") as fh:
            fh.truncate(8 * 1024 * 1024)
        steps = [[*disk.MKFS, str(image)], ["mount", "-o", disk.MOUNT_OPTIONS, str(image), str(mount)]]
        try:
            for step in steps:
                result = subprocess.run(step, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
                if result.returncode != 0:
                    return Check("disk quota", "FAIL", f"loop-mounted ext4: {_failure(result)}")
            return Check("disk quota", "ok", "loop-mounted ext4 per box")
        finally:
            if os.path.ismount(mount):
                subprocess.run(["umount", str(mount)], capture_output=True)


def _check_runtime(runtime_dir: Path) -> list[Check]:
    if not is_complete(runtime_dir):
        return [Check("runtime", "FAIL", f"{runtime_dir} is not built: run `execbox setup-runtime`")]
    cfg = (runtime_dir / "pyvenv.cfg").read_text() if (runtime_dir / "pyvenv.cfg").exists() else ""
    version = next((line.split("=", 1)[1].strip() for line in cfg.splitlines()
                    if line.split("=")[0].strip() in ("version", "version_info")), "unknown")
    versions = library_versions(runtime_dir)
    libraries = ", ".join(f"{name} {versions[name]}" for name in KEY_LIBRARIES if name in versions)
    return [
        Check("runtime", "ok", f"{runtime_dir} (Python {version})"),
        Check("runtime libraries", "ok" if libraries else "warn",
              f"{len(versions)} packages: {libraries}" if libraries else "no libraries found"),
    ]


FORK_PROBE = (
    "import os, socket\n"
    "try:\n    socket.socket(socket.AF_INET)\n    print('inet allowed')\n"
    "except OSError:\n    print('inet refused')\n"
    "print(os.getuid(), os.getcwd(), open('/proc/self/status').read().split('Seccomp:')[1].split()[0])\n"
)


def _check_fork_server(runtime_dir: Path | None) -> list[Check]:
    """Start a fork server and run one execution through it in a throwaway box."""
    import asyncio

    from execbox.sandbox.forkengine import ForkEngine
    from execbox.sandbox.types import Box, ExecRequest

    async def probe() -> tuple[str, str, bool]:
        with tempfile.TemporaryDirectory(prefix="execbox-doctor-") as tmp:
            os.chmod(tmp, 0o711)
            engine = ForkEngine(Limits(disk_bytes=16 * 1024**2, timeout_s=20), Path(tmp, "state"), runtime_dir)
            await engine.start()
            box = Box(f"doctor_{uuid.uuid4().hex[:8]}", PROBE_UID, Path(tmp, "box"))
            try:
                if engine.fork is None or not engine.fork.ready:
                    return "", "the fork server did not start (see the log lines above)", False
                await engine.create_box(box)
                result = await engine.execute(box, ExecRequest("python", FORK_PROBE))
                return result.stdout, result.stderr, result.path == "fork"
            finally:
                await engine.destroy_box(box)
                await engine.stop()

    try:
        stdout, stderr, forked = asyncio.run(probe())
    except Exception as exc:  # reported, never raised: the reference path still works
        return [Check("fork server", "warn", f"{type(exc).__name__}: {exc}; executions take the reference path")]
    if forked and stdout.split() == ["inet", "refused", "1000", "/workspace", "2"]:
        dynmods = "on" if cgroups.version() == 2 or cgroups.favor_dynmods() else "off (cgroup moves cost 5-9 ms)"
        return [Check("fork server", "ok", "pre-imported interpreters; a forked sandbox ran as uid 1000 with the "
                      "seccomp filter in force"), Check("cgroup favordynmods", "ok" if "on" in dynmods else "warn",
                                                       dynmods)]
    detail = (stderr or stdout).strip().splitlines()[-1:] or ["no output"]
    return [Check("fork server", "warn", f"{detail[0]}; executions take the reference path")]


def run_checks(runtime_dir: Path | None, fork_server: bool = False) -> list[Check]:
    """Every check, in order. Checks that need something missing FAIL with the reason.
    ``fork_server`` also starts a fork server and runs one execution on it."""
    checks = [_check_root(), *_check_tools()]
    prerequisites_ok = all(c.verdict == "ok" for c in checks)
    probes: list[Callable[[], Check | list[Check]]] = [_check_namespaces, _check_seccomp, _check_cgroups, _check_disk]
    for probe in probes:
        if not prerequisites_ok:
            break
        found = probe()
        checks += found if isinstance(found, list) else [found]
    if not prerequisites_ok:
        checks.append(Check("isolation probes", "FAIL", "skipped: needs root, bwrap and setpriv"))
    checks += _check_runtime(resolve_runtime_dir(runtime_dir))
    if fork_server and all(c.verdict != "FAIL" for c in checks):
        checks += _check_fork_server(runtime_dir)
    return checks


def blocking_problems(runtime_dir: Path | None) -> list[str]:
    """The FAIL lines of ``run_checks``: what ``serve`` refuses to start without."""
    return [f"{c.name}: {c.detail}" for c in run_checks(runtime_dir) if c.verdict == "FAIL"]

