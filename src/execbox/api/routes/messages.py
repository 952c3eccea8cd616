"""``POST /v1/messages`` (plain or streamed) and ``POST /v1/messages/count_tokens``."""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from execbox.api.deps import services, workspace
from execbox.api.sse import stream_response
from execbox.errors import RequestTooLarge
from execbox.protocol.messages import CountTokensParams, MessageCreateParams, TokenCount
from execbox.services import Services

router = APIRouter()

Workspace = Annotated[str, Depends(workspace)]
Svc = Annotated[Services, Depends(services)]
MAX_BODY_BYTES = 32 * 1000**2
Params = TypeVar("Params", bound=BaseModel)


async def read_params(request: Request, model: type[Params]) -> Params:
    """The JSON body as ``model``: 413 past 32 MB, 400 (with the failing fields) if invalid."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise RequestTooLarge(f"Request body exceeds {MAX_BODY_BYTES} bytes.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise RequestTooLarge(f"Request body exceeds {MAX_BODY_BYTES} bytes.")
    try:
        return model.model_validate_json(bytes(body))
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None


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
