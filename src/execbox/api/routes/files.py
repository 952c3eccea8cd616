"""The Files API: ``/v1/files`` upload, list, metadata, content and delete (spec section 7)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse

from execbox.api.bodies import receive_file
from execbox.api.deps import api_version, services, workspace
from execbox.api.openapi import multipart_body
from execbox.errors import InvalidRequest
from execbox.files.store import FileRecord, FileStore
from execbox.protocol.files import LEGACY_FILES_BETA, FileDeleted, FileList, FileMetadata

router = APIRouter(prefix="/v1/files", tags=["files"], dependencies=[Depends(api_version)])

Workspace = Annotated[str, Depends(workspace)]


def file_store(request: Request) -> FileStore:
    return services(request).files


Files = Annotated[FileStore, Depends(file_store)]


def metadata_of(record: FileRecord) -> FileMetadata:
    return FileMetadata(
        id=record.id,
        filename=record.filename,
        mime_type=record.mime_type,
        size_bytes=record.size_bytes,
        created_at=record.created_at,
        downloadable=record.downloadable,
        expires_at=record.expires_at,
    )


@router.post("", openapi_extra=multipart_body(
    {"file": {"type": "string", "format": "binary"},
     "expires_in_seconds": {"type": "integer", "description": "Optional lifetime of the file."}},
    ["file"],
))
async def upload_file(request: Request, ws: Workspace, files: Files) -> FileMetadata:
    """Multipart ``file`` plus optional ``expires_in_seconds``; streamed to disk."""
    staged = files.staging_file()
    try:
        upload = await receive_file(request, "file", staged, files.max_size)
        expires = upload.fields.get("expires_in_seconds", "").strip()
        if expires and not expires.lstrip("-").isdigit():
            raise InvalidRequest("expires_in_seconds must be an integer.")
        record = await asyncio.to_thread(  # off the event loop, like the sync routes below
            files.create,
            ws,
            upload.filename or "",
            staged,
            mime_type=upload.content_type,
            expires_in_seconds=int(expires) if expires else None,
        )
    finally:
        staged.unlink(missing_ok=True)
    return metadata_of(record)


@router.get("")
def list_files(
    request: Request,
    ws: Workspace,
    files: Files,
    limit: int | None = None,
    page: str | None = None,
    before_id: str | None = None,
    after_id: str | None = None,
) -> dict[str, Any]:
    """Newest first, in both the GA and the legacy list shape."""
    ids = request.query_params.getlist("ids[]") + request.query_params.getlist("ids")
    if ids and (page is not None or limit is not None):
        raise InvalidRequest("`ids` cannot be combined with `page` or `limit`.")
    result = files.list(
        ws, limit=20 if limit is None else limit, before_id=before_id, after_id=after_id,
        page=page, ids=ids or None,
    )
    data = [metadata_of(r) for r in result.records]
    body = FileList(
        data=data,
        has_more=result.has_more,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        next_page=result.next_page,
    )
    betas = {b.strip() for b in request.headers.get("anthropic-beta", "").split(",")}
    return body.wire(legacy=LEGACY_FILES_BETA in betas)


@router.get("/{file_id}")
def get_file(file_id: str, ws: Workspace, files: Files) -> FileMetadata:
    return metadata_of(files.get(ws, file_id))


@router.get(
    "/{file_id}/content",
    response_class=FileResponse,
    responses={200: {"description": "The file's bytes.", "content": {"application/octet-stream": {}}}},
)
def download_file(file_id: str, ws: Workspace, files: Files) -> FileResponse:
    """Raw bytes of a generated file; uploads are not downloadable (400 ``file_not_downloadable``)."""
    record = files.get(ws, file_id)
    if not record.downloadable:
        raise InvalidRequest(
            f"File `{file_id}` was uploaded and cannot be downloaded; only files created by "
            "code execution can.",
            error_code="file_not_downloadable",
        )
    return FileResponse(files.path(ws, file_id), media_type=record.mime_type, filename=record.filename)


@router.delete("/{file_id}")
def delete_file(file_id: str, ws: Workspace, files: Files) -> FileDeleted:
    files.delete(ws, file_id)
    return FileDeleted(id=file_id)
