"""Containers: persistent, workspace-scoped sandboxes that expire.

The manager owns container metadata (``containers/store.py``), serialises executions per
container, runs the reaper, and turns the sandbox's output files into Files API records.
Everything it knows lives on disk (the boxes) and in the database, so containers survive
a restart: ``start()`` reopens them and frees those that expired in the meantime.
Metadata queries run in worker threads: a remote database's round trips would otherwise
stall the event loop, and every other request with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Literal, TypeVar

import sqlalchemy as sa

from execbox import metrics as metrics_module
from execbox.containers.heavy import HeavyWork
from execbox.containers.limits import ExecutionGate
from execbox.containers.store import EXPIRED, ContainerRow, ContainerStore
from execbox.db import utcnow
from execbox.errors import (
    ContainerDeleted,
    ContainerExpired,
    ContainerNotFound,
    FileNotFound,
    InvalidRequest,
    RequestTooLarge,
    StorageQuotaExceeded,
    TooManyContainers,
    from_sandbox,
)
from execbox.files.store import FileRecord, FileStore, safe_filename
from execbox.ids import new_id
from execbox.metrics import Metrics
from execbox.sandbox.errors import SandboxError
from execbox.sandbox.types import Box, EditRequest, EditResult, Engine, ExecRequest, ExecResult, OutputFile
from execbox.usage.store import UsageStore, container_seconds

log = logging.getLogger("execbox.containers")

T = TypeVar("T")

MAX_LIST_LIMIT = 1000
# Tombstones of expired containers are forgotten after this long (then the id is "not found").
TOMBSTONE_RETENTION = timedelta(days=30)


@dataclass(frozen=True)
class Container:
    id: str  # "container_" + random
    workspace: str
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class GeneratedFile:
    """An output file of an execution: stored (``file``) or refused (``error_code``)."""

    filename: str
    size_bytes: int
    file: FileRecord | None
    error_code: str | None = None  # "output_file_too_large"
    note: str | None = None  # why it was refused, when the error code does not say


@dataclass(frozen=True)
class ContainerPage:
    """A page of containers with each one's disk use in bytes and whether its live kernel
    runs (None where unknown)."""

    containers: list[Container]
    has_more: bool
    disk_used_bytes: list[int | None]
    kernel_live: list[bool | None]


@dataclass
class Execution:
    """An execution's result plus its output files, already in the Files API."""

    result: ExecResult
    files: list[GeneratedFile] = field(default_factory=list)


