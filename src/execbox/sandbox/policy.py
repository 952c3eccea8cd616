"""The sandbox policy: every namespace, mount, device, variable and limit, in one place.

Both execution paths render this one description: ``bwrap_args`` turns it into
bubblewrap's options for the reference path (``bwrap.py``), ``zygote_config`` into the
fork server's set-up for the fast path (``forkserver.py``, ``zygote_main.py``), and
``execbox doctor`` checks the host against it. The seccomp filter is ``seccomp.py``'s,
compiled once and loaded by both.

On the reference path bwrap runs as the box's own unprivileged host uid (``setpriv``
drops root first), so it builds the sandbox inside an unprivileged user namespace and
every host path below is opened with that uid's rights. On the fast path a forked child
builds the same tree as root, then enters a user namespace mapping the same uid.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

from execbox.sandbox.types import OUTPUT_DIR, SANDBOX_TMP, WORKSPACE, Limits

SANDBOX_UID = 1000
HOSTNAME = "sandbox"
# Files given to one run (the code, an editor request) appear read-only in here.
RUN_DIR = "/run/execbox"
ALTERNATIVES = "/etc/alternatives"


# Namespaces every sandbox gets (all of them); further user namespaces are refused.
NAMESPACES = ("user", "mount", "pid", "net", "ipc", "uts", "cgroup")
# The root filesystem, read-only: host trees bound in, and merged-usr symlinks.
RO_HOST_TREES = ("/usr",)
SYMLINKS = (("usr/bin", "/bin"), ("usr/sbin", "/sbin"), ("usr/lib", "/lib"), ("usr/lib64", "/lib64"))
# /dev: these host devices, plus shm (a small tmpfs) and a private pts instance.
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
SHM_BYTES = 64 * 1024**2
# Read-write directories of the container, as (path inside, Box attribute).
CONTAINER_DIRS = ((WORKSPACE, "workspace"), (SANDBOX_TMP, "tmp"), (OUTPUT_DIR, "outputs"))
# Host-wide /proc entries hidden inside the sandbox (covered by empty mounts: a
# read-only empty tmpfs over a directory, /dev/null over a file). The first four show
# other containers' disks live (each loop device's ext4 state, I/O counters and size);
# the rest identify or describe the host (boot, kernel command line and configuration,
# keys, timers, kernel memory). Entries this kernel lacks are skipped.
MASKED_PATHS: tuple[str, ...] = (
    "/proc/fs",
    "/proc/diskstats",
    "/proc/partitions",
    "/proc/swaps",
    "/proc/cmdline",
    "/proc/config.gz",
    "/proc/sys/kernel/random/boot_id",
    "/proc/kcore",
    "/proc/keys",
    "/proc/key-users",
    "/proc/timer_list",
    "/proc/sched_debug",
    "/proc/latency_stats",
    "/proc/acpi",
    "/proc/asound",
    "/proc/scsi",
)
# BLAS libraries start one spinning thread per host core unless told; under a CPU quota
# those threads only fight each other (measured: +75 ms on a numpy-heavy run at 1 CPU).
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def nofile_per_process(limits: Limits) -> int:
    """RLIMIT_NOFILE of every sandboxed process. Linux bounds open files per process only,
    and a container has at most ``limits.pids`` processes, so this bounds the container's
    open files in total by ``limits.open_files``: ``nofile_per_process x pids <= open_files``.
    (Files kept alive only by a memory mapping escape RLIMIT_NOFILE; the memory cgroup,
    which charges each to the container, bounds those.)"""
    return max(1, min(limits.nofile, limits.open_files // max(1, limits.pids)))


# The host's share of its open-file table (fs.file-max) that containers may hold
# together; the rest stays for the server and every other process.
FILE_TABLE_SHARE = 0.5
# Open files per process below which fitting the file table gives up (and says so).
MIN_NOFILE = 16


def fit_file_table(limits: Limits, containers: int, file_max: int) -> Limits:
    """``limits`` with ``open_files`` lowered, if need be, so that ``containers`` holding
    processes at once (those running an execution, plus live kernels) hold at most
    ``FILE_TABLE_SHARE`` of ``file_max`` together; never below MIN_NOFILE per process."""
    share = int(file_max * FILE_TABLE_SHARE) // max(1, containers)
    floor = MIN_NOFILE * max(1, limits.pids)
    return replace(limits, open_files=max(floor, min(limits.open_files, share)))


def sandbox_env(runtime_dir: Path, cpus: float = 1.0) -> dict[str, str]:
    """The complete environment of sandboxed processes (nothing is inherited)."""
    threads = str(max(1, math.ceil(cpus)))
    return {
        **{name: threads for name in BLAS_THREAD_VARIABLES},
        "PATH": f"{runtime_dir}/bin:/usr/bin:/bin",
        "HOME": WORKSPACE,
        # The code runs as a script in RUN_DIR; this keeps the workspace importable.
        "PYTHONPATH": WORKSPACE,
        "PYTHONUNBUFFERED": "1",
        "OUTPUT_DIR": OUTPUT_DIR,
        "TMPDIR": SANDBOX_TMP,
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": f"{SANDBOX_TMP}/.matplotlib",
        "LANG": "C.UTF-8",
        "USER": "sandbox",
    }


def bwrap_args(
    *,
    runtime_dir: Path,
    etc: Etc,
    etc_files: dict[str, int],
    workspace: Path,
    tmp: Path,
    outputs: Path | None,
    seccomp_fd: int,
    run_files: dict[str, int],
    cpus: float = 1.0,
    masked_dirs: frozenset[str] = frozenset(),
) -> list[str]:
    """bwrap's options (passed with ``--args FD``) for one run.

    Namespaces: all new (user, mount, pid, net, ipc, uts, cgroup); further user
    namespaces disabled; uid/gid 1000 inside, the box uid outside; no capabilities; a
    new session (no TIOCSTI into the caller's terminal); killed with its parent.

    Filesystem (the root is a fresh tmpfs, made read-only once built):

    - ``/usr`` read-only, and the merged-usr symlinks ``/bin /sbin /lib /lib64``;
    - ``/etc`` read-only: the minimal ``etc`` (passwd/group with the sandbox user, hosts,
      nsswitch.conf, ld.so.cache, localtime, os-release, the host's alternatives), each
      file from its fd in ``etc_files``; nothing else of the host's /etc (no shadow, no
      machine secrets), and no host path of the server's data in the mount table;
    - ``runtime_dir`` read-only at its host path (its matplotlib font cache and console
      scripts record absolute paths);
    - ``/workspace`` and ``/tmp`` read-write: the box's ``workspace`` and ``tmp`` dirs;
    - ``/outputs`` read-write: the box's ``outputs`` dir, emptied before every execution
      (when given);
    - ``/run/execbox/<name>`` read-only: the bytes of each fd in ``run_files``;
    - ``/proc`` for the new pid namespace, with ``MASKED_PATHS`` hidden; ``/dev``
      minimal (null, zero, full, random, urandom, tty, shm, pts); no ``/sys``.

    Environment: cleared, then ``sandbox_env``. Seccomp: the filter at ``seccomp_fd``.
    """
    args = [
        "--unshare-all", "--unshare-user", "--disable-userns",
        "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
        "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--hostname", HOSTNAME,
    ]
    for tree in RO_HOST_TREES:
        args += ["--ro-bind", tree, tree]
    for target, link in SYMLINKS:
        args += ["--symlink", target, link]
    for name, fd in etc_files.items():
        args += ["--perms", "0644", "--file", str(fd), f"/etc/{name}"]  # read-only with the root
    for name, target in etc.links.items():
        args += ["--symlink", target, f"/etc/{name}"]
    if etc.alternatives:
        args += ["--ro-bind", ALTERNATIVES, ALTERNATIVES]
    args += [
        "--ro-bind", str(runtime_dir), str(runtime_dir),
        "--proc", "/proc", "--dev", "/dev",
        "--bind", str(workspace), WORKSPACE,
        "--bind", str(tmp), SANDBOX_TMP,
    ]
    if outputs is not None:
        args += ["--bind", str(outputs), OUTPUT_DIR]
    for path in MASKED_PATHS:
        if path in masked_dirs:
            args += ["--perms", "0555", "--tmpfs", path, "--remount-ro", path]
        elif os.path.exists(path):  # what this kernel lacks needs no mask (and cannot take one)
            args += ["--ro-bind", "/dev/null", path]
    for name, fd in run_files.items():
        args += ["--ro-bind-data", str(fd), f"{RUN_DIR}/{name}"]
    args += ["--remount-ro", "/", "--chdir", WORKSPACE, "--clearenv"]
    for key, value in sandbox_env(runtime_dir, cpus).items():
        args += ["--setenv", key, value]
    args += ["--seccomp", str(seccomp_fd)]
    return args


@dataclass(frozen=True)
class Etc:
    """The sandbox's /etc: small files (name -> bytes), symlinks (name -> target) and
    whether the host's ``/etc/alternatives`` (symlinks into /usr) is bound in."""

    files: dict[str, bytes]
    links: dict[str, str]
    alternatives: bool


def build_etc() -> Etc:
    """The sandbox's /etc: the sandbox user, and only what programs need of the host's."""
    text = {
        "passwd": "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        f"sandbox:x:{SANDBOX_UID}:{SANDBOX_UID}:sandbox:{WORKSPACE}:/bin/bash\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        "group": f"root:x:0:\nsandbox:x:{SANDBOX_UID}:\nnogroup:x:65534:\n",
        "hosts": f"127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n",
        "hostname": f"{HOSTNAME}\n",
        "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
    }
    files = {name: value.encode() for name, value in text.items()}
    host = Path("/etc")
    if (host / "ld.so.cache").is_file():  # faster library lookup; lists /usr paths only
        files["ld.so.cache"] = (host / "ld.so.cache").read_bytes()
    # Symlinks into /usr resolve inside the sandbox too: the timezone and the
    # alternatives of /usr/bin (awk, editor, ...).
    links = {"os-release": "../usr/lib/os-release"}
    if (host / "localtime").is_symlink():
        links["localtime"] = os.readlink(host / "localtime")
    return Etc(files, links, alternatives=Path(ALTERNATIVES).is_dir())


def masked_dirs() -> frozenset[str]:
    """Which of MASKED_PATHS are directories (covered by an empty tmpfs, not /dev/null)."""
    return frozenset(path for path in MASKED_PATHS if os.path.isdir(path))


def zygote_config(
    *, runtime_dir: Path, etc: Etc, seccomp_bpf: bytes, newroot: Path, cpus: float, preload: tuple[str, ...],
    hide: tuple[Path, ...] = (),
) -> dict[str, object]:
    """The fork server's rendering of this policy (see ``zygote_main.py`` for its use).

    The same tree as ``bwrap_args``: host trees and the runtime read-only, the merged-usr
    symlinks, /etc from ``etc``, the same devices, a private /proc with the same masks,
    the same environment, uid 1000. The container's own directories are bound per
    execution (``CONTAINER_DIRS``), as detached mounts the server opens.
    """
    ro_binds = [(tree, tree) for tree in RO_HOST_TREES] + [(str(runtime_dir), str(runtime_dir))]
    if etc.alternatives:
        ro_binds.append((ALTERNATIVES, ALTERNATIVES))
    symlinks = list(SYMLINKS) + [(target, f"/etc/{name}") for name, target in etc.links.items()]
    env = sandbox_env(runtime_dir, cpus)
    return {
        "newroot": str(newroot),
        "hostname": HOSTNAME,
        "uid": SANDBOX_UID,
        "workdir": WORKSPACE,
        "dirs": ["/etc", "/proc", "/dev", RUN_DIR, *(inside for inside, _ in CONTAINER_DIRS)],
        "ro_binds": ro_binds,
        "symlinks": symlinks,
        # JSON carries bytes as latin-1 text (one char per byte), ld.so.cache included.
        "files": {f"/etc/{name}": data.decode("latin-1") for name, data in etc.files.items()},
        "devices": list(DEVICES),
        "shm_bytes": SHM_BYTES,
        "masked": list(MASKED_PATHS),
        "env": env,
        "seccomp_hex": seccomp_bpf.hex(),
        "preload": list(preload),
        # Host mounts under these (the containers' disks) are not in the fork server's namespace.
        "hide": [str(path) for path in hide],
        # The zygote's own environment: the sandbox's (no secrets: every fork can read it).
        "zygote_env": {**env, "HOME": "/", "MPLCONFIGDIR": str(runtime_dir / "share" / "matplotlib-cache")},
    }
