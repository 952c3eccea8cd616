"""A plain-directory stand-in for the sandbox Engine, for the containers layer's unit tests.

It runs code as ordinary subprocesses in the box's workspace (no isolation) and records
what the manager asked of it, so the manager's bookkeeping can be checked in isolation.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import BinaryIO

import pytest

from execbox import db
from execbox.containers.manager import ContainerManager
from execbox.files.store import FileStore
from execbox.sandbox.types import Box, EditRequest, EditResult, ExecRequest, ExecResult, Limits, OutputFile
from tests.database import database_url  # noqa: F401  (fixture)


class DirEngine:
    """Implements the sandbox Engine protocol on plain directories."""

    def __init__(self, staging: Path) -> None:
        self.limits = Limits(output_file_bytes=1000)
        self.staging = staging
        self.staging.mkdir(exist_ok=True)
        self.open: set[str] = set()
        self.running: dict[str, int] = {}
        self.max_running_per_box = 0
        self.max_running_total = 0

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def resume(self, box: Box, results: dict[int, str]) -> ExecResult:
        raise NotImplementedError("no sessions on plain directories")

    async def create_box(self, box: Box) -> None:
        box.workspace.mkdir(parents=True, exist_ok=True)
        box.outputs.mkdir(parents=True, exist_ok=True)
        self.open.add(box.id)

    async def open_box(self, box: Box) -> None:
        if not box.workspace.is_dir():
            raise FileNotFoundError(box.workspace)
        self.open.add(box.id)

    async def close_box(self, box: Box) -> None:
        self.open.discard(box.id)

    async def destroy_box(self, box: Box) -> None:
        shutil.rmtree(box.root, ignore_errors=True)
        self.open.discard(box.id)

    async def execute(self, box: Box, request: ExecRequest) -> ExecResult:
        assert box.id in self.open, "execute on a box that is not open"
        self.running[box.id] = self.running.get(box.id, 0) + 1
        self.max_running_per_box = max(self.max_running_per_box, self.running[box.id])
        self.max_running_total = max(self.max_running_total, sum(self.running.values()))
        try:
            argv = [sys.executable, "-c", request.source] if request.kind == "python" else ["bash", "-c", request.source]
            started = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                *argv, cwd=box.workspace, env={"OUTPUT_DIR": str(box.outputs), "PATH": "/usr/bin:/bin"},
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            try:
                out, err = await proc.communicate()
            except asyncio.CancelledError:  # like the real engine: a cancelled run leaves no process
                proc.kill()
                await proc.wait()
                raise
            files = [self._stage(box, p) for p in sorted(box.outputs.iterdir()) if p.is_file()]
            return ExecResult(out.decode(), err.decode(), proc.returncode or 0, time.monotonic() - started, files=files)
        finally:
            self.running[box.id] -= 1

    def _stage(self, box: Box, path: Path) -> OutputFile:
        size = path.stat().st_size
        if size > self.limits.output_file_bytes:
            path.unlink()
            return OutputFile(path.name, size, None, too_large=True)
        staged = self.staging / f"{box.id}-{path.name}"
        path.rename(staged)
        return OutputFile(path.name, size, staged)

    async def edit(self, box: Box, request: EditRequest) -> EditResult:
        target = box.workspace / request.path.lstrip("/")
        if request.command == "create":
            existed = target.exists()
            target.write_text(request.file_text or "")
            return EditResult(command="create", is_file_update=existed)
        if not target.exists():
            return EditResult(command=request.command, error_code="file_not_found")
        return EditResult(command="view", content=target.read_text(), file_type="text")

    def write_file(self, box: Box, relpath: str, data: bytes | BinaryIO) -> str:
        clean = "/".join(p for p in relpath.split("/") if p not in ("", ".", ".."))
        target = box.workspace / clean
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data if isinstance(data, bytes) else data.read())
        return clean

    def open_file(self, box: Box, relpath: str, max_bytes: int) -> BinaryIO:
        return (box.workspace / relpath).open("rb")

    def list_files(self, box: Box) -> list[tuple[str, int]]:
        return sorted(
            (str(p.relative_to(box.workspace)), p.stat().st_size) for p in box.workspace.rglob("*") if p.is_file()
        )


@pytest.fixture
async def make_manager(database_url: str, tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[ContainerManager]]]:  # noqa: F811 (fixture)
    """Builds started managers over one database and data directory (a 'server restart'
    is a second manager over the same state); stops them all at the end."""
    database = db.connect(database_url)
    db.create_tables(database)
    files = FileStore(database, tmp_path / "files", max_size=10_000)
    started: list[ContainerManager] = []

    async def make(
        ttl_s: float = 3600, expiry: str = "idle", reaper_interval_s: float = 3600, max_containers: int = 1000
    ) -> ContainerManager:
        manager = ContainerManager(
            engine=DirEngine(tmp_path / "staging"), database=database, files=files,
            boxes_dir=tmp_path / "boxes", ttl_s=ttl_s, expiry=expiry, reaper_interval_s=reaper_interval_s,
            max_containers=max_containers,
        )
        await manager.start()
        started.append(manager)
        return manager

    yield make
    for manager in started:
        await manager.stop()
    database.dispose()
