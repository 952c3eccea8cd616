"""The HTTP server: uvicorn with h11, guarded against clients that hold connections.

uvicorn times out idle keep-alive connections but not a request whose headers never
finish, nor a body that stops arriving, and accepts connections until the process runs
out of descriptors. ``GuardedH11Protocol`` adds what a server facing the internet needs:

- a **header timeout**: a request's headers must be complete ``header_timeout`` seconds
  after its first byte (or after the connection opened), however slowly they trickle;
- a **body idle timeout**: a body that stops arriving for ``body_idle_timeout`` seconds
  (while the server is ready to read it) closes the connection;
- **connection caps**: at most ``max_connections_per_client`` open connections per client
  address and ``max_connections`` in total, the latter lowered to a quarter of the
  process's descriptor limit (each connection may hold two descriptors, its socket and a
  file it streams; the other half is for sandboxes, disks and the database). A
  connection past the per-address cap is reset as soon as it is accepted; one past the
  total cap takes the place of a connection still waiting for its headers (reset): the
  oldest of the address holding the most connections, so clients that hold connections
  from many addresses cannot lock out one that sends its request at once (it holds
  fewer than any of them); with no such connection to replace, it is reset.

And a failed ``accept()`` (out of descriptors after all) is logged as one line every
``ACCEPT_LOG_INTERVAL_S`` seconds with a count, not as a traceback per attempt.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from execbox.settings import Settings

log = logging.getLogger("execbox.server")

ACCEPT_LOG_INTERVAL_S = 10.0


@dataclass
class ConnectionGuard:
    """Open connections per client address and in total, and the timeouts."""

    max_connections: int
    max_per_client: int
    header_timeout_s: float
    body_idle_timeout_s: float
    per_client: Counter[str] = field(default_factory=Counter)
    total: int = 0
    refused: int = 0
    # Connections waiting for a request's headers, by address, oldest first (a dict keeps
    # the order).
    waiting: dict[str, dict[GuardedH11Protocol, None]] = field(default_factory=dict)

    def admit(self, client: str) -> bool:
        if self.per_client[client] >= self.max_per_client:
            self.refused += 1
            return False
        if self.total >= self.max_connections:
            if not self.waiting:
                self.refused += 1
                return False
            busiest = max(self.waiting, key=self.per_client.__getitem__)
            next(iter(self.waiting[busiest])).evict()  # releases its place at once
        self.total += 1
        self.per_client[client] += 1
        return True

    def release(self, client: str) -> None:
        self.total -= 1
        self.per_client[client] -= 1
        if self.per_client[client] <= 0:
            del self.per_client[client]


def connection_cap(requested: int) -> int:
    """``requested``, at most a quarter of this process's descriptor limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(1, min(requested, soft // 4)) if soft != resource.RLIM_INFINITY else requested


def raise_descriptor_limit() -> None:
    """Lift the soft descriptor limit to the hard one (many systems start at 1,024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the guard's caps and timeouts (module docstring)."""

    guard: ConnectionGuard  # set on a subclass by ``guarded_protocol``

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._address = self.client[0] if self.client else ""
        self._admitted = self.guard.admit(self._address)
        self._timer: asyncio.TimerHandle | None = None
        if not self._admitted:
            transport.abort()  # frees the descriptor now, whatever the client does
            return
        self._arm(self.guard.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._release()
        super().connection_lost(exc)

    def _release(self) -> None:
        if getattr(self, "_admitted", False):
            self._admitted = False
            self.guard.release(self._address)

    def evict(self) -> None:
        """Reset this connection (still waiting for its headers) and give up its place."""
        self._disarm()
        self._release()
        self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if not self._admitted or self.transport.is_closing():
            return
        waiting_for_headers = self.conn.their_state is h11.IDLE
        super().data_received(data)
        state = self.conn.their_state
        if state is h11.IDLE:
            if not waiting_for_headers or self._timer is None:  # the first bytes of a new request
                self._arm(self.guard.header_timeout_s)
        elif state is h11.SEND_BODY:
            self._arm(self.guard.body_idle_timeout_s)  # the body moved on
        else:
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]:
            self._arm(self.guard.header_timeout_s)  # part of the next request came meanwhile
        else:
            self._disarm()  # idle between requests: uvicorn's keep-alive timeout applies

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._expired)
        if self.conn.their_state is h11.IDLE:
            self.guard.waiting.setdefault(self._address, {})[self] = None

    def _disarm(self) -> None:
        if getattr(self, "_timer", None) is not None:
            self._timer.cancel()  # type: ignore[union-attr]
            self._timer = None
        waiting = self.guard.waiting.get(getattr(self, "_address", ""))
        if waiting is not None:
            waiting.pop(self, None)
            if not waiting:
                del self.guard.waiting[self._address]

    def _expired(self) -> None:
        self._timer = None
        state = self.conn.their_state
        if state is h11.SEND_BODY and self.flow.read_paused:  # the server is the slow one
            self._arm(self.guard.body_idle_timeout_s)
            return
        if state in (h11.IDLE, h11.SEND_BODY) and not self.transport.is_closing():
            if self.cycle is not None and not self.cycle.response_complete:
                self.cycle.disconnected = True
                self.cycle.message_event.set()
            self.transport.abort()


def guarded_protocol(guard: ConnectionGuard) -> type[GuardedH11Protocol]:
    return type("ExecboxH11Protocol", (GuardedH11Protocol,), {"guard": guard})


class AcceptErrorLog:
    """An event loop exception handler: failed accepts become one line per interval."""

    def __init__(self, interval_s: float = ACCEPT_LOG_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.last = float("-inf")
        self.suppressed = 0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if not str(context.get("message", "")).startswith("socket.accept() out of system resource"):
            loop.default_exception_handler(context)
            return
        now = time.monotonic()
        if now - self.last < self.interval_s:
            self.suppressed += 1
            return
        log.error("cannot accept connections: %s (%d more failures since the last report)",
                  context.get("exception"), self.suppressed)
        self.last, self.suppressed = now, 0


def http_options(settings: Settings) -> dict[str, Any]:
    """uvicorn.Config options for the guarded protocol (the event loop also needs
    ``AcceptErrorLog`` as its exception handler). Lifts the descriptor limit first."""
    raise_descriptor_limit()
    guard = ConnectionGuard(
        max_connections=connection_cap(settings.max_connections),
        max_per_client=settings.max_connections_per_client,
        header_timeout_s=settings.header_timeout,
        body_idle_timeout_s=settings.body_idle_timeout,
    )
    if guard.max_connections < settings.max_connections:
        log.warning("at most %d client connections (a quarter of the descriptor limit), not %d",
                    guard.max_connections, settings.max_connections)
    return {"http": guarded_protocol(guard), "timeout_keep_alive": 5}
