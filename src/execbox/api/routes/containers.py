"""The direct containers API: create, inspect, run code in, read and write files of, and
delete a container without going through a model.

``POST /v1/containers`` answers 200 (like every create in Anthropic's API). File listings
are wrapped as ``{"data": [{"path", "size_bytes"}]}``. Everything is scoped to the
caller's workspace.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Annotated, BinaryIO

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from execbox.api.bodies import read_params, receive_body
from execbox.api.deps import services, workspace
from execbox.containers.manager import Container, ContainerManager
from execbox.files.mime import guess
from execbox.protocol.containers import (
    ContainerDeleted,
    ContainerFile,
    ContainerFileList,
    ContainerObject,
    ExecFile,
    ExecOutput,
    ExecParams,
)
from execbox.sandbox.types import ExecRequest

router = APIRouter(prefix="/v1/containers")

# File downloads are sent in pieces of this size, read in a worker thread.
CHUNK_BYTES = 256 * 1024

Workspace = Annotated[str, Depends(workspace)]


def container_manager(request: Request) -> ContainerManager:
    return services(request).containers


Containers = Annotated[ContainerManager, Depends(container_manager)]


def container_object(container: Container) -> ContainerObject:
    return ContainerObject(id=container.id, created_at=container.created_at, expires_at=container.expires_at)


@router.post("")
async def create_container(ws: Workspace, containers: Containers) -> ContainerObject:
    return container_object(await containers.create(ws))


@router.get("/{container_id}")
async def get_container(container_id: str, ws: Workspace, containers: Containers) -> ContainerObject:
    return container_object(await containers.get(ws, container_id))


@router.delete("/{container_id}")
async def delete_container(container_id: str, ws: Workspace, containers: Containers) -> ContainerDeleted:
    await containers.destroy(ws, container_id)
    return ContainerDeleted(id=container_id)


@router.post("/{container_id}/exec")
async def execute(container_id: str, http: Request, ws: Workspace, containers: Containers) -> ExecOutput:
    """Run Python (``code``) or bash (``command``); output files land in the Files API.
    The body is capped like a Messages request's (413 past 32 MB)."""
    params = await read_params(http, ExecParams)
    request = (
        ExecRequest("python", params.code, params.timeout)
        if params.code is not None
        else ExecRequest("bash", params.command or "", params.timeout)
    )
    execution = await containers.execute(ws, container_id, request)
    result = execution.result
    return ExecOutput(
        stdout=result.stdout,
        stderr=result.stderr,
        return_code=result.return_code,
        error_code="execution_time_exceeded" if result.timed_out else None,
        duration_ms=round(result.duration_s * 1000),
        files=[
            ExecFile(
                filename=f.filename,
                size_bytes=f.size_bytes,
                file_id=f.file.id if f.file else None,
                error_code=f.error_code,
            )
            for f in execution.files
        ],
        stdout_truncated=result.stdout_truncated,
        stderr_truncated=result.stderr_truncated,
        oom_killed=result.oom_killed,
    )


@router.get("/{container_id}/files")
async def list_files(container_id: str, ws: Workspace, containers: Containers) -> ContainerFileList:
    """The workspace's regular files by path: the first 10,000, down to 64 directories deep."""
    files = await containers.list_files(ws, container_id)
    return ContainerFileList(data=[ContainerFile(path=path, size_bytes=size) for path, size in files])


@router.get("/{container_id}/files/{path:path}")
async def read_file(container_id: str, path: str, ws: Workspace, containers: Containers) -> StreamingResponse:
    """The file's bytes, streamed: as many as it held when opened."""
    file = await containers.open_file(ws, container_id, path)
    size = os.fstat(file.fileno()).st_size
    return StreamingResponse(_chunks(file, size), media_type=guess(path), headers={"content-length": str(size)})


def _chunks(file: BinaryIO, size: int) -> Iterator[bytes]:
    """The first ``size`` bytes of ``file``, piece by piece; closes it."""
    with file:
        while size > 0 and (chunk := file.read(min(CHUNK_BYTES, size))):
            size -= len(chunk)
            yield chunk


@router.put("/{container_id}/files/{path:path}")
async def write_file(
    container_id: str, path: str, request: Request, ws: Workspace, containers: Containers
) -> ContainerFile:
    """Raw body -> file in the workspace; ``..`` and absolute components are stripped."""
    await containers.get(ws, container_id)  # refuse before receiving the body
    svc = services(request)
    spool = svc.files.staging_file()
    try:
        size = await receive_body(request, spool, svc.settings.max_upload_size)
        with spool.open("rb") as body:
            written = await containers.put_file(ws, container_id, path, body)
    finally:
        spool.unlink(missing_ok=True)
    return ContainerFile(path=written, size_bytes=size)
