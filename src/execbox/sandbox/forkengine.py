"""The fork-server engine: executions on warm, pre-imported interpreters, and live kernels.

``ForkEngine`` is the reference engine (``bwrap.py``: boxes, disks, cgroups, host-side
file access, the text editor) with a faster way to run code. An execution takes a
*spare* from the fork server (``forkserver.py``): a process forked from an interpreter
that has already imported numpy, pandas, matplotlib and scipy, waiting in a prepared
root skeleton. The spare enters the container's sandbox (cgroups, its directories, a
user namespace mapping the container's uid, no capabilities, the same seccomp filter;
see ``zygote_main.py``) and runs the code in-process. Whatever the policy says, both
paths apply: ``policy.py`` is rendered for each.

Two kinds of execution run on it:

- **one-shot** (``session=False``): the spare runs one cell (Python in-process, or a
  bash command as its child) and exits; being pid 1 of its namespace, it takes every
  process the code started with it. Same semantics as the reference path.
- **session** (``session=True``, Python): the cell runs in the box's *kernel*, a child
  that stays alive between cells, so variables, imports and functions persist. A kernel
  lives in the box's ``kernel`` cgroup (the box's limits cover it). A cell that times
  out, is OOM-killed or crashes ends the kernel; the next cell starts a fresh one whose
  stderr begins with ``SESSION_RESTARTED``. Kernels idle for ``kernel_idle_s``, the least
  recently used beyond ``max_kernels``, and all kernels at shutdown are *checkpointed*
  first: the kernel pickles (cloudpickle, inside its own sandbox) what it can of its
  namespace into the container's /tmp, and the next kernel restores it there. The
  server never unpickles anything.

When the fork server is not running (starting, restarting, crashed, or disabled), every
execution takes the reference path; session cells then run one-shot, and say so.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from execbox.sandbox import cgroups, policy
from execbox.sandbox.bwrap import KILL_GRACE_S, BwrapEngine, _CappedOutput, memfd, read_capped
from execbox.sandbox.cgroups import KERNEL_LEAF, Cgroup
from execbox.sandbox.errors import ForkServerDown, SessionLost
from execbox.sandbox.forkserver import Child, ChildGone, ForkServer
from execbox.sandbox.runtime import runtime_python
from execbox.sandbox.types import Box, ExecRequest, ExecResult, Limits, ToolCall

log = logging.getLogger("execbox.sandbox")

# What the fork server imports and warms up once for every execution.
PRELOAD = ("numpy", "pandas", "matplotlib", "matplotlib.pyplot", "scipy", "scipy.stats", "PIL.Image")
SESSION_RESTARTED = "[execbox] Python session was restarted; earlier variables and imports are gone (files stay)."
SESSION_UNAVAILABLE = (
    "[execbox] Python sessions are unavailable right now; this cell ran in a fresh interpreter "
    "(earlier variables are not defined here)."
)
WAITING_FOR_TOOLS = (
    "[execbox] The Python session is still waiting for the results of the tool calls of an earlier cell; "
    "send them (tool_result blocks) before running more code."
)
# Inside the sandbox: where a kernel's checkpoint goes (the container's own disk).
CHECKPOINT = "/tmp/.execbox/session.pkl"
CHECKPOINT_TIMEOUT_S = 30.0
# After a kernel cell reports done, how long to wait for its output pipes to close (a
# background process it started may keep them open; it writes to nobody after this).
KERNEL_OUTPUT_GRACE_S = 0.2
SWEEP_INTERVAL_S = 5.0

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
SYS_OPEN_TREE = 428
OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC, AT_SYMLINK_NOFOLLOW = 1, os.O_CLOEXEC, 0x100


def open_tree(path: Path) -> int:
    """A detached bind mount of ``path`` (``open_tree(OPEN_TREE_CLONE)``), as an fd."""
    fd = _libc.syscall(
        SYS_OPEN_TREE, -100, str(path).encode(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_SYMLINK_NOFOLLOW
    )
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"open_tree {path}: {os.strerror(err)}")
    return int(fd)


@dataclass
class _Cell:
    """A cell under way in a child: what it takes to wait for it (again)."""

    child: Child
    cg: Cgroup | None
    readers: list[tuple[asyncio.ReadTransport, _CappedOutput]]
    timeout: float
    kernel: bool
    oom_before: int
    tools: tuple[str, ...] = ()  # the client tools its code may call
    spent: float = 0.0  # running time so far (client waits excluded)

    def stop_reading(self) -> None:
        for transport, _ in self.readers:
            transport.close()


@dataclass
class Kernel:
    """A box's live Python interpreter."""

    child: Child
    cells: int = 0
    last_used: float = field(default_factory=time.monotonic)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    running: _Cell | None = None  # the cell being waited for
    waiting: _Cell | None = None  # a cell whose code awaits client tool results