class ContainerManager:
    """Lifecycle of containers. Every method takes the caller's workspace; a container of
    another workspace raises ContainerNotFound, an expired one ContainerExpired."""

    def __init__(
        self,
        engine: Engine,
        database: sa.Engine,
        files: FileStore,
        boxes_dir: Path,
        ttl_s: float,
        expiry: Literal["idle", "created"],
        reaper_interval_s: float,
        max_containers: int = 1000,
        metrics: Metrics = metrics_module.NULL,
        node: str | None = None,
        file_threads: int = 4,
        file_ops_per_workspace: int = 2,
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.store = ContainerStore(database, node)  # sees only this node's containers
        self.files = files
        self.boxes_dir = boxes_dir
        self.ttl = timedelta(seconds=ttl_s)
        self.expiry = expiry
        self.reaper_interval_s = reaper_interval_s
        self.max_containers = max_containers
        self._locks: dict[str, asyncio.Lock] = {}
        self._owners: dict[str, str] = {}  # container -> workspace, as last read: skips a re-read
        self._running: dict[str, asyncio.Task[Any]] = {}  # the execution or edit under way, by container
        self._deleting: set[str] = set()
        self._creating = asyncio.Lock()  # makes counting and inserting one step
        self._heavy = HeavyWork(file_threads, file_ops_per_workspace)
        self._reaper: asyncio.Task[None] | None = None
        self.gate: ExecutionGate | None = None  # concurrency quotas (set by the composition root)
        self.usage: UsageStore | None = None  # metering (set by the composition root)

    async def start(self) -> None:
        """Start the engine, reopen surviving containers' disks and start the reaper."""
        self.boxes_dir.mkdir(parents=True, exist_ok=True)
        self.boxes_dir.chmod(0o711)  # every box uid traverses it to its own disk; nobody lists it
        await self.engine.start()
        await asyncio.to_thread(self.store.adopt_orphans)
        for row in await asyncio.to_thread(self.store.active):
            if row.expires_at <= utcnow():
                await self._free(row)
                continue
            try:
                await self.engine.open_box(self._box(row))
            except Exception:
                log.exception("container %s could not be reopened; freeing it", row.id)
                await self._free(row)
        self._reaper = asyncio.create_task(self._reap_forever(), name="execbox-reaper")

    async def stop(self) -> None:
        """Stop the reaper and release every box's host resources, keeping their disks."""
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        for row in await asyncio.to_thread(self.store.active):
            async with self._lock(row.id):
                try:
                    await self.engine.close_box(self._box(row))
                except Exception:
                    log.exception("container %s could not be closed", row.id)
        self._heavy.shutdown()
        await self.engine.stop()

    async def create(self, workspace: str) -> Container:
        """A new container; TooManyContainers if the workspace has ``max_containers`` live ones."""
        async with self._creating:
            if await asyncio.to_thread(self.store.count_active, workspace) >= self.max_containers:
                soonest = await asyncio.to_thread(self.store.soonest_expiry, workspace)
                wait = None if soonest is None else max(1, math.ceil((soonest - utcnow()).total_seconds()))
                raise TooManyContainers(self.max_containers, retry_after=wait)
            now = utcnow()
            row = await asyncio.to_thread(self.store.insert, new_id("container"), workspace, now, now + self.ttl)
        box = self._box(row)
        try:
            with sandbox_errors():
                await self.engine.create_box(box)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.engine.destroy_box(box)
            await asyncio.to_thread(self.store.delete, row.id)
            raise
        return _container(row)

    async def get(self, workspace: str, container_id: str) -> Container:
        row = await self._find(workspace, container_id)
        if row.expires_at <= utcnow():
            raise ContainerExpired(container_id)
        return _container(row)

    async def page(
        self, workspace: str, limit: int = 20, *, after_id: str | None = None, before_id: str | None = None
    ) -> ContainerPage:
        """The workspace's live containers, newest first; ``after_id`` pages to older ones,
        ``before_id`` to newer ones. InvalidRequest for an unknown cursor or a bad limit."""
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise InvalidRequest(f"limit must be between 1 and {MAX_LIST_LIMIT}.")
        if after_id is not None and before_id is not None:
            raise InvalidRequest("Use only one of `before_id` and `after_id`.")
        found = await asyncio.to_thread(
            self.store.page, workspace, utcnow(), limit, after_id=after_id, before_id=before_id
        )
        if found is None:
            name = "after_id" if after_id is not None else "before_id"
            raise InvalidRequest(f"{name}: unknown container `{after_id or before_id}`.")
        rows, has_more = found
        used = await asyncio.to_thread(lambda: [_disk_used(self._box(row)) for row in rows])
        kernels = self.live_kernels()
        live = [None if kernels is None else row.id in kernels for row in rows]
        return ContainerPage([_container(row) for row in rows], has_more, used, live)

    def live_kernels(self) -> set[str] | None:
        """Ids of the containers whose live Python kernel is running (None: the engine has none)."""
        kernels = getattr(self.engine, "kernels", None)
        return None if kernels is None else set(kernels)

    async def execute(self, workspace: str, container_id: str, request: ExecRequest) -> Execution:
        """Run code; refreshes the idle TTL. Serialised per container."""
        return await self._run(workspace, container_id, request.kind, lambda box: self.engine.execute(box, request))

    async def resume(self, workspace: str, container_id: str, results: dict[int, str]) -> Execution:
        """Continue a session cell that awaits client tools (``ExecResult.tool_calls``)."""
        return await self._run(workspace, container_id, "python", lambda box: self.engine.resume(box, results))

    async def _run(
        self, workspace: str, container_id: str, tool: str, run: Callable[[Box], Coroutine[Any, Any, ExecResult]]
    ) -> Execution:
        """An execution (or its continuation) in a container: counted, timed, its output files
        stored, the container touched, the workspace metered (a cell waiting for tools counts
        when it is done)."""
        async with self._slot(workspace), self._using(workspace, container_id, touch=False) as (row, box):
            with self._measured(tool) as measure:
                result = await self._stoppable(row.id, run(box))
                measure.done(_outcome(result), result.duration_s, result.path)
            if result.return_code == 137 and not (result.timed_out or result.oom_killed):
                result.stderr += ("" if not result.stderr or result.stderr.endswith("\n") else "\n") + (
                    "[execbox: the execution was killed by SIGKILL, not by a limit of this sandbox]")
            files = await asyncio.to_thread(self._store_outputs, workspace, result.files) if result.files else []
            _note_refusals(result, files)
            # (held locked until now, the reaper skipped it)
            await self._touch(row, execution_seconds=0.0 if result.tool_calls else result.duration_s)
        if not result.tool_calls:
            await self._meter(workspace, "execution", seconds=result.duration_s)
        return Execution(result, files)

    async def edit(self, workspace: str, container_id: str, request: EditRequest) -> EditResult:
        async with self._slot(workspace), self._using(workspace, container_id) as (row, box):
            with self._measured("editor") as measure:
                result = await self._stoppable(row.id, self.engine.edit(box, request))
                measure.done("error" if result.error_code else "ok", path="bwrap")  # the editor runs in bwrap
        await self._meter(workspace, "execution")
        return result

    def _slot(self, workspace: str) -> contextlib.AbstractAsyncContextManager[None]:
        return self.gate.slot(workspace) if self.gate else contextlib.nullcontext()

    async def _meter(self, workspace: str, kind: Any, **amounts: Any) -> None:
        if self.usage is None:
            return
        try:
            await asyncio.to_thread(self.usage.record, workspace, kind, **amounts)
        except Exception:
            log.exception("could not record %s usage of workspace %s", kind, workspace)

    @contextlib.contextmanager
    def _measured(self, tool: str) -> Iterator[_Measure]:
        """Count one execution of ``tool`` and time it; the body reports how it went with
        ``done`` (not reported: it failed)."""
        measure = _Measure(path="unknown")
        metrics = self.metrics
        metrics.executions_in_progress.inc()
        started = time.perf_counter()
        try:
            yield measure
        finally:
            metrics.executions_in_progress.dec()
            duration = measure.seconds if measure.seconds is not None else time.perf_counter() - started
            metrics.executions.labels(tool, measure.path, measure.outcome).inc()
            metrics.execution_duration.labels(tool, measure.path).observe(duration)
            log.info(
                "%s execution: %s in %.0f ms", tool, measure.outcome, duration * 1000,
                extra={"tool": tool, "exec_path": measure.path, "outcome": measure.outcome,
                       "duration_ms": round(duration * 1000, 1)},
            )

    async def put_file(self, workspace: str, container_id: str, path: str, data: bytes | BinaryIO) -> str:
        """Write into the workspace; returns the sanitized path actually written."""
        async with self._using(workspace, container_id) as (_, box):
            return await self._heavy.run(workspace, self.engine.write_file, box, path, data)

    async def upload(self, workspace: str, container_id: str, file: FileRecord) -> str:
        """Copy a Files API file into the container's working directory under its filename."""
        if file.workspace != workspace:
            raise FileNotFound(file.id)
        async with self._using(workspace, container_id) as (_, box):
            blob = await asyncio.to_thread(self.files.path, workspace, file.id)
            with blob.open("rb") as data:  # streamed: it may be as large as the largest upload
                return await self._heavy.run(workspace, self.engine.write_file, box, safe_filename(file.filename), data)

    async def open_file(self, workspace: str, container_id: str, path: str) -> BinaryIO:
        """A workspace file, open for reading; the caller closes it."""
        async with self._using(workspace, container_id, exclusive=False) as (_, box):
            return await self._heavy.run(workspace, self.engine.open_file, box, path, self.engine.limits.output_file_bytes)

    async def list_files(self, workspace: str, container_id: str) -> list[tuple[str, int]]:
        async with self._using(workspace, container_id, exclusive=False) as (_, box):
            return await self._heavy.run(workspace, self.engine.list_files, box)

    async def destroy(self, workspace: str, container_id: str) -> None:
        """Delete a container now: its box if it still has one, and its metadata. An
        execution or edit under way is killed first; its caller gets ContainerDeleted."""
        await self._find(workspace, container_id, allow_expired=True)
        self._deleting.add(container_id)
        try:
            if running := self._running.get(container_id):
                running.cancel()  # the engine kills the sandbox's processes on cancellation
            async with self._lock(container_id):
                row = await self._find(workspace, container_id, allow_expired=True)
                if row.status != EXPIRED:
                    with sandbox_errors():
                        await self.engine.destroy_box(self._box(row))
                    await self._meter(workspace, "container", seconds=container_seconds(row.created_at, utcnow()))
                await asyncio.to_thread(self.store.delete, container_id)
                self._locks.pop(container_id, None)
                self._owners.pop(container_id, None)
        finally:
            self._deleting.discard(container_id)

    async def reap(self) -> int:
        """Free every expired container now; returns how many. Containers in use are
        skipped, never interrupted: their user re-checks expiry, the next sweep frees them."""
        freed = 0
        for due in await asyncio.to_thread(self.store.due, utcnow()):
            lock = self._lock(due.id)
            if lock.locked():  # in use right now; its user re-checks expiry
                continue
            async with lock:
                row = await asyncio.to_thread(self.store.get, due.id)
                if row is not None and row.status != EXPIRED and row.expires_at <= utcnow():
                    freed += await self._free(row)
        await asyncio.to_thread(self.store.purge_tombstones, utcnow() - TOMBSTONE_RETENTION)
        return freed

    async def _stoppable(self, container_id: str, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` (holding the container's lock) so that ``destroy`` can cancel it."""
        if container_id in self._deleting:
            work.close()
            raise ContainerDeleted(container_id)
        task = asyncio.ensure_future(work)
        self._running[container_id] = task
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if container_id in self._deleting and not (current and current.cancelling()):
                raise ContainerDeleted(container_id) from None
            raise
        finally:
            del self._running[container_id]

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(self.reaper_interval_s)
            try:
                freed = await self.reap()
                if freed:
                    log.info("reaper freed %d expired container(s)", freed)
                await asyncio.to_thread(self.files.purge_expired)
            except Exception:
                log.exception("reaper sweep failed")

    @contextlib.asynccontextmanager
    async def _using(
        self, workspace: str, container_id: str, *, exclusive: bool = True, touch: bool = True
    ) -> AsyncIterator[tuple[ContainerRow, Box]]:
        """A live container's box, marked as used (unless ``touch`` is False: the caller
        touches it when done). ``exclusive`` holds its lock throughout; a container found
        past its expiry is freed on the spot. The row is read once under the lock; an id
        without a lock yet is checked before one is made for it, so unknown or foreign ids
        never create lock entries."""
        if self._owners.get(container_id) != workspace:
            await self._find(workspace, container_id)
        async with self._held(self._lock(container_id)) if exclusive else contextlib.nullcontext():
            row = await self._find(workspace, container_id)
            self._owners[container_id] = workspace
            if row.expires_at <= utcnow():
                if exclusive:
                    await self._free(row)
                raise ContainerExpired(container_id)
            with sandbox_errors():  # what the caller does with the box
                yield (await self._touch(row) if touch else row), self._box(row)

    @contextlib.asynccontextmanager
    async def _held(self, lock: asyncio.Lock) -> AsyncIterator[None]:
        """``lock``, held; time spent queued behind another holder counts as waiting."""
        if lock.locked():
            self.metrics.executions_waiting.inc()
            try:
                await lock.acquire()
            finally:
                self.metrics.executions_waiting.dec()
        else:
            await lock.acquire()
        try:
            yield
        finally:
            lock.release()

    async def _find(self, workspace: str, container_id: str, *, allow_expired: bool = False) -> ContainerRow:
        row = await asyncio.to_thread(self.store.get, container_id)
        if row is None or row.workspace != workspace:
            raise ContainerNotFound(container_id)
        if row.status == EXPIRED and not allow_expired:
            raise ContainerExpired(container_id)
        return row

    async def _touch(self, row: ContainerRow, execution_seconds: float = 0.0) -> ContainerRow:
        now = utcnow()
        expires_at = (now if self.expiry == "idle" else row.created_at) + self.ttl
        await asyncio.to_thread(self.store.touch, row.id, now, expires_at, execution_seconds)
        return ContainerRow(
            row.id, row.workspace, row.uid, row.status, row.created_at, now, expires_at,
            row.execution_seconds + execution_seconds,
        )

    async def _free(self, row: ContainerRow) -> bool:
        """Destroy an expired container's box and leave a tombstone. On failure the row
        stays active (its uid stays taken) and the next sweep retries."""
        try:
            await self.engine.destroy_box(self._box(row))
        except Exception:
            log.exception("could not free expired container %s; will retry", row.id)
            return False
        await asyncio.to_thread(self.store.expire, row.id)
        self._locks.pop(row.id, None)
        self._owners.pop(row.id, None)
        ended = min(row.expires_at, utcnow())
        await self._meter(row.workspace, "container", seconds=container_seconds(row.created_at, ended), at=ended)
        return True

    def _lock(self, container_id: str) -> asyncio.Lock:
        return self._locks.setdefault(container_id, asyncio.Lock())

    def _box(self, row: ContainerRow) -> Box:
        assert row.uid is not None, "a tombstone has no box"
        return Box(id=row.id, uid=row.uid, root=self.boxes_dir / row.id)

    def _store_outputs(self, workspace: str, outputs: list[OutputFile]) -> list[GeneratedFile]:
        """Move each staged output file into the Files API (runs in a worker thread)."""
        try:
            return [self._store_output(workspace, out) for out in outputs]
        finally:
            for out in outputs:
                if out.staged is not None:
                    out.staged.unlink(missing_ok=True)

    def _store_output(self, workspace: str, out: OutputFile) -> GeneratedFile:
        too_large = GeneratedFile(out.filename, out.size_bytes, None, error_code="output_file_too_large")
        if out.staged is None or out.too_large:
            return too_large
        try:
            record = self.files.create(workspace, safe_filename(out.filename), out.staged, downloadable=True)
        except RequestTooLarge:
            return too_large
        except StorageQuotaExceeded:
            return GeneratedFile(
                out.filename, out.size_bytes, None, error_code="output_file_too_large",
                note="[execbox: output files were not stored: the workspace's storage quota is full; "
                "delete files to make room]",
            )
        return GeneratedFile(record.filename, record.size_bytes, record)


@dataclass
class _Measure:
    """How an execution went, for the metrics: ``path`` is the execution path the result
    names (``fork`` or ``bwrap``; ``unknown`` when there is no result)."""

    path: str
    outcome: str = "failed"
    seconds: float | None = None  # the sandbox's own measure, when it has one

    def done(self, outcome: str, seconds: float | None = None, path: str | None = None) -> None:
        self.outcome, self.seconds = outcome, seconds
        self.path = path or self.path


def _outcome(result: ExecResult) -> str:
    if result.tool_calls:
        return "paused"  # a cell waiting for client tool results; its continuation counts again
    if result.timed_out:
        return "timeout"
    if result.oom_killed:
        return "oom"
    return "ok" if result.return_code == 0 else "error"


def _note_refusals(result: ExecResult, files: list[GeneratedFile]) -> None:
    """Say on stderr why output files were refused, when their error code does not."""
    for note in dict.fromkeys(f.note for f in files if f.note):
        result.stderr += ("\n" if result.stderr and not result.stderr.endswith("\n") else "") + note


@contextlib.contextmanager
def sandbox_errors() -> Iterator[None]:
    """The sandbox's own exceptions, as the errors a client is told (``errors.from_sandbox``)."""
    try:
        yield
    except SandboxError as exc:
        raise from_sandbox(exc) from exc


def _container(row: ContainerRow) -> Container:
    return Container(row.id, row.workspace, row.created_at, row.last_used_at, row.expires_at)



def _disk_used(box: Box) -> int | None:
    """Bytes in use on a box's own filesystem; None when it has none (insecure mode, no loop disk)."""
    try:
        if not os.path.ismount(box.mount):
            return None
        stats = os.statvfs(box.mount)
    except OSError:
        return None
    return (stats.f_blocks - stats.f_bfree) * stats.f_frsize
