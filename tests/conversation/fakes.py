"""Stand-ins for the layers below the tool loop.

``FakeContainers`` replaces the ContainerManager: a directory per container, code run as
plain subprocesses, no isolation at all; output files go to a real FileStore, like the real
manager's. ``ScriptedBackend`` is a model that plays back fixed turns.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

from execbox.backends.base import (
    BlockStart,
    BlockStop,
    InputDelta,
    ModelEvent,
    ModelInfo,
    ModelRequest,
    TextDelta,
    TurnStop,
)
from execbox.containers.manager import Container, Execution, GeneratedFile
from execbox.db import utcnow
from execbox.errors import ContainerExpired, ContainerNotFound
from execbox.files.store import FileRecord, FileStore
from execbox.ids import new_id
from execbox.sandbox.types import EditRequest, EditResult, ExecRequest, ExecResult


class FakeContainers:
    """Containers as directories (see the module docstring); ``executed`` records the requests."""

    def __init__(self, root: Path, files: FileStore, *, timeout_s: float = 10.0, max_file_bytes: int = 1000) -> None:
        self.root = root
        self.files = files
        self.timeout_s = timeout_s
        self.max_file_bytes = max_file_bytes
        self.containers: dict[str, Container] = {}
        self.expired: set[str] = set()
        self.executed: list[ExecRequest | EditRequest] = []

    def workspace_dir(self, container_id: str) -> Path:
        return self.root / container_id / "workspace"

    def _outputs_dir(self, container_id: str) -> Path:
        return self.root / container_id / "outputs"

    async def create(self, workspace: str) -> Container:
        now = utcnow()
        container = Container(new_id("container"), workspace, now, now, now + timedelta(hours=1))
        self.containers[container.id] = container
        self.workspace_dir(container.id).mkdir(parents=True)
        self._outputs_dir(container.id).mkdir()
        return container

    async def get(self, workspace: str, container_id: str) -> Container:
        container = self.containers.get(container_id)
        if container is None or container.workspace != workspace:
            raise ContainerNotFound(container_id)
        if container_id in self.expired:
            raise ContainerExpired(container_id)
        return container

    async def execute(self, workspace: str, container_id: str, request: ExecRequest) -> Execution:
        await self.get(workspace, container_id)
        self.executed.append(request)
        argv = [sys.executable, "-c", request.source] if request.kind == "python" else ["bash", "-c", request.source]
        outputs = self._outputs_dir(container_id)
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=self.workspace_dir(container_id),
            env={"OUTPUT_DIR": str(outputs), "PATH": "/usr/bin:/bin"},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.timeout_s)
        except TimeoutError:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            result = ExecResult("", "", -9, time.monotonic() - started, timed_out=True)
            return Execution(result)
        result = ExecResult(out.decode(), err.decode(), proc.returncode or 0, time.monotonic() - started)
        return Execution(result, [self._store(workspace, path) for path in sorted(outputs.iterdir())])

    def _store(self, workspace: str, path: Path) -> GeneratedFile:
        size = path.stat().st_size
        if size > self.max_file_bytes:
            path.unlink()
            return GeneratedFile(path.name, size, None, error_code="output_file_too_large")
        return GeneratedFile(path.name, size, self.files.create(workspace, path.name, path, downloadable=True))

    async def edit(self, workspace: str, container_id: str, request: EditRequest) -> EditResult:
        await self.get(workspace, container_id)
        self.executed.append(request)
        target = self.workspace_dir(container_id) / request.path.removeprefix("/workspace/")
        if request.command == "create":
            existed = target.exists()
            target.write_text(request.file_text or "")
            return EditResult(command="create", is_file_update=existed)
        if not target.exists():
            return EditResult(command=request.command, error_code="file_not_found", error_message=f"{request.path}")
        text = target.read_text()
        if request.command == "view":
            return EditResult(command="view", content=text, file_type="text", total_lines=len(text.splitlines()))
        target.write_text(text.replace(request.old_str or "", request.new_str or "", 1))
        return EditResult(command="str_replace", lines=[f"-{request.old_str}", f"+{request.new_str}"])

    async def upload(self, workspace: str, container_id: str, file: FileRecord) -> str:
        await self.get(workspace, container_id)
        source = await asyncio.to_thread(self.files.path, workspace, file.id)
        shutil.copyfile(source, self.workspace_dir(container_id) / file.filename)
        return file.filename


class ScriptedBackend:
    """A model that plays back fixed turns and records the requests it got.

    Each turn is a list of ``("text", TEXT)`` and ``("call", TOOL_NAME, INPUT_JSON)`` items;
    a turn with calls ends with ``stop_reason: tool_use``.
    """

    def __init__(self, *turns: list[tuple[str, ...]]) -> None:
        self.turns = list(turns)
        self.requests: list[ModelRequest] = []

    def models(self) -> list[ModelInfo]:
        return []

    def serves(self, model: str) -> bool:
        return True

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        self.requests.append(request)
        turn = self.turns.pop(0)
        for item in turn:
            if item[0] == "text":
                yield BlockStart(kind="text")
                yield TextDelta(item[1])
            else:
                yield BlockStart(kind="tool_use", name=item[1])
                yield InputDelta(item[2])
            yield BlockStop()
        yield TurnStop("tool_use" if any(item[0] == "call" for item in turn) else "end_turn", 10, 5)

    async def count_tokens(self, request: ModelRequest) -> int:
        return 10

    async def aclose(self) -> None:
        return None
