"""The server's side of the fork server (``zygote_main.py`` is the other side).

``ForkServer`` starts the zygote in the runtime's interpreter, hands it the sandbox
policy, and asks it for *children*: processes forked from the warm, pre-imported
zygote, each pid 1 of its own pid namespace inside a prepared root skeleton, waiting
for the container they will serve. A few are kept ready (*spares*) so a fork is never
on an execution's critical path; they are replenished after executions finish, not
while they run (a 200 MB fork beside a running execution doubles its latency).

Every child is driven over its own SOCK_SEQPACKET control socket (``Child``); the zygote
reports each child's exit status (it is their parent). The server can always kill a
child through its pidfd, and a child whose control socket closes exits by itself, so a
server that dies leaves nothing running.

The zygote is restarted after ``max_age_s`` (so sandboxes do not share one ASLR layout
and hash seed for long) and whenever it dies; while none is ready, ``child()`` raises
ForkServerDown and the engine falls back to the reference path.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

from execbox.sandbox.errors import ForkServerDown

log = logging.getLogger("execbox.sandbox.zygote")

SCRIPT = Path(__file__).with_name("zygote_main.py")
MAX_MESSAGE = 1 << 16
MAX_FDS = 16
STARTUP_TIMEOUT_S = 60.0
SPAWN_TIMEOUT_S = 10.0


async def _readable(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    fd = sock.fileno()  # remembered: the socket may be closed (fileno -1) by the time we leave
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(fd)


async def receive(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """The next message on a control socket and the fds that came with it; None at EOF."""
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, MAX_FDS)
        except BlockingIOError:
            await _readable(sock)
            continue
        except (ConnectionResetError, BrokenPipeError):
            return None, []
        if not data:
            for fd in fds:
                os.close(fd)
            return None, []
        return json.loads(data), fds


def send(sock: socket.socket, message: dict[str, Any], fds: list[int] | tuple[int, ...] = ()) -> None:
    """Send one small message (never blocks for long: a control socket carries only these)."""
    data = json.dumps(message).encode()
    try:
        if fds:
            socket.send_fds(sock, [data], list(fds))
        else:
            sock.send(data)
    except (BrokenPipeError, ConnectionResetError, BlockingIOError) as exc:
        raise ChildGone(f"the sandbox process went away ({exc.__class__.__name__})") from None


class ChildGone(Exception):
    """A child's control socket closed: it exited or was killed."""


class Child:
    """One forked sandbox process, driven over its control socket."""

    def __init__(self, pid: int, sock: socket.socket, exited: asyncio.Future[int]) -> None:
        self.pid = pid
        self.sock = sock
        self.exited = exited  # resolves to the wait status the zygote reports
        self.pidfd: int | None
        try:
            self.pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            self.pidfd = None

    def send(self, message: dict[str, Any], fds: list[int] | tuple[int, ...] = ()) -> None:
        send(self.sock, message, fds)

    async def receive(self) -> tuple[dict[str, Any], list[int]]:
        message, fds = await receive(self.sock)
        if message is None:
            raise ChildGone("the sandbox process exited")
        return message, fds

    async def expect(self, op: str) -> dict[str, Any]:
        message, fds = await self.receive()
        for fd in fds:
            os.close(fd)
        if message.get("op") == "error":
            raise ChildGone(str(message.get("message")))
        if message.get("op") != op:
            raise ChildGone(f"expected {op!r} from the sandbox process, got {message.get('op')!r}")
        return message

    def kill(self) -> None:
        """SIGKILL: as pid 1 of its namespace, everything it started dies with it."""
        if self.pidfd is not None and not self.exited.done():
            with contextlib.suppress(ProcessLookupError, OSError):
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)

    def close(self) -> None:
        """Close the control socket (the child exits if it still runs) and the pidfd."""
        self.sock.close()
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None

    async def finish(self, timeout_s: float = 5.0) -> int | None:
        """Kill, wait for the exit status, release; None if the zygote never reported it."""
        self.kill()
        try:
            return await asyncio.wait_for(asyncio.shield(self.exited), timeout_s)
        except TimeoutError:
            return None
        finally:
            self.close()


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the fork server failed to start: %r", task.exception())


