"""Server-sent events for streamed Messages responses (spec section 6).

Every event has an ``event:`` line (SDK 2.x drops events without one). A ``ping`` follows
``message_start`` and then goes out whenever nothing else has for ``PING_INTERVAL`` seconds
(code running, a model thinking). A failure after the first event becomes an ``error`` event
carrying the usual error envelope.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator

from fastapi import Request
from fastapi.responses import StreamingResponse

from execbox.api.errors import error_body
from execbox.errors import ExecboxError, InternalError
from execbox.protocol.messages import PingEvent, StreamEvent

log = logging.getLogger("execbox.api")

PING_INTERVAL = 5.0


def encode(event_type: str, data: str) -> bytes:
    return f"event: {event_type}\ndata: {data}\n\n".encode()


def encode_event(event: StreamEvent) -> bytes:
    return encode(event.type, event.model_dump_json())


async def stream_response(events: AsyncIterator[StreamEvent], request: Request) -> StreamingResponse:
    """A streaming response of ``events``. The first event is awaited here, so a failure
    before it is raised to the caller (and answered as a plain JSON error)."""
    first = await anext(events)
    request_id = getattr(request.state, "request_id", None)
    return StreamingResponse(
        _body(first, events, request_id),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


async def _body(first: StreamEvent, events: AsyncIterator[StreamEvent], request_id: str | None) -> AsyncIterator[bytes]:
    yield encode_event(first)
    if first.type == "message_start":
        yield encode_event(PingEvent())
    pending: asyncio.Future[StreamEvent] | None = None
    try:
        while True:
            pending = pending or asyncio.ensure_future(_next(events))
            done, _ = await asyncio.wait({pending}, timeout=PING_INTERVAL)
            if not done:
                yield encode_event(PingEvent())
                continue
            finished, pending = pending, None
            try:
                event = finished.result()
            except StopAsyncIteration:
                return
            except ExecboxError as exc:
                log.warning("stream %s failed: %s", request_id, exc.message)
                yield encode("error", _json(error_body(exc, request_id)))
                return
            except Exception:
                log.exception("stream %s failed", request_id)
                yield encode("error", _json(error_body(InternalError("Internal server error."), request_id)))
                return
            yield encode_event(event)
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        with contextlib.suppress(Exception):
            await events.aclose()  # type: ignore[attr-defined]


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


async def _next(events: AsyncIterator[StreamEvent]) -> StreamEvent:
    return await anext(events)
