"""Turning every failure into Anthropic's error envelope (spec section 9)."""

from __future__ import annotations

import errno
import logging
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from execbox.errors import (
    DatabaseBusy,
    ExecboxError,
    InternalError,
    InvalidRequest,
    NotFound,
    OutOfDiskSpace,
    SandboxUnavailable,
    error_for_status,
)

log = logging.getLogger("execbox.api")


def error_body(err: ExecboxError, request_id: str | None) -> dict[str, Any]:
    error: dict[str, Any] = {"type": err.type, "message": err.message}
    if err.details:
        error["details"] = err.details
    return {"type": "error", "error": error, "request_id": request_id}


def error_response(err: ExecboxError, request: Request) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None)
    headers = {}
    if err.should_retry is not None:
        headers["x-should-retry"] = "true" if err.should_retry else "false"
    if err.retry_after is not None:
        headers["retry-after"] = str(err.retry_after)
    return JSONResponse(error_body(err, request_id), status_code=err.status, headers=headers)


def json_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """A validation error's location as the API writes it: ``messages.0.content.0.text.foo``.

    The tags of execbox's own unions (``str | list`` content and system, ``str | object``
    container) are dropped; a block's or tool's type tag stays, as in the API's
    ``tools.0.custom.strict``.
    """
    parts: list[str] = []
    for i, part in enumerate(loc):
        if part in ("body", "query", "path"):
            continue
        if i and part in _UNION_TAGS.get(str(loc[i - 1]), ()):
            continue
        parts.append(str(part))
    return ".".join(parts)


_UNION_TAGS = {"content": ("text", "blocks"), "system": ("text", "blocks"), "container": ("id", "object")}


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors()[:5]:
        loc = json_path(e.get("loc", ()))
        parts.append(f"{loc}: {e.get('msg', 'invalid')}" if loc else str(e.get("msg", "invalid")))
    return "; ".join(parts) or "Invalid request."


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ExecboxError)
    async def _execbox_error(request: Request, exc: ExecboxError) -> JSONResponse:
        if exc.status >= 500:
            log.error("request %s failed: %s", getattr(request.state, "request_id", "?"), exc.message)
        if isinstance(exc, SandboxUnavailable):  # written for the operator: host paths, commands
            exc = SandboxUnavailable("Code execution is unavailable on this server; the server log has the details.")
        return error_response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(InvalidRequest(_describe_validation(exc)), request)

    @app.exception_handler(ClientDisconnect)
    async def _client_gone(request: Request, exc: ClientDisconnect) -> JSONResponse:
        # The client left (or was closed for stalling) mid-body: nobody reads this answer,
        # and it is no error of the server's, so no traceback either.
        return error_response(InvalidRequest("The client disconnected before the whole body arrived."), request)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            err: ExecboxError = NotFound(f"Not found: {request.method} {request.url.path}")
        else:
            err = error_for_status(exc.status_code, str(exc.detail))
            err.status = exc.status_code  # e.g. 405 stays 405, with the nearest error type
        return error_response(err, request)

    @app.exception_handler(sa.exc.OperationalError)
    async def _database_error(request: Request, exc: sa.exc.OperationalError) -> JSONResponse:
        log.error("request %s: metadata database error: %s", getattr(request.state, "request_id", "?"),
                  str(exc.orig).splitlines()[0] if exc.orig else type(exc).__name__)
        return error_response(DatabaseBusy(), request)

    @app.exception_handler(OSError)
    async def _os_error(request: Request, exc: OSError) -> JSONResponse:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            log.error("request %s: out of disk space: %s", getattr(request.state, "request_id", "?"), exc)
            return error_response(OutOfDiskSpace(), request)
        return await _unexpected(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error in request %s", getattr(request.state, "request_id", "?"))
        return error_response(InternalError("Internal server error."), request)