class _Zygote:
    """One zygote process and its control socket."""

    def __init__(self, process: asyncio.subprocess.Process, sock: socket.socket) -> None:
        self.process = process
        self.sock = sock
        self.started = time.monotonic()
        self.pending: dict[int, asyncio.Future[int]] = {}  # spawn token -> pid
        self.exits: dict[int, asyncio.Future[int]] = {}  # pid -> wait status
        self.children = 0
        self.reader: asyncio.Task[None] | None = None
        self.dead = asyncio.get_running_loop().create_future()

    def exit_future(self, pid: int) -> asyncio.Future[int]:
        return self.exits.setdefault(pid, asyncio.get_running_loop().create_future())

    async def read(self) -> None:
        try:
            while True:
                message, fds = await receive(self.sock)
                for fd in fds:
                    os.close(fd)
                if message is None:
                    break
                if message["op"] == "spawned":
                    future = self.pending.pop(message["token"], None)
                    if future is not None and not future.done():
                        future.set_result(message["pid"])
                elif message["op"] == "exited":
                    future = self.exit_future(message["pid"])
                    if not future.done():
                        future.set_result(message["status"])
                    self.exits.pop(message["pid"], None)
                    self.children -= 1
        finally:
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(ChildGone("the fork server exited"))
            for future in self.exits.values():  # its children die with it (parent-death signal)
                if not future.done():
                    future.set_result(signal.SIGKILL)
            if not self.dead.done():
                self.dead.set_result(None)


