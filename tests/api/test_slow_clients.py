"""Clients that hold connections open (slowloris) against a real server over real
loopback sockets: the attacker connects from 127.0.0.2, the legitimate client from
127.0.0.1. The server runs with 1,000 descriptors, so a few more than that many held
connections would exhaust it without the guard (``api/server.py``)."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from execbox.api.server import AcceptErrorLog

NOFILE = 1000
ATTACK_CONNECTIONS = 1100  # more than the server's descriptors
PER_CLIENT = 50
HEADER_TIMEOUT_S = 1.0
PARTIAL = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nx-api-key: k\r\nanthropic-version: 2023-06-01\r\n"


@pytest.fixture(scope="module")
def guarded(start_server):
    return start_server(nofile=NOFILE, args=(
        "--max-connections-per-client", str(PER_CLIENT), "--header-timeout", str(HEADER_TIMEOUT_S),
        "--body-idle-timeout", str(HEADER_TIMEOUT_S),
    ))


def _open(host: str, port: int, count: int, first: bytes, sources: int = 1) -> list[socket.socket]:
    """``count`` connections that sent ``first``, from 127.0.0.2 and the next ``sources - 1``
    addresses in turn."""
    held = []
    for n in range(count):
        sock = socket.socket()
        sock.bind((f"127.0.0.{2 + n % sources}", 0))
        sock.settimeout(5)
        try:
            sock.connect((host, port))
            sock.sendall(first)
        except OSError:
            sock.close()
            continue
        sock.setblocking(False)
        held.append(sock)
    return held


def _still_open(socks: list[socket.socket]) -> list[socket.socket]:
    alive = []
    for sock in socks:
        try:
            if sock.recv(1) == b"":
                sock.close()
                continue
        except BlockingIOError:
            alive.append(sock)
            continue
        except OSError:
            sock.close()
            continue
        alive.append(sock)
    return alive


def _trickle(socks: list[socket.socket], data: bytes) -> None:
    for sock in socks:
        try:
            sock.send(data)
        except OSError:
            pass


def _attack_while_probing(
    server, first: bytes, trickle: bytes, sources: int = 1
) -> tuple[float, int, list[socket.socket]]:
    """Hold ATTACK_CONNECTIONS, trickling bytes into each, while a legitimate client keeps
    asking for /v1/models; returns its worst latency, its failures, and the attacker's
    connections still open at the end (two header timeouts later)."""
    host, port = server.url.removeprefix("http://").split(":")
    held: list[socket.socket] = []
    opened = threading.Event()

    def attack() -> None:
        held.extend(_open(host, int(port), ATTACK_CONNECTIONS, first, sources))
        opened.set()

    attacker = threading.Thread(target=attack)
    attacker.start()
    worst, failures = 0.0, 0
    deadline = time.monotonic() + 2 * HEADER_TIMEOUT_S + 1
    # A new connection for every request: each must be accepted during the attack.
    fresh = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=server.url, headers={"x-api-key": "k", "anthropic-version": "2023-06-01"}, timeout=5, limits=fresh) as client:
        while time.monotonic() < deadline or not opened.is_set():
            started = time.monotonic()
            try:
                ok = client.get("/v1/models").status_code == 200
            except httpx.HTTPError:
                ok = False
            failures += not ok
            worst = max(worst, time.monotonic() - started)
            if opened.is_set():
                _trickle(held, trickle)
            time.sleep(0.2)
    attacker.join()
    return worst, failures, _still_open(held)


def test_slowloris_headers_neither_exhaust_the_server_nor_stay_open(guarded) -> None:
    worst, failures, still_open = _attack_while_probing(guarded, PARTIAL, b"x")
    try:
        assert failures == 0 and worst < 2.0, (failures, worst)
        assert still_open == []  # trickling headers did not keep any past the header timeout
        log = guarded.log_path.read_text(errors="replace")
        assert "Traceback" not in log and len(log) < 200_000
    finally:
        for sock in still_open:
            sock.close()


def test_slowloris_from_many_addresses_cannot_lock_out_a_client(guarded) -> None:
    # 22 addresses x 50 connections: past the total cap (a quarter of 1,000 descriptors)
    # though within each address's cap. Each newcomer replaces the oldest connection
    # still waiting for its headers, so a client that sends its request at once gets in.
    worst, failures, still_open = _attack_while_probing(guarded, PARTIAL, b"x", sources=22)
    try:
        assert failures == 0 and worst < 2.0, (failures, worst)
        assert still_open == []
    finally:
        for sock in still_open:
            sock.close()


def test_a_stalled_body_is_closed(guarded) -> None:
    head = (b"POST /v1/messages/count_tokens HTTP/1.1\r\nHost: x\r\nx-api-key: k\r\nanthropic-version: 2023-06-01\r\n"
            b"content-type: application/json\r\ncontent-length: 100000\r\n\r\n{")
    host, port = guarded.url.removeprefix("http://").split(":")
    [sock] = _open(host, int(port), 1, head)
    time.sleep(HEADER_TIMEOUT_S + 1.5)
    assert _still_open([sock]) == []
    assert "Traceback" not in guarded.log_path.read_text(errors="replace")  # closing it is no server error


def test_failed_accepts_are_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    handler = AcceptErrorLog(interval_s=60)
    context = {"message": "socket.accept() out of system resource", "exception": OSError(24, "Too many open files")}
    with caplog.at_level("ERROR", logger="execbox.server"):
        for _ in range(1000):
            handler(None, context)  # type: ignore[arg-type]
    assert len(caplog.records) == 1 and handler.suppressed == 999
    assert caplog.records[0].exc_info is None
