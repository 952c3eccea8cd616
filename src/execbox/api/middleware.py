"""ASGI middleware: a ``request-id`` header on every response, the request's log context,
an access log line, and the HTTP metrics."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from execbox import logs
from execbox.ids import new_id
from execbox.metrics import Metrics

log = logging.getLogger("execbox.access")


class RequestIdMiddleware:
    """Gives each request ``scope["state"]["request_id"]`` and echoes it as ``request-id``.

    Pure ASGI (not BaseHTTPMiddleware) so streamed responses pass through untouched.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_id("req")
        scope.setdefault("state", {})["request_id"] = request_id
        logs.start_request(request_id)
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"]
            self.metrics.http_requests.labels(method, route, str(status)).inc()
            self.metrics.http_duration.labels(method, route).observe(seconds)
            log.info(
                "%s %s -> %s in %.1f ms", method, scope["path"], status, seconds * 1000,
                extra={"method": method, "path": scope["path"], "route": route, "status": status,
                       "duration_ms": round(seconds * 1000, 1)},
            )
