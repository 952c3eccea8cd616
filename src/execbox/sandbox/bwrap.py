"""The sandbox engine: a fresh bubblewrap sandbox for every execution.

Each run is one process chain started by the server (as root), with a minimal
environment and a new session::

    /bin/sh -c 'join the box cgroups; set rlimits; exec "$@"'
      setpriv --reuid=<box uid> ... (drop root, groups and capabilities)
        bwrap --args <fd> -- <command>   (namespaces, mounts, seccomp: policy.py)

The shell writes its pid into the box's cgroups before anything can fork, so every
process of the run is counted and can be killed. bwrap's options travel in a memfd so
``/proc/1/cmdline`` inside shows no host paths; the code travels in another memfd and
appears read-only at ``/run/execbox/main.py`` (Python, whose tracebacks then show real
source lines) or as ``bash -c`` argument (bash; a file for very long commands).

When the command exits, its pid namespace dies with it; a timeout kills bwrap and, as a
backstop, the whole cgroup, so no process outlives its execution. (bwrap reports the
exit before the namespace's pid 1 is reaped; that zombie goes to the host's init, so the
server must not itself be pid 1 without a reaping init, e.g. ``docker run --init``.)
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import shutil
import signal
import stat
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from execbox.sandbox import cgroups, disk, editor, fsutil, policy, seccomp
from execbox.sandbox.cgroups import Cgroup
from execbox.sandbox.diskpool import DiskPool
from execbox.sandbox.errors import SessionLost, Unavailable
from execbox.sandbox.runtime import MPL_CACHE, is_complete, resolve_runtime_dir, runtime_python
from execbox.sandbox.types import (
    OUTPUT_DIR,
    Box,
    EditRequest,
    EditResult,
    ExecRequest,
    ExecResult,
    Limits,
    OutputCallback,
    OutputFile,
)
from execbox.settings import format_size

log = logging.getLogger("execbox.sandbox")

LAUNCH_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
BASH = "/usr/bin/bash"
# Longer bash commands (or with NUL bytes) go through a file: one argv string is limited to 128 KiB.
MAX_ARGV_COMMAND = 64 * 1024
# Boxes run as their own host uid; below this are root and system accounts.
MIN_BOX_UID = 1000
# After a kill, how long to wait for the pipes to close before giving up on them.
KILL_GRACE_S = 5.0


# A pipe that keeps delivering small chunks (a program making many tiny writes) is read
# at most every TRICKLE_PAUSE_S after its first EAGER_READS reads: the writes pile up in
# the pipe meanwhile, so the server spends a few reads a second on it, not one per write.
EAGER_READS = 16
SMALL_READ = 64 * 1024
TRICKLE_PAUSE_S = 0.01


class _CappedOutput(asyncio.Protocol):
    """Reads one output pipe to its end: keeps the first ``cap`` bytes, drops the rest."""

    def __init__(self, cap: int, name: str = "stdout", on_data: OutputCallback | None = None) -> None:
        self.cap = cap
        self.name = name
        self.on_data = on_data
        self.kept = bytearray()
        self.truncated = False
        self.reads = 0
        self.done: asyncio.Future[tuple[bytes, bool]] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.ReadTransport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        room = self.cap - len(self.kept)
        if room > 0:
            self.kept += data[:room]
            if self.on_data is not None:
                self.on_data(self.name, data[:room])
        self.truncated = self.truncated or len(data) > room
        self.reads += 1
        if self.reads > EAGER_READS and len(data) < SMALL_READ:
            self.transport.pause_reading()
            asyncio.get_running_loop().call_later(TRICKLE_PAUSE_S, self.transport.resume_reading)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result((bytes(self.kept), self.truncated))


async def read_capped(
    pipe: BinaryIO, cap: int, name: str = "stdout", on_data: OutputCallback | None = None
) -> tuple[asyncio.ReadTransport, _CappedOutput]:
    """Start reading ``pipe`` (closed at its end) into a ``_CappedOutput``."""
    transport, output = await asyncio.get_running_loop().connect_read_pipe(
        lambda: _CappedOutput(cap, name, on_data), pipe
    )
    return transport, output


def decode_output(data: bytes, truncated: bool) -> str:
    text = data.decode("utf-8", errors="replace")
    if truncated:
        text += f"\n[execbox: output truncated after {len(data)} bytes]"
    return text


def add_line(text: str, line: str) -> str:
    return f"{text}\n{line}" if text and not text.endswith("\n") else text + line


def memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_reachable(path: Path) -> None:
    """bwrap opens box paths as the box uid: every directory above them must be searchable."""
    for parent in (path, *path.parents):
        if parent.exists() and not os.stat(parent).st_mode & stat.S_IXOTH:
            raise Unavailable(
                f"{parent} is not searchable by other users, so sandboxes cannot reach the files below it; "
                f"run `chmod o+x {parent}` or choose another data directory."
            )


class BwrapEngine:
    """The Engine of ``types.py`` on bubblewrap, cgroups and loop-mounted ext4 disks.

    ``insecure`` lets it run without cgroups (no memory/CPU/process limits) or loop
    devices (no disk quota) when the host lacks them; otherwise it refuses to run.
    """

    def __init__(
        self, limits: Limits, state_dir: Path, runtime_dir: Path | None, insecure: bool = False, *,
        boxes_dir: Path | None = None, disk_pool: int = 0,
    ) -> None:
        self.limits = limits
        self.boxes_dir = boxes_dir  # where boxes live: ready disks (``disk_pool`` of them) wait beside them
        self.disk_pool = disk_pool
        self.pool: DiskPool | None = None
        self.state_dir = state_dir
        self.runtime_dir = resolve_runtime_dir(runtime_dir)
        self.insecure = insecure
        self.use_cgroups = True
        self.use_loop = True
        self._prepared = False
        self._etc: policy.Etc | None = None
        self._masked_dirs: frozenset[str] = frozenset()
        self._clean_outputs: set[str] = set()  # boxes whose outputs directory is empty

    # --- set-up -------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await asyncio.to_thread(self._prepare)
        except Unavailable as exc:  # reported again by every box operation
            log.error("%s", exc.message)
            return
        if self.boxes_dir is not None and self.disk_pool > 0 and self.pool is None:
            self.pool = DiskPool(self.boxes_dir / ".pool", self.disk_pool, self.limits.disk_bytes,
                                 loop=self.use_loop, prepare=self._seed_matplotlib)
            await self.pool.start()

    async def stop(self) -> None:
        if self.pool is not None:
            await self.pool.close()
            self.pool = None

    def _prepare(self) -> None:
        """Check the host once and build what every run shares (seccomp filter, /etc)."""
        if self._prepared:
            return
        fatal = []
        if os.geteuid() != 0:
            fatal.append("the server must run as root to create sandboxes")
        fatal += [f"`{tool}` is not installed" for tool in ("bwrap", "setpriv") if not shutil.which(tool)]
        if not is_complete(self.runtime_dir):
            fatal.append(f"the runtime environment {self.runtime_dir} is not built: run `execbox setup-runtime`")
        if fatal:
            raise Unavailable("Cannot run sandboxes: " + "; ".join(fatal) + ".")
        missing = []
        if cgroups.version() is None:
            missing.append("cgroups with memory, cpu and pids controllers (no resource limits)")
            self.use_cgroups = False
        if not (shutil.which("mkfs.ext4") and Path("/dev/loop-control").exists()):
            missing.append("loop devices and mkfs.ext4 (no disk quota)")
            self.use_loop = False
        if missing and not self.insecure:
            raise Unavailable("Cannot isolate sandboxes: missing " + "; ".join(missing) + ".")
        for item in missing:
            log.warning("INSECURE: sandboxes run without %s", item)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.state_dir, 0o700)  # the seccomp filter reaches bwrap as an fd
        seccomp.export(self.seccomp_path)
        self._etc = policy.build_etc()
        self._masked_dirs = policy.masked_dirs()
        self._prepared = True

    @property
    def seccomp_path(self) -> Path:
        return self.state_dir / "seccomp.bpf"

    @property
    def staging_dir(self) -> Path:
        return self.state_dir / "staging"

    def _cgroup(self, box: Box) -> Cgroup | None:
        return Cgroup.for_box(box.id) if self.use_cgroups else None

    # --- box lifecycle ------------------------------------------------------------------

    def _check_box(self, box: Box) -> None:
        self._prepare()
        if box.uid < MIN_BOX_UID:
            raise Unavailable(f"Refusing box {box.id}: uid {box.uid} belongs to the system.")

    async def create_box(self, box: Box) -> None:
        self._check_box(box)
        _check_reachable(box.root.parent)
        pooled = self.pool is not None and box.root.parent == self.pool.directory.parent
        if not (pooled and not box.root.exists() and await self.pool.take(box)):  # type: ignore[union-attr]
            await disk.create(box, self.limits.disk_bytes, loop=self.use_loop)
            self._seed_matplotlib(box)
        if cg := self._cgroup(box):
            await asyncio.to_thread(cg.create, self.limits)

    async def open_box(self, box: Box) -> None:
        self._check_box(box)
        if self.use_loop:
            if not box.image.exists():
                raise Unavailable(f"The disk of box {box.id} is gone ({box.image}).")
            await disk.mount(box)
        elif not box.workspace.is_dir():
            raise Unavailable(f"The files of box {box.id} are gone ({box.workspace}).")
        if cg := self._cgroup(box):
            await asyncio.to_thread(self._reset_cgroup, cg)

    def _reset_cgroup(self, cg: Cgroup) -> None:
        """(Re)create a reopened box's cgroups; a process found there outlived the server
        that ran it (it may have cleared its parent-death signal): it is killed."""
        cg.create(self.limits)
        cg.kill(recursive=True)

    async def close_box(self, box: Box) -> None:
        if cg := self._cgroup(box):
            await asyncio.to_thread(cg.remove)
        await disk.unmount(box)

    async def destroy_box(self, box: Box) -> None:
        if cg := self._cgroup(box):
            await asyncio.to_thread(cg.remove)
        await disk.destroy(box)

    def _seed_matplotlib(self, box: Box) -> None:
        """Copy the runtime's prebuilt font list so the first plot does not rebuild it."""
        target = box.tmp / ".matplotlib"
        if target.exists():
            return
        target.mkdir()
        os.chown(target, box.uid, box.uid)
        for cache in (self.runtime_dir / MPL_CACHE).glob("fontlist-*.json"):
            fsutil.write_file(box.tmp, f".matplotlib/{cache.name}", cache.read_bytes(), box.uid)

    async def _ensure_open(self, box: Box) -> None:
        """Reopen a box whose disk or cgroups vanished (a restart without ``open_box``), and
        undo a ``chmod 000 /workspace`` that would keep bwrap out of it."""
        self._check_box(box)
        cg = self._cgroup(box)
        if (self.use_loop and not disk.is_mounted(box)) or (cg and not cg.dirs[0].is_dir()):
            await self.open_box(box)
        for d in (box.workspace, box.tmp, box.outputs):
            os.chmod(d, 0o700)

    # --- runs ---------------------------------------------------------------------------

    async def execute(self, box: Box, request: ExecRequest) -> ExecResult:
        await self._ensure_open(box)
        timeout = self.limits.timeout_s if request.timeout_s is None else min(request.timeout_s, self.limits.timeout_s)
        # The outputs directory is made once, with the box, and emptied around every run
        # rather than recreated: making a directory can fail once sandboxed code has filled
        # the disk, and the box must stay usable (to delete files) when it is full. Emptied
        # after a run, it stays empty until the next one unless a process of the box
        # outlived its run (a live kernel's): only then is it emptied before, too.
        if not self._outputs_clean(box):
            await asyncio.to_thread(fsutil.empty_dir, box.outputs)
        return await self._with_outputs(box, self._execute(box, request, timeout))

    async def resume(self, box: Box, results: dict[int, str]) -> ExecResult:
        await self._ensure_open(box)
        return await self._with_outputs(box, self._resume(box, results))

    async def _resume(self, box: Box, results: dict[int, str]) -> ExecResult:
        raise SessionLost("the reference path has no live Python sessions")

    async def _with_outputs(self, box: Box, run: Coroutine[Any, Any, ExecResult]) -> ExecResult:
        """The result of ``run``, with the files it left in ``$OUTPUT_DIR`` (taken from there
        once it has finished: a cell waiting for tool results keeps its outputs)."""
        try:
            result = await run
        except BaseException:
            await asyncio.to_thread(fsutil.empty_dir, box.outputs)
            raise
        if result.tool_calls:
            self._clean_outputs.discard(box.id)
            return result
        if fsutil.is_empty_dir(box.outputs):  # most runs write nothing there: no thread hop
            self._clean_outputs.add(box.id)
            return result
        result.files, left_out = await asyncio.to_thread(self._take_outputs, box)
        if left_out:
            result.stderr = add_line(
                result.stderr, f"[execbox: {left_out} more files in {OUTPUT_DIR} were not returned; "
                f"at most {self.limits.output_files} are returned per execution]",
            )
        return result

    def _outputs_clean(self, box: Box) -> bool:
        """Whether ``box``'s outputs directory is known to be empty now."""
        return box.id in self._clean_outputs

    def _take_outputs(self, box: Box) -> tuple[list[OutputFile], int]:
        """Stage the files of ``$OUTPUT_DIR`` and empty it (in a worker thread)."""
        self._clean_outputs.discard(box.id)
        try:
            return fsutil.collect_outputs(box.outputs, self.staging_dir, self.limits)
        finally:
            fsutil.empty_dir(box.outputs)
            self._clean_outputs.add(box.id)

    async def _execute(self, box: Box, request: ExecRequest, timeout: float) -> ExecResult:
        """Run the code itself (the outputs directory is handled around it)."""
        source = request.source.encode(errors="surrogatepass")  # any str, even a lone surrogate
        command: list[str | bytes]
        if request.kind == "python":
            command, files = [str(runtime_python(self.runtime_dir)), f"{policy.RUN_DIR}/main.py"], {"main.py": source}
        elif len(source) <= MAX_ARGV_COMMAND and b"\0" not in source:
            command, files = [BASH, "-c", source], {}
        else:
            command, files = [BASH, f"{policy.RUN_DIR}/main.sh"], {"main.sh": source}
        return await self._run(
            box, command, files, timeout, self.limits.output_bytes, box.outputs, on_output=request.on_output
        )

    async def edit(self, box: Box, request: EditRequest) -> EditResult:
        await self._ensure_open(box)
        command = [str(runtime_python(self.runtime_dir)), "-I", "-S", f"{policy.RUN_DIR}/{editor.SCRIPT_NAME}",
                   f"{policy.RUN_DIR}/{editor.REQUEST_NAME}"]
        run = await self._run(box, command, editor.run_files(request), self.limits.timeout_s, editor.OUTPUT_BYTES)
        if run.timed_out or run.oom_killed:
            return EditResult(command=request.command, error_code="unavailable",
                              error_message="The editor exceeded the container's limits.")
        return editor.parse_result(request.command, run.stdout, run.stderr, run.return_code)

    def _launcher(self, box: Box, cg: Cgroup | None) -> list[str]:
        """The root half of the chain: join cgroups, set rlimits, drop to the box uid."""
        steps = [f"echo $$ > {shlex.quote(str(path))}" for path in (cg.procs_files() if cg else [])]
        steps += [f"ulimit -n {policy.nofile_per_process(self.limits)}", "ulimit -c 0", f"ulimit -f {self.limits.disk_bytes // 512}"]
        script = " && ".join(steps) + ' && exec "$@"; echo "execbox: the sandbox could not start" >&2; exit 125'
        return [
            "/bin/sh", "-c", script, "execbox-launch",
            "setpriv", f"--reuid={box.uid}", f"--regid={box.uid}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs",
        ]

    async def _run(
        self, box: Box, command: Sequence[str | bytes], files: dict[str, bytes], timeout_s: float, output_bytes: int,
        outputs: Path | None = None, on_output: OutputCallback | None = None,
    ) -> ExecResult:
        """Run ``command`` in a fresh sandbox over ``box``; never leaves a process behind."""
        cg = self._cgroup(box)
        read_ends, write_ends = zip(*(os.pipe2(os.O_CLOEXEC) for _ in ("stdout", "stderr")), strict=True)
        pipes = [os.fdopen(fd, "rb", buffering=0) for fd in read_ends]
        readers: list[tuple[asyncio.ReadTransport, _CappedOutput]] = []

        def stop_reading() -> None:
            for transport, _ in readers:
                transport.close()

        fds: list[int] = []  # for bwrap
        try:
            for name, pipe in zip(("stdout", "stderr"), pipes, strict=True):
                # first: once the sandbox runs, nothing may delay the kill below
                readers.append(await read_capped(pipe, output_bytes, name, on_output))
            fds.append(seccomp_fd := os.open(self.seccomp_path, os.O_RDONLY | os.O_CLOEXEC))
            assert self._etc is not None, "prepared by _check_box"
            # /etc's files go in as fresh memfds (~70 us a run): a bound host directory
            # would show the server's data path in the sandbox's mount table.
            etc_files = {name: memfd(name, data) for name, data in self._etc.files.items()}
            fds += etc_files.values()
            run_files = {name: memfd(name, data) for name, data in files.items()}
            fds += run_files.values()
            args = policy.bwrap_args(
                runtime_dir=self.runtime_dir, etc=self._etc, etc_files=etc_files, workspace=box.workspace,
                tmp=box.tmp, outputs=outputs, seccomp_fd=seccomp_fd, run_files=run_files, cpus=self.limits.cpus,
                masked_dirs=self._masked_dirs,
            )
            fds.append(args_fd := memfd("bwrap-args", b"".join(a.encode() + b"\0" for a in args)))
            argv = [*self._launcher(box, cg), "bwrap", "--args", str(args_fd), "--", *command]
            oom_before = cg.oom_kills() if cg else 0
            started = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=write_ends[0], stderr=write_ends[1],
                env=LAUNCH_ENV, cwd="/", pass_fds=fds, start_new_session=True,
            )
        except BaseException:
            stop_reading()
            for pipe in pipes:
                pipe.close()
            raise
        finally:
            for fd in [*fds, *write_ends]:
                os.close(fd)
        outputs_read = asyncio.gather(*(output.done for _, output in readers))
        timed_out = False
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            timed_out = True
        except BaseException:  # cancelled: still take everything down before leaving
            stop_reading()
            # SIGKILL to bwrap now; the cgroup sweep (it may wait for a frozen cgroup) runs in
            # a thread, shielded from a second cancellation, so the event loop never waits.
            await asyncio.shield(asyncio.to_thread(self._kill, proc, cg))
            raise
        duration = time.monotonic() - started
        if timed_out:
            await asyncio.to_thread(self._kill, proc, cg)
        elif cg and cg.pids():  # sweep: nothing may outlive the execution
            await asyncio.to_thread(cg.kill)
        try:
            (out, out_cut), (err, err_cut) = await asyncio.wait_for(outputs_read, KILL_GRACE_S)
            await asyncio.wait_for(proc.wait(), KILL_GRACE_S)
        except TimeoutError:  # a descriptor escaped the kill: never hang on it
            stop_reading()
            raise Unavailable("A sandbox did not terminate after being killed.") from None
        return_code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
        oom_killed = bool(cg) and cg.oom_kills() > oom_before
        return self._result(out, out_cut, err, err_cut, return_code, duration, timed_out, oom_killed, timeout_s)

    def _result(
        self, out: bytes, out_cut: bool, err: bytes, err_cut: bool, return_code: int, duration: float,
        timed_out: bool, oom_killed: bool, timeout_s: float,
    ) -> ExecResult:
        """An ExecResult, with the line that explains a timeout or an OOM kill."""
        stderr = decode_output(err, err_cut)
        if timed_out:
            stderr = add_line(stderr, f"[execbox: execution timed out after {timeout_s:g} seconds]")
        elif oom_killed:
            stderr = add_line(stderr, "MemoryError: the execution was killed for exceeding the container's "
                               f"memory limit ({format_size(self.limits.memory_bytes)})")
        if (timed_out or oom_killed) and return_code == 0:
            return_code = 137
        return ExecResult(
            stdout=decode_output(out, out_cut), stderr=stderr, return_code=return_code, duration_s=duration,
            timed_out=timed_out, oom_killed=oom_killed, stdout_truncated=out_cut, stderr_truncated=err_cut,
        )

    @staticmethod
    def _kill(proc: asyncio.subprocess.Process, cg: Cgroup | None) -> None:
        """SIGKILL bwrap (its pid 1 takes the pid namespace down), then the whole cgroup."""
        if proc.returncode is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if cg:
            cg.kill()

    # --- host-side file access ----------------------------------------------------------

    def write_file(self, box: Box, relpath: str, data: bytes | BinaryIO) -> str:
        return fsutil.write_file(box.workspace, relpath, data, box.uid)

    def open_file(self, box: Box, relpath: str, max_bytes: int) -> BinaryIO:
        return fsutil.open_file(box.workspace, relpath, max_bytes)

    def list_files(self, box: Box) -> list[tuple[str, int]]:
        return fsutil.list_files(box.workspace)
