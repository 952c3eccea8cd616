"""The socket ``execbox serve`` binds before start-up: its connections must not wait for ACKs."""

from __future__ import annotations

import asyncio
import socket

from execbox.cli import _bind


async def test_accepted_connections_send_small_writes_at_once() -> None:
    # asyncio turns Nagle's algorithm off only on connections of an IPPROTO_TCP socket; with
    # it on, a kept-alive connection waits ~40 ms (a delayed ACK) before each response.
    listening = _bind("127.0.0.1", 0)
    nodelay: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            nodelay.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    server = await asyncio.get_running_loop().create_server(Probe, sock=listening)
    try:
        _, writer = await asyncio.open_connection(*listening.getsockname()[:2])
        assert await asyncio.wait_for(nodelay, 10) == 1
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
