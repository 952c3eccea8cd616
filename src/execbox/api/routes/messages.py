"""``POST /v1/messages`` (plain or streamed) and ``POST /v1/messages/count_tokens``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from execbox.api.bodies import read_params
from execbox.api.deps import services, workspace
from execbox.api.sse import stream_response
from execbox.protocol.messages import CountTokensParams, MessageCreateParams, TokenCount
from execbox.services import Services

router = APIRouter()

Workspace = Annotated[str, Depends(workspace)]
Svc = Annotated[Services, Depends(services)]
@router.post("/v1/messages")
async def create_message(request: Request, caller: Workspace, svc: Svc) -> Response:
    params = await read_params(request, MessageCreateParams)
    params.check_version(request.headers.get("anthropic-version"))
    turn = await svc.conversation.start(params, caller)
    if params.stream:
        return await stream_response(turn.events(), request)
    message = await turn.complete()
    return JSONResponse(message.model_dump(mode="json"))


@router.post("/v1/messages/count_tokens", dependencies=[Depends(workspace)])
async def count_tokens(request: Request, svc: Svc) -> TokenCount:
    params = await read_params(request, CountTokensParams)
    params.check_version(request.headers.get("anthropic-version"))
    return TokenCount(input_tokens=await svc.conversation.count_tokens(params))