class ForkServer:
    """A zygote (restarted when old or dead) and a pool of spare children."""

    def __init__(self, python: Path, config: dict[str, Any], *, spares: int = 4, max_age_s: float = 3600.0) -> None:
        self.python = python
        self.config = config
        self.spares_wanted = spares
        self.max_age_s = max_age_s
        self._zygote: _Zygote | None = None
        self._spares: list[tuple[_Zygote, Child]] = []
        self._tokens = itertools.count(1)
        self._starting: asyncio.Task[None] | None = None
        self._refill: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def ready(self) -> bool:
        return self._zygote is not None and not self._zygote.dead.done()

    async def start(self, wait: bool = True) -> None:
        """Start the zygote (in the background unless ``wait``); failures are logged and
        retried by ``child()`` later, never raised."""
        if self._starting is None or self._starting.done():
            self._starting = asyncio.create_task(self._start(), name="execbox-zygote-start")
            self._starting.add_done_callback(_log_failure)
        if wait:
            try:
                await asyncio.shield(self._starting)
            except Exception as exc:
                log.error("the fork server failed to start: %r", exc)

    async def _start(self) -> None:
        began = time.monotonic()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        script = os.memfd_create("execbox-zygote", 0)  # inheritable: the zygote runs it from here
        try:
            os.write(script, SCRIPT.read_bytes())
            os.set_inheritable(theirs.fileno(), True)
            process = await asyncio.create_subprocess_exec(
                str(self.python), "-I", f"/proc/self/fd/{script}", str(theirs.fileno()),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                pass_fds=(script, theirs.fileno()), env=self.config["zygote_env"], cwd="/",
                start_new_session=True,
            )
        finally:
            os.close(script)
            theirs.close()
        ours.setblocking(False)
        zygote = _Zygote(process, ours)
        asyncio.create_task(self._log_output(process), name="execbox-zygote-log")
        try:
            policy = os.memfd_create("execbox-policy", os.MFD_CLOEXEC)
            try:
                os.write(policy, json.dumps(self.config).encode())
                os.lseek(policy, 0, os.SEEK_SET)
                send(ours, {"op": "config"}, [policy])
            finally:
                os.close(policy)
            message, _ = await asyncio.wait_for(receive(ours), STARTUP_TIMEOUT_S)
            if message is None or message.get("op") != "ready":
                raise ForkServerDown("the fork server exited during start-up (see the log above)")
        except BaseException:
            process.kill()
            ours.close()
            await process.wait()
            raise
        zygote.reader = asyncio.create_task(zygote.read(), name="execbox-zygote-reader")
        old, self._zygote = self._zygote, zygote
        log.info("fork server ready (pid %d) in %.2f s", process.pid, time.monotonic() - began)
        if old is not None:
            self._retire(old)
        self.replenish()

    @staticmethod
    async def _log_output(process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            log.warning("%s", line.decode(errors="replace").rstrip())

    def _retire(self, zygote: _Zygote) -> None:
        """Stop forking from ``zygote``: drop its spares; it exits once its children have."""
        for owner, child in [s for s in self._spares if s[0] is zygote]:
            self._spares.remove((owner, child))
            child.close()
        asyncio.create_task(self._stop_when_idle(zygote), name="execbox-zygote-retire")

    async def _stop_when_idle(self, zygote: _Zygote) -> None:
        while zygote.children > 0 and not zygote.dead.done():
            await asyncio.sleep(1.0)
        if zygote.reader is not None:
            zygote.reader.cancel()
            with contextlib.suppress(BaseException):
                await zygote.reader
        zygote.sock.close()  # EOF: the zygote exits
        try:
            await asyncio.wait_for(zygote.process.wait(), 5.0)
        except TimeoutError:
            zygote.process.kill()
            await zygote.process.wait()

    async def _spawn(self, zygote: _Zygote) -> Child:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        token = next(self._tokens)
        pending = zygote.pending[token] = asyncio.get_running_loop().create_future()
        try:
            send(zygote.sock, {"op": "spawn", "token": token}, [theirs.fileno()])
        except ChildGone:
            zygote.pending.pop(token, None)
            ours.close()
            raise ForkServerDown("the fork server is not running") from None
        finally:
            theirs.close()
        try:
            pid = await asyncio.wait_for(pending, SPAWN_TIMEOUT_S)
        except (TimeoutError, ChildGone):
            ours.close()
            raise ForkServerDown("the fork server did not answer") from None
        zygote.children += 1
        ours.setblocking(False)
        return Child(pid, ours, zygote.exit_future(pid))

    def _current(self) -> _Zygote:
        zygote = self._zygote
        if zygote is None or zygote.dead.done():
            if not self._closed:
                asyncio.ensure_future(self.start(wait=False))
            raise ForkServerDown("the fork server is not running")
        if time.monotonic() - zygote.started > self.max_age_s and (self._starting is None or self._starting.done()):
            asyncio.ensure_future(self.start(wait=False))  # a fresh address-space layout
        return zygote

    async def child(self) -> Child:
        """A spare if one is ready, else a freshly forked child."""
        zygote = self._current()
        while self._spares:
            owner, child = self._spares.pop()
            if owner is zygote and not child.exited.done():
                return child
            child.close()
        return await self._spawn(zygote)

    def replenish(self) -> None:
        """Top the spare pool up in the background (call when executions have finished)."""
        if self._closed or len(self._spares) >= self.spares_wanted:
            return
        if self._refill is None or self._refill.done():
            self._refill = asyncio.create_task(self._fill(), name="execbox-zygote-refill")

    async def _fill(self) -> None:
        while not self._closed and len(self._spares) < self.spares_wanted and self.ready:
            zygote = self._current()
            try:
                child = await self._spawn(zygote)
            except ForkServerDown:
                return
            self._spares.append((zygote, child))

    async def stop(self) -> None:
        self._closed = True
        for task in (self._refill, self._starting):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        for _, child in self._spares:
            child.close()
        self._spares.clear()
        zygote, self._zygote = self._zygote, None
        if zygote is not None:
            if zygote.reader is not None:
                zygote.reader.cancel()
                with contextlib.suppress(BaseException):
                    await zygote.reader
            zygote.sock.close()
            try:
                await asyncio.wait_for(zygote.process.wait(), 5.0)
            except TimeoutError:
                zygote.process.kill()
                await zygote.process.wait()
