"""Containers: persistent, workspace-scoped sandboxes that expire.

The manager owns container metadata (``containers/store.py``), serialises executions per
container, runs the reaper, and turns the sandbox's output files into Files API records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from execbox.files.store import FileRecord
from execbox.sandbox.types import EditRequest, EditResult, ExecRequest, ExecResult


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


@dataclass
class Execution:
    """An execution's result plus its output files, already in the Files API."""

    result: ExecResult
    files: list[GeneratedFile] = field(default_factory=list)


class ContainerManager:
    """Lifecycle of containers. Every method takes the caller's workspace; a container of
    another workspace raises ContainerNotFound, an expired one ContainerExpired."""

    async def start(self) -> None:
        """Reopen surviving containers' disks and start the reaper."""
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def create(self, workspace: str) -> Container:
        raise NotImplementedError

    async def get(self, workspace: str, container_id: str) -> Container:
        raise NotImplementedError

    async def execute(self, workspace: str, container_id: str, request: ExecRequest) -> Execution:
        """Run code; refreshes the idle TTL. Serialised per container."""
        raise NotImplementedError

    async def edit(self, workspace: str, container_id: str, request: EditRequest) -> EditResult:
        raise NotImplementedError

    async def put_file(self, workspace: str, container_id: str, path: str, data: bytes) -> str:
        """Write into the workspace; returns the sanitized path actually written."""
        raise NotImplementedError

    async def upload(self, workspace: str, container_id: str, file: FileRecord) -> str:
        """Copy a Files API file into the container's working directory under its filename."""
        raise NotImplementedError

    async def read_file(self, workspace: str, container_id: str, path: str) -> bytes:
        raise NotImplementedError

    async def list_files(self, workspace: str, container_id: str) -> list[tuple[str, int]]:
        raise NotImplementedError

    async def destroy(self, workspace: str, container_id: str) -> None:
        raise NotImplementedError

    async def reap(self) -> int:
        """Free every expired container now; returns how many."""
        raise NotImplementedError
