"""The direct containers API: create, inspect, run code in, read and write files of, and
delete a container without going through a model.

``POST /v1/containers`` answers 200 (like every create in Anthropic's API). File listings
are wrapped as ``{"data": [{"path", "size_bytes"}]}``. Everything is scoped to the
caller's workspace.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, BinaryIO

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from execbox import logs
from execbox.api.bodies import read_params, receive_body
from execbox.api.deps import services, workspace
from execbox.api.openapi import json_body, raw_body
from execbox.containers.manager import Container, ContainerManager, Execution
from execbox.errors import ExecboxError
from execbox.files.mime import guess
from execbox.protocol.containers import (
    ContainerDeleted,
    ContainerFile,
    ContainerFileList,
    ContainerList,
    ContainerListItem,
    ContainerObject,
    ExecErrorEvent,
    ExecFile,
    ExecOutput,
    ExecOutputEvent,
    ExecParams,
    ExecResultEvent,
)
from execbox.sandbox.types import ExecRequest, OutputCallback


async def _bind_container(request: Request) -> None:
    """Put the path's container id in the request's log context."""
    logs.bind(container_id=request.path_params.get("container_id"))


router = APIRouter(prefix="/v1/containers", tags=["containers"], dependencies=[Depends(_bind_container)])

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


@router.get("")
async def list_containers(
    ws: Workspace,
    containers: Containers,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    after_id: str | None = None,
    before_id: str | None = None,
) -> ContainerList:
    """The workspace's live containers, newest first. ``after_id`` pages to older ones,
    ``before_id`` to newer ones (both: ids from an earlier page)."""
    page = await containers.page(ws, limit, after_id=after_id, before_id=before_id)
    data = [
        ContainerListItem(
            id=c.id, created_at=c.created_at, expires_at=c.expires_at, last_used_at=c.last_used_at,
            disk_used_bytes=used, kernel_live=live,
        )
        for c, used, live in zip(page.containers, page.disk_used_bytes, page.kernel_live, strict=True)
    ]
    return ContainerList(
        data=data,
        has_more=page.has_more,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
    )


@router.get("/{container_id}")
async def get_container(container_id: str, ws: Workspace, containers: Containers) -> ContainerObject:
    return container_object(await containers.get(ws, container_id))


@router.delete("/{container_id}")
async def delete_container(container_id: str, ws: Workspace, containers: Containers) -> ContainerDeleted:
    await containers.destroy(ws, container_id)
    return ContainerDeleted(id=container_id)


@router.post(
    "/{container_id}/exec",
    response_model=None,
    openapi_extra=json_body(ExecParams),
    responses={200: {
        "model": ExecOutput,
        "description": "The result; with `stream: true`, newline-delimited JSON: `stdout` and `stderr` "
        "pieces as they come, then one `result` (or `error`).",
        "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
    }},
)
async def execute(
    container_id: str, http: Request, ws: Workspace, containers: Containers
) -> ExecOutput | StreamingResponse:
    """Run Python (``code``) or bash (``command``); output files land in the Files API.
    ``session: true`` runs Python in the container's live interpreter; ``stream: true``
    answers with NDJSON events as the output is produced. The body is capped like a
    Messages request's (413 past 32 MB)."""
    params = await read_params(http, ExecParams)
    if params.stream:
        await containers.get(ws, container_id)  # unknown or expired: an error status, not a stream
        return StreamingResponse(
            _exec_events(http, ws, container_id, params, containers), media_type="application/x-ndjson"
        )
    return exec_output(await containers.execute(ws, container_id, exec_request(params)))


def exec_request(params: ExecParams, on_output: OutputCallback | None = None) -> ExecRequest:
    if params.code is not None:
        return ExecRequest("python", params.code, params.timeout, session=params.session, on_output=on_output)
    return ExecRequest("bash", params.command or "", params.timeout, on_output=on_output)


def exec_output(execution: Execution) -> ExecOutput:
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
        runtime=result.path,
    )


async def _exec_events(
    http: Request, ws: str, container_id: str, params: ExecParams, containers: ContainerManager
) -> AsyncIterator[bytes]:
    """NDJSON: ``stdout``/``stderr`` events while the code runs, then ``result`` (or ``error``).
    A client that disconnects cancels the execution (its processes are killed)."""
    events: asyncio.Queue[bytes] = asyncio.Queue()
    decoders = {name: codecs.getincrementaldecoder("utf-8")(errors="replace") for name in ("stdout", "stderr")}

    def on_output(name: str, data: bytes) -> None:
        text = decoders[name].decode(data)
        if text:
            events.put_nowait(_line(ExecOutputEvent(type=name, text=text)))  # type: ignore[arg-type]

    running = asyncio.ensure_future(containers.execute(ws, container_id, exec_request(params, on_output)))
    try:
        while not running.done() or not events.empty():
            getter = asyncio.ensure_future(events.get())
            await asyncio.wait({getter, running}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                yield getter.result()
            else:
                getter.cancel()
        try:
            yield _line(ExecResultEvent(**exec_output(running.result()).model_dump()))
        except ExecboxError as exc:
            yield _line(ExecErrorEvent(error={"type": exc.type, "message": exc.message}))
    finally:
        if not running.done():
            running.cancel()
            with contextlib.suppress(BaseException):
                await running


def _line(event: BaseModel) -> bytes:
    return event.model_dump_json().encode() + b"\n"


@router.get("/{container_id}/files")
async def list_files(container_id: str, ws: Workspace, containers: Containers) -> ContainerFileList:
    """The workspace's regular files by path: the first 10,000, down to 64 directories deep."""
    files = await containers.list_files(ws, container_id)
    return ContainerFileList(data=[ContainerFile(path=path, size_bytes=size) for path, size in files])


@router.get(
    "/{container_id}/files/{path:path}",
    response_class=StreamingResponse,
    responses={200: {"description": "The file's bytes.", "content": {"application/octet-stream": {}}}},
)
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


@router.put("/{container_id}/files/{path:path}", openapi_extra=raw_body("The file's bytes."))
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
