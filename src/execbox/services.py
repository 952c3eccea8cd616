"""The composition root: builds every layer from Settings and wires them together.

Only the HTTP layer and the CLI import this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from execbox import db
from execbox.backends.registry import Backends
from execbox.batches.runner import BatchRunner
from execbox.batches.store import BatchStore, Claimed
from execbox.containers.limits import ExecutionGate
from execbox.containers.manager import ContainerManager
from execbox.containers.store import UID_BASE
from execbox.conversation.loop import Conversation
from execbox.conversation.thread_store import ThreadStore
from execbox.datadir import restrict_database
from execbox.files.store import FileStore
from execbox.metrics import Metrics
from execbox.sandbox import policy
from execbox.sandbox.bwrap import BwrapEngine
from execbox.sandbox.forkengine import ForkEngine
from execbox.sandbox.types import Box, ExecRequest, Limits
from execbox.settings import Settings
from execbox.usage.store import UsageStore

log = logging.getLogger("execbox")

THREAD_SWEEP_INTERVAL_S = 60.0  # expired thread state lingers at most this long
# The start-up self-test's sandbox runs as this uid, just below the containers' range.
SELF_TEST_UID = UID_BASE - 1


def limits_from(settings: Settings) -> Limits:
    return Limits(
        memory_bytes=settings.memory_limit,
        cpus=settings.cpu_limit,
        pids=settings.pids_limit,
        disk_bytes=settings.disk_limit,
        nofile=settings.nofile_limit,
        open_files=settings.container_open_files,
        timeout_s=settings.exec_timeout,
        output_bytes=settings.output_limit,
        output_file_bytes=settings.output_file_limit,
        output_files=settings.output_files_limit,
        output_total_bytes=settings.output_files_total_limit,
    )


def _host_executions(settings: Settings) -> int:
    """Executions the host runs at once (the execution gate's host-wide cap)."""
    return settings.host_max_executions or 2 * (os.cpu_count() or 1)


def _file_max() -> int:
    """The host's open-file table size (fs.file-max)."""
    try:
        return int(open("/proc/sys/fs/file-max").read().split()[0])
    except (OSError, ValueError, IndexError):
        return 2**63 - 1


@dataclass
class Services:
    settings: Settings
    database: sa.Engine
    files: FileStore
    containers: ContainerManager
    backends: Backends
    conversation: Conversation
    batches: BatchStore
    batch_runner: BatchRunner
    usage: UsageStore | None = None
    metrics: Metrics = field(default_factory=Metrics)
    _sweeper: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    @classmethod
    def build(cls, settings: Settings) -> "Services":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        # Sandboxes (each its own uid) must traverse it to their disks; nobody may list it.
        settings.data_dir.chmod(0o711)
        database = db.connect(settings.database, busy_timeout_s=settings.database_busy_timeout)
        db.create_tables(database)
        if settings.database_url is None:
            restrict_database(settings.data_dir / "execbox.db")
        metrics = Metrics()
        files = FileStore(
            database, settings.data_dir / "files", max_size=settings.max_upload_size,
            quota_bytes=settings.workspace_storage_quota, generated_ttl_s=settings.generated_file_ttl,
        )
        limits = limits_from(settings)
        # Containers that hold processes at once: those running an execution, and those
        # with a live kernel between executions.
        holding = _host_executions(settings) + (settings.max_kernels if settings.fork_server else 0)
        fitted = policy.fit_file_table(limits, holding, _file_max())
        if fitted.open_files < limits.open_files:
            log.warning(
                "each container may hold %d open files, not %d (%d per process): %d containers with processes "
                "(HOST_MAX_EXECUTIONS + MAX_KERNELS) must stay within half of fs.file-max", fitted.open_files,
                limits.open_files, policy.nofile_per_process(fitted), holding,
            )
        if fitted.open_files * holding > _file_max() * policy.FILE_TABLE_SHARE:
            log.error("HOST_MAX_EXECUTIONS + MAX_KERNELS containers could exhaust half of fs.file-max even at %d open "
                      "files per process; lower them", policy.MIN_NOFILE)
        limits = fitted
        # The reference engine, or the fork server on top of it (settings.fork_server).
        common: dict[str, Any] = dict(
            limits=limits_from(settings),
            state_dir=settings.data_dir / "sandbox",
            runtime_dir=settings.runtime_dir,
            insecure=settings.insecure,
            boxes_dir=settings.data_dir / "containers",
            disk_pool=settings.disk_pool,
        )
        engine = (
            ForkEngine(
                **common,
                spares=settings.fork_spares,
                zygote_max_age_s=settings.fork_server_max_age,
                kernel_idle_s=settings.kernel_idle_timeout,
                max_kernels=settings.max_kernels,
                favor_dynmods=settings.cgroup_favor_dynmods,
            )
            if settings.fork_server
            else BwrapEngine(**common)
        )
        containers = ContainerManager(
            engine=engine,
            database=database,
            files=files,
            boxes_dir=settings.data_dir / "containers",
            ttl_s=settings.container_ttl,
            expiry=settings.container_expiry,
            reaper_interval_s=settings.reaper_interval,
            max_containers=settings.max_containers,
            metrics=metrics,
            node=settings.node,
            file_threads=settings.file_threads,
            file_ops_per_workspace=settings.file_ops_per_workspace,
        )
        usage = UsageStore(database)
        containers.usage = usage
        containers.gate = ExecutionGate(
            settings.max_concurrent_executions,
            settings.execution_queue,
            _host_executions(settings),
        )
        metrics.count_live(containers.store.count_all_active, lambda: len(containers.live_kernels() or ()))
        backends = Backends.from_settings(settings)
        conversation = Conversation(
            backends=backends, containers=containers, files=files, settings=settings, threads=ThreadStore(database),
            metrics=metrics,
        )
        conversation.usage = usage
        batches = BatchStore(database)

        def count_batch_request(claimed: Claimed, result: dict[str, Any]) -> None:
            usage.record(claimed.workspace, "batch_request")

        batch_runner = BatchRunner(
            batches, conversation, node=settings.node, workers=settings.batch_workers, on_result=count_batch_request
        )
        return cls(settings, database, files, containers, backends, conversation, batches, batch_runner, usage, metrics)

    async def self_test(self) -> float:
        """Run ``print(6 * 7)`` in a throwaway sandbox, so that a server that starts can run code.
        Returns the seconds it took; raises with the reason if it fails."""
        started = time.monotonic()
        # The reference path: the one every execution falls back to (the fork server starts later).
        engine = BwrapEngine(
            limits=limits_from(self.settings),
            state_dir=self.settings.data_dir / "sandbox",
            runtime_dir=self.settings.runtime_dir,
            insecure=self.settings.insecure,
        )
        name = f"selftest-{os.getpid()}"
        box = Box(id=name, uid=SELF_TEST_UID, root=self.settings.data_dir / "containers" / f".{name}")
        try:
            await engine.create_box(box)
            result = await engine.execute(box, ExecRequest("python", "print(6 * 7)", timeout_s=60))
        finally:
            with contextlib.suppress(Exception):
                await engine.destroy_box(box)
        if result.return_code != 0 or result.stdout.strip() != "42":
            detail = (result.stderr.strip() or result.stdout.strip())[-300:]
            raise RuntimeError(f"a test execution returned {result.return_code}: {detail}")
        return time.monotonic() - started

    async def start(self) -> None:
        await self.containers.start()
        self._sweeper = asyncio.create_task(
            self.conversation.threads.sweep_forever(THREAD_SWEEP_INTERVAL_S), name="execbox-thread-sweeper"
        )
        await self.batch_runner.start()

    async def stop(self, grace_s: float = 0.0) -> None:
        await self.batch_runner.stop(grace_s=grace_s)
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        await self.containers.stop()
        await self.backends.aclose()
        self.database.dispose()
