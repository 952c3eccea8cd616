"""The Message Batches API: ``/v1/messages/batches`` (spec section 8).

Batches run in the background (``batches/runner.py``); these routes create, show, list,
cancel and delete them and stream their results as JSONL from ``results_url``, which names
this server (as the client reached it), never Anthropic's.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from execbox.api.bodies import read_params
from execbox.api.deps import api_version, services, workspace
from execbox.batches.store import BatchRow
from execbox.db import utcnow
from execbox.errors import InvalidRequest
from execbox.ids import new_id
from execbox.protocol.batches import (
    MAX_BATCH_BYTES,
    BatchCreateParams,
    MessageBatch,
    MessageBatchDeleted,
    MessageBatchList,
    RequestCounts,
)
from execbox.protocol.messages import MessageCreateParams
from execbox.services import Services

router = APIRouter(prefix="/v1/messages/batches", dependencies=[Depends(api_version)])

Workspace = Annotated[str, Depends(workspace)]
Svc = Annotated[Services, Depends(services)]
MAX_LIST_LIMIT = 1000


def batch_view(row: BatchRow, request: Request) -> MessageBatch:
    results_url = None
    if row.status == "ended":
        results_url = str(request.base_url).rstrip("/") + f"/v1/messages/batches/{row.id}/results"
    return MessageBatch(
        id=row.id,
        processing_status=row.status,
        request_counts=RequestCounts(**row.counts),
        created_at=row.created_at,
        expires_at=row.expires_at,
        ended_at=row.ended_at,
        cancel_initiated_at=row.cancel_initiated_at,
        results_url=results_url,
    )


def _checked_requests(body: BatchCreateParams, version: str | None) -> list[tuple[str, str]]:
    """Each request's ``(custom_id, params JSON)``; InvalidRequest names the first bad one.
    Runs in a worker thread: a batch may hold 100,000 requests."""
    seen: dict[str, int] = {}
    checked = []
    for i, item in enumerate(body.requests):
        if item.custom_id in seen:
            raise InvalidRequest(
                f"requests.{i}.custom_id: `{item.custom_id}` is also the custom_id of requests.{seen[item.custom_id]}; "
                "custom_id must be unique within a batch."
            )
        seen[item.custom_id] = i
        try:
            params = MessageCreateParams.model_validate(item.params)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first.get("loc", ()))
            raise InvalidRequest(f"requests.{i}.params{'.' + where if where else ''}: {first.get('msg')}") from None
        if params.stream:
            raise InvalidRequest(f"requests.{i}.params.stream: streaming is not supported in a batch.")
        try:
            params.check_version(version)
        except InvalidRequest as exc:
            raise InvalidRequest(f"requests.{i}.params: {exc.message}") from None
        checked.append((item.custom_id, json.dumps(item.params, separators=(",", ":"))))
    return checked


@router.post("")
async def create_batch(request: Request, caller: Workspace, svc: Svc) -> MessageBatch:
    # A batch may hold 100,000 requests (256 MB): its own limits apply, not MAX_JSON_VALUES.
    body = await read_params(request, BatchCreateParams, max_bytes=MAX_BATCH_BYTES, max_values=None)
    requests = await asyncio.to_thread(_checked_requests, body, request.headers.get("anthropic-version"))
    now = utcnow()
    expires_at = now + timedelta(seconds=svc.settings.batch_expiry)
    row = await asyncio.to_thread(svc.batches.create, new_id("msgbatch"), caller, requests, now, expires_at)
    svc.batch_runner.wake()
    return batch_view(row, request)


@router.get("")
async def list_batches(
    request: Request,
    caller: Workspace,
    svc: Svc,
    limit: int = 20,
    before_id: str | None = None,
    after_id: str | None = None,
) -> dict[str, Any]:
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise InvalidRequest(f"limit: must be between 1 and {MAX_LIST_LIMIT}.")
    if before_id and after_id:
        raise InvalidRequest("Give at most one of before_id and after_id.")
    page = await asyncio.to_thread(svc.batches.list, caller, limit, before_id, after_id)
    data = [batch_view(row, request) for row in page.batches]
    body = MessageBatchList(
        data=data,
        has_more=page.has_more,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
    )
    return body.model_dump(mode="json")


@router.get("/{batch_id}")
async def get_batch(batch_id: str, request: Request, caller: Workspace, svc: Svc) -> MessageBatch:
    return batch_view(await asyncio.to_thread(svc.batches.get, caller, batch_id), request)


@router.post("/{batch_id}/cancel")
async def cancel_batch(batch_id: str, request: Request, caller: Workspace, svc: Svc) -> MessageBatch:
    return batch_view(await asyncio.to_thread(svc.batches.cancel, caller, batch_id, utcnow()), request)


@router.delete("/{batch_id}")
async def delete_batch(batch_id: str, caller: Workspace, svc: Svc) -> MessageBatchDeleted:
    await asyncio.to_thread(svc.batches.delete, caller, batch_id)
    return MessageBatchDeleted(id=batch_id)


@router.get("/{batch_id}/results")
async def batch_results(batch_id: str, caller: Workspace, svc: Svc) -> StreamingResponse:
    lines = await asyncio.to_thread(svc.batches.results, caller, batch_id)
    # A plain iterator: Starlette reads it in a worker thread, page by page.
    return StreamingResponse(lines, media_type="application/x-jsonl")