class ForkEngine(BwrapEngine):
    def __init__(
        self,
        limits: Limits,
        state_dir: Path,
        runtime_dir: Path | None,
        insecure: bool = False,
        *,
        spares: int = 4,
        zygote_max_age_s: float = 3600.0,
        kernel_idle_s: float = 300.0,
        max_kernels: int = 64,
        favor_dynmods: bool = True,
        boxes_dir: Path | None = None,
        disk_pool: int = 0,
    ) -> None:
        super().__init__(limits, state_dir, runtime_dir, insecure, boxes_dir=boxes_dir, disk_pool=disk_pool)
        self.spares = spares
        self.zygote_max_age_s = zygote_max_age_s
        self.kernel_idle_s = kernel_idle_s
        self.max_kernels = max_kernels
        self.favor_dynmods = favor_dynmods
        self.fork: ForkServer | None = None
        self.kernels: dict[str, Kernel] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[object]] = set()

    # --- lifecycle ----------------------------------------------------------------------

    def _later(self, work: Coroutine[Any, Any, object]) -> None:
        """Run ``work`` in the background (kept referenced until done)."""
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def start(self) -> None:
        await super().start()
        if not self._prepared or self.fork is not None:
            return
        if self.use_cgroups and self.favor_dynmods:
            await asyncio.to_thread(cgroups.favor_dynmods)
        newroot = self.state_dir / "newroot"
        newroot.mkdir(mode=0o700, exist_ok=True)
        assert self._etc is not None
        config = policy.zygote_config(
            runtime_dir=self.runtime_dir, etc=self._etc, seccomp_bpf=self.seccomp_path.read_bytes(),
            newroot=newroot, cpus=self.limits.cpus, preload=PRELOAD,
            hide=tuple(d for d in (self.boxes_dir,) if d is not None),
        )
        self.fork = ForkServer(
            runtime_python(self.runtime_dir), config, spares=self.spares, max_age_s=self.zygote_max_age_s
        )
        log.info("starting the fork server (imports %s)", ", ".join(PRELOAD))
        await self.fork.start()
        if not self.fork.ready:
            log.error("the fork server did not start; executions take the reference path until it does")
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="execbox-kernel-sweeper")

    async def stop(self) -> None:
        await super().stop()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await asyncio.gather(*(self._stop_kernel(box_id, checkpoint=True) for box_id in list(self.kernels)))
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self.fork is not None:
            await self.fork.stop()
            self.fork = None

    async def close_box(self, box: Box) -> None:
        await self._stop_kernel(box.id, checkpoint=True)
        await super().close_box(box)

    async def destroy_box(self, box: Box) -> None:
        await self._stop_kernel(box.id, checkpoint=False)
        await super().destroy_box(box)

    # --- executions ---------------------------------------------------------------------

    async def _execute(self, box: Box, request: ExecRequest, timeout: float) -> ExecResult:
        session = request.session and request.kind == "python"
        try:
            if self.fork is None:
                raise ForkServerDown("the fork server is disabled")
            if session:
                return await self._session_cell(box, request, timeout)
            return await self._one_shot(box, request, timeout)
        except ForkServerDown as exc:
            log.warning("reference path for %s: %s", box.id, exc.message)
        result = await super()._execute(box, request, timeout)
        if session:
            result.stderr = SESSION_UNAVAILABLE + "\n" + result.stderr
        return result

    async def _one_shot(self, box: Box, request: ExecRequest, timeout: float) -> ExecResult:
        child = await self.fork.child()  # type: ignore[union-attr]
        cg = self._cgroup(box)
        try:
            await self._enter(child, box, cg, leaf=None, mode="exec")
            return await self._cell(child, cg, request, timeout, f"{policy.RUN_DIR}/main.py")
        finally:
            self._later(child.finish())  # the exit itself is off the critical path
            self.fork.replenish()  # type: ignore[union-attr]

    async def _session_cell(self, box: Box, request: ExecRequest, timeout: float) -> ExecResult:
        notes: list[str] = []
        kernel = self.kernels.get(box.id)
        if kernel is None or kernel.child.exited.done():
            kernel, notes = await self._start_kernel(box)
        async with kernel.lock:
            if kernel.waiting is not None:
                return ExecResult("", WAITING_FOR_TOOLS + "\n", 1, 0.0, path="fork")
            kernel.cells += 1
            filename = f"{policy.RUN_DIR}/cell{kernel.cells}.py"
            try:
                result = await self._cell(kernel.child, self._cgroup(box), request, timeout, filename, kernel)
            finally:
                kernel.last_used = time.monotonic()
        return self._after_session_cell(box, kernel, result, notes)

    def _after_session_cell(self, box: Box, kernel: Kernel, result: ExecResult, notes: list[str]) -> ExecResult:
        if result.tool_calls:
            kernel.waiting = kernel.running
        elif result.timed_out or result.oom_killed or kernel.child.exited.done() or result.path != "fork":
            self._forget_kernel(box.id, kernel)
        kernel.running = None
        if notes:
            result.stderr = "\n".join(notes) + "\n" + result.stderr
        return result

    async def _start_kernel(self, box: Box) -> tuple[Kernel, list[str]]:
        await self._make_room()
        child = await self.fork.child()  # type: ignore[union-attr]
        try:
            await self._enter(child, box, self._cgroup(box), leaf=KERNEL_LEAF, mode="kernel", restore=CHECKPOINT)
            state = await child.expect("restored")
        except BaseException:
            self._later(child.finish())
            raise
        finally:
            self.fork.replenish()  # type: ignore[union-attr]
        kernel = self.kernels[box.id] = Kernel(child)
        notes = []
        if state.get("restarted"):
            notes.append(SESSION_RESTARTED)
        if state.get("failed"):
            notes.append("[execbox] Python session restored; these names could not be restored: "
                         + ", ".join(map(str, state["failed"])))
        return kernel, notes

    async def _enter(
        self, child: Child, box: Box, cg: Cgroup | None, *, leaf: str | None, mode: str, restore: str | None = None
    ) -> None:
        """Send ``child`` into ``box``'s sandbox (see ``zygote_main.enter``)."""
        fds: list[int] = []
        try:
            if cg is not None:
                fds += [os.open(path, os.O_WRONLY | os.O_CLOEXEC) for path in cg.procs_files(leaf)]
            joins = len(fds)
            fds += [open_tree(getattr(box, attr)) for _, attr in policy.CONTAINER_DIRS]
            child.send({
                "op": "enter", "mode": mode, "cgroups": joins,
                "mounts": [[inside, True] for inside, _ in policy.CONTAINER_DIRS],
                "rlimits": {"RLIMIT_NOFILE": policy.nofile_per_process(self.limits), "RLIMIT_CORE": 0,
                            "RLIMIT_FSIZE": self.limits.disk_bytes},
                "argv0": f"{policy.RUN_DIR}/main.py", "restore": restore,
            }, fds)
        finally:
            for fd in fds:
                os.close(fd)
        try:
            await child.expect("userns")
            for name in ("uid_map", "gid_map"):
                with open(f"/proc/{child.pid}/{name}", "w") as fh:
                    fh.write(f"{policy.SANDBOX_UID} {box.uid} 1\n")
            child.send({"op": "mapped"})
            await child.expect("entered")
        except (ChildGone, OSError) as exc:
            raise ForkServerDown(f"a sandbox process could not enter box {box.id}: {exc}") from exc

    async def _cell(
        self, child: Child, cg: Cgroup | None, request: ExecRequest, timeout: float, filename: str,
        kernel: Kernel | None = None,
    ) -> ExecResult:
        """Run one cell in an entered child (a kernel's, if given): its result, whatever happens to the child, or
        its ``tool_calls`` when its code awaits client tools (``resume`` goes on from there)."""
        read_ends, write_ends = zip(*(os.pipe2(os.O_CLOEXEC) for _ in ("stdout", "stderr")), strict=True)
        pipes = [os.fdopen(fd, "rb", buffering=0) for fd in read_ends]
        readers = []
        try:
            for name, pipe in zip(("stdout", "stderr"), pipes, strict=True):
                readers.append(await read_capped(pipe, self.limits.output_bytes, name, request.on_output))
            code = memfd("code", request.source.encode(errors="surrogatepass"))
            cell = _Cell(child, cg, readers, timeout, kernel is not None, cg.oom_kills() if cg else 0, request.tools)
            if kernel is not None:
                kernel.running = cell
            try:
                child.send(
                    {"op": "run", "kind": request.kind, "filename": filename, "tools": list(request.tools),
                     "tool_wait_s": request.tool_wait_s},
                    [code, *write_ends],
                )
            finally:
                os.close(code)
        except BaseException:
            for transport, _ in readers:
                transport.close()
            for pipe in pipes:
                pipe.close()
            raise
        finally:
            for fd in write_ends:
                os.close(fd)
        return await self._wait(cell)

    async def _wait(self, cell: _Cell) -> ExecResult:
        """Wait for a running cell to finish or to wait for tool results. Time spent waiting
        for a client does not count against the cell's time limit."""
        child = cell.child
        started = time.monotonic()
        timed_out = crashed = False
        return_code = 0
        calls: list[ToolCall] = []
        try:
            async with asyncio.timeout(max(0.0, cell.timeout - cell.spent)):
                while True:
                    message, fds = await child.receive()
                    for fd in fds:
                        os.close(fd)
                    if message.get("op") == "done":
                        return_code = int(message["rc"])
                        break
                    if message.get("op") == "tool_call" and message.get("name") in cell.tools:
                        # (the code shares its process with this end of the channel: a call
                        # of any other tool is forged, and never reaches the client)
                        calls.append(ToolCall(int(message["call"]), str(message["name"]), message.get("input")))
                    elif message.get("op") == "waiting" and calls:
                        cell.spent += time.monotonic() - started
                        return ExecResult("", "", 0, cell.spent, path="fork", tool_calls=calls)
        except TimeoutError:
            timed_out = True
            child.kill()
        except ChildGone:
            crashed = True
        except BaseException:  # cancelled (e.g. the container is being deleted)
            child.kill()
            cell.stop_reading()
            raise
        duration = cell.spent + time.monotonic() - started
        if crashed or timed_out:
            child.kill()
            with contextlib.suppress(TimeoutError, ChildGone):
                status = await asyncio.wait_for(asyncio.shield(child.exited), KILL_GRACE_S)
                if crashed:
                    return_code = os.waitstatus_to_exitcode(status)
                    return_code = return_code if return_code >= 0 else 128 - return_code
        outputs = asyncio.gather(*(output.done for _, output in cell.readers))
        grace = KERNEL_OUTPUT_GRACE_S if cell.kernel and not (crashed or timed_out) else KILL_GRACE_S
        try:
            (out, out_cut), (err, err_cut) = await asyncio.wait_for(asyncio.shield(outputs), grace)
        except TimeoutError:
            cell.stop_reading()  # something the cell started still holds the pipes: stop listening
            (out, out_cut), (err, err_cut) = await outputs
        oom_killed = bool(cell.cg) and cell.cg.oom_kills() > cell.oom_before  # type: ignore[union-attr]
        result = self._result(out, out_cut, err, err_cut, return_code, duration, timed_out, oom_killed, cell.timeout)
        result.path = "fork"
        return result

    async def _resume(self, box: Box, results: dict[int, str]) -> ExecResult:
        """Give a cell that awaits client tools their results and wait for it again."""
        kernel = self.kernels.get(box.id)
        if kernel is None or kernel.waiting is None or kernel.child.exited.done():
            raise SessionLost(f"the Python session of {box.id} is no longer waiting for tool results")
        async with kernel.lock:
            cell, kernel.waiting = kernel.waiting, None
            kernel.running = cell
            try:
                for call, content in results.items():
                    kernel.child.send({"op": "tool_result", "call": call, "content": content})
            except ChildGone:
                pass  # _wait reports what became of the cell
            result = await self._wait(cell)
            kernel.last_used = time.monotonic()
        return self._after_session_cell(box, kernel, result, [])

    # --- kernels ------------------------------------------------------------------------

    def _forget_kernel(self, box_id: str, kernel: Kernel) -> None:
        if self.kernels.get(box_id) is kernel:
            del self.kernels[box_id]
        self._later(kernel.child.finish())

    async def _stop_kernel(self, box_id: str, *, checkpoint: bool) -> None:
        """Stop a box's kernel (if any), saving its picklable state first if asked."""
        kernel = self.kernels.pop(box_id, None)
        if kernel is None:
            return
        async with kernel.lock:
            if checkpoint and not kernel.child.exited.done():
                try:
                    kernel.child.send({"op": "checkpoint", "path": CHECKPOINT})
                    saved = await asyncio.wait_for(kernel.child.expect("checkpointed"), CHECKPOINT_TIMEOUT_S)
                    log.info("kernel of %s checkpointed (%d names saved, %d skipped)",
                             box_id, len(saved.get("saved", [])), len(saved.get("skipped", [])))
                except (TimeoutError, ChildGone) as exc:
                    log.warning("kernel of %s could not be checkpointed: %s", box_id, exc)
            await kernel.child.finish()

    async def _make_room(self) -> None:
        """Stop the least recently used idle kernels while the host is at its kernel cap."""
        while len(self.kernels) >= self.max_kernels:
            idle = [(k.last_used, box_id) for box_id, k in self.kernels.items() if not k.lock.locked()]
            if not idle:
                return  # every kernel is running a cell: exceed the cap briefly rather than fail
            await self._stop_kernel(min(idle)[1], checkpoint=True)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(min(SWEEP_INTERVAL_S, self.kernel_idle_s / 2))
            now = time.monotonic()
            for box_id, kernel in list(self.kernels.items()):
                if kernel.child.exited.done():
                    self._forget_kernel(box_id, kernel)
                elif not kernel.lock.locked() and now - kernel.last_used > self.kernel_idle_s:
                    try:
                        await self._stop_kernel(box_id, checkpoint=True)
                        log.info("stopped the idle kernel of %s", box_id)
                    except Exception:
                        log.exception("stopping the idle kernel of %s failed", box_id)

    def _outputs_clean(self, box: Box) -> bool:
        # A live kernel's background processes may write to /outputs between cells.
        return box.id not in self.kernels and super()._outputs_clean(box)

    def kernel_pid(self, box_id: str) -> int | None:
        """The host pid of a box's live kernel (for tests and diagnostics)."""
        kernel = self.kernels.get(box_id)
        return kernel.child.pid if kernel is not None and not kernel.child.exited.done() else None

