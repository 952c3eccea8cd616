"""``POST /v1/messages`` (plain or streamed) and ``POST /v1/messages/count_tokens``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from execbox.api.bodies import read_params
from execbox.api.deps import api_version, services, workspace
from execbox.api.openapi import json_body
from execbox.api.sse import stream_response
from execbox.protocol.messages import CountTokensParams, Message, MessageCreateParams, TokenCount
from execbox.services import Services

router = APIRouter(tags=["messages"], dependencies=[Depends(api_version)])

Workspace = Annotated[str, Depends(workspace)]
Svc = Annotated[Services, Depends(services)]
Version = Annotated[str, Depends(api_version)]

DISCONNECT_POLL = 0.5  # seconds between checks that a plain response's client is still there


@router.post(
    "/v1/messages",
    openapi_extra=json_body(MessageCreateParams, "Anthropic's Messages request, with the code execution tool."),
    responses={200: {
        "model": Message,
        "description": "The message; with `stream: true`, server-sent events (`message_start` ... `message_stop`).",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }},
)
async def create_message(request: Request, caller: Workspace, version: Version, svc: Svc) -> Response:
    params = await read_params(request, MessageCreateParams)
    params.check_version(version)
    turn = await svc.conversation.start(params, caller)
    if params.stream:
        return await stream_response(turn.events(), request)
    message = await _while_connected(turn.complete(), request)
    if message is None:
        return Response(status_code=499)  # nginx's "client closed request"; nobody reads it
    return JSONResponse(message.model_dump(mode="json"))


async def _while_connected(work: Coroutine[Any, Any, Message], request: Request) -> Message | None:
    """Run ``work`` to its end, or cancel it (and the code it runs) once the client has left: None."""
    task = asyncio.ensure_future(work)
    try:
        while not (await asyncio.wait({task}, timeout=DISCONNECT_POLL))[0]:
            if await request.is_disconnected():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                return None
        return task.result()
    finally:
        task.cancel()


@router.post("/v1/messages/count_tokens", openapi_extra=json_body(CountTokensParams))
async def count_tokens(request: Request, version: Version, svc: Svc) -> TokenCount:
    params = await read_params(request, CountTokensParams)
    params.check_version(version)
    return TokenCount(input_tokens=await svc.conversation.count_tokens(params))
