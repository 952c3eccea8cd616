"""Graceful shutdown: what a stopping server waits for, and how it cancels what is left.

The first SIGINT/SIGTERM stops accepting connections (uvicorn closes the listener), logs
the requests still running and lets them finish for ``shutdown_grace`` seconds; then, or at
once on a second signal, they are cancelled. A cancelled request still gets an answer in
Anthropic's error envelope (529 ``overloaded_error``: retry elsewhere or later), or, when
its SSE stream had already started, a final ``event: error``; never a bare 500.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from execbox.api.errors import error_body
from execbox.errors import Overloaded

log = logging.getLogger("execbox")

SHUTDOWN_MESSAGE = "The server is shutting down and stopped this request; retry it."


class ShutdownPlan:
    """Tracks running HTTP requests and cancels them when the grace period ends."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.requests: dict[asyncio.Task[object], str] = {}
        self.began_at: float | None = None
        self.cancelling = False
        self.on_begin: list[Callable[[], None]] = []  # e.g. stop claiming batch requests
        self.on_cancel: list[Callable[[], None]] = []  # e.g. cancel running batch requests
        self.describe_background: Callable[[], str] = lambda: ""
        self._timer: asyncio.TimerHandle | None = None

    def begin(self, signal_name: str) -> None:
        """The first signal: log what runs, and schedule the cancellation."""
        if self.began_at is not None:
            return
        self.began_at = time.monotonic()
        for callback in self.on_begin:
            callback()
        running = Counter(self.requests.values())
        what = ", ".join(f"{n} x {name}" for name, n in running.items()) or "no requests"
        background = self.describe_background()
        log.info(
            "%s received: no longer accepting connections; waiting up to %.0fs for %s%s "
            "(send the signal again to cancel them now)",
            signal_name, self.grace_s, what, f" and {background}" if background else "",
        )
        self._timer = asyncio.get_running_loop().call_later(self.grace_s, self.cancel_all, "the grace period ended")

    def hurry(self, signal_name: str) -> None:
        """A second signal: cancel now."""
        self.cancel_all(f"a second {signal_name} arrived")

    def cancel_all(self, reason: str) -> None:
        if self.cancelling:
            return
        self.cancelling = True
        if self._timer is not None:
            self._timer.cancel()
        log.warning("%s: cancelling %d running request(s)", reason, len(self.requests))
        for task in list(self.requests):
            task.cancel()
        for callback in self.on_cancel:
            callback()

    def remaining(self) -> float:
        """Seconds left of the grace period (0 once cancelling)."""
        if self.cancelling:
            return 0.0
        if self.began_at is None:
            return self.grace_s
        return max(0.0, self.grace_s - (time.monotonic() - self.began_at))


class ShutdownMiddleware:
    """Registers each HTTP request with the plan, and answers the ones it cancels."""

    def __init__(self, app: ASGIApp, plan: ShutdownPlan) -> None:
        self.app = app
        self.plan = plan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        task = asyncio.current_task()
        assert task is not None
        self.plan.requests[task] = f"{scope['method']} {scope['path']}"
        started: dict[str, object] = {}

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.update(message)
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except asyncio.CancelledError:
            if not self.plan.cancelling:
                raise
            task.uncancel()
            await self._answer(scope, started, send)
        finally:
            self.plan.requests.pop(task, None)

    async def _answer(self, scope: Scope, started: dict[str, object], send: Send) -> None:
        request_id = scope.get("state", {}).get("request_id")
        body = error_body(Overloaded(SHUTDOWN_MESSAGE), request_id)
        try:
            if not started:
                await send({
                    "type": "http.response.start",
                    "status": Overloaded.status,
                    "headers": [(b"content-type", b"application/json"), (b"x-should-retry", b"true")],
                })
                await send({"type": "http.response.body", "body": json.dumps(body).encode()})
                return
            headers = dict(started.get("headers", []))  # type: ignore[arg-type]
            chunk = b""
            if headers.get(b"content-type", b"").startswith(b"text/event-stream"):
                chunk = f"event: error\ndata: {json.dumps(body)}\n\n".encode()
            await send({"type": "http.response.body", "body": chunk, "more_body": False})
        except Exception:  # the client has gone: nobody to answer
            pass
