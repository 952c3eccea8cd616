"""Stopping a server that is running code: SIGTERM/SIGINT stop accepting, log what is waited
for, let running work finish within the grace period, then cancel it with an error envelope;
a second signal cancels at once. Never a bare 500, never a traceback."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.conftest import Server, StartServer


def _running_exec(server: Server, pool: ThreadPoolExecutor, seconds: float):  # type: ignore[no-untyped-def]
    container = httpx.post(f"{server.url}/v1/containers", timeout=30).json()["id"]
    code = f"import time; time.sleep({seconds}); print('finished')"
    future = pool.submit(httpx.post, f"{server.url}/v1/containers/{container}/exec", json={"code": code}, timeout=90)
    time.sleep(1.0)  # the execution is under way
    return future


def _exit_code(server: Server, within_s: float) -> int:
    return server.process.wait(timeout=within_s)


def _assert_cancelled(response: httpx.Response) -> None:
    assert response.status_code == 529, response.text
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "overloaded_error"
    assert "shutting down" in body["error"]["message"]
    assert body["request_id"] == response.headers["request-id"]


def test_running_code_finishes_within_the_grace_period(start_server: StartServer) -> None:
    server = start_server(args=["--shutdown-grace", "30"])
    with ThreadPoolExecutor(1) as pool:
        running = _running_exec(server, pool, 2)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        refused = None
        try:
            refused = httpx.get(f"{server.url}/health", timeout=2)
        except httpx.TransportError:
            pass
        assert refused is None, "a stopping server accepts no new connections"
        response = running.result()
    assert response.status_code == 200 and response.json()["stdout"] == "finished\n"
    assert _exit_code(server, 30) == 0
    log = server.log_tail(200)
    assert "SIGTERM received: no longer accepting connections; waiting up to 30s for 1 x POST /v1/containers/" in log
    assert "execbox stopped" in log and "Traceback" not in log


def test_code_still_running_after_the_grace_period_is_cancelled_with_an_envelope(start_server: StartServer) -> None:
    server = start_server(args=["--shutdown-grace", "1"])
    with ThreadPoolExecutor(1) as pool:
        running = _running_exec(server, pool, 25)
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        response = running.result()
    assert time.monotonic() - started < 15
    _assert_cancelled(response)
    assert _exit_code(server, 30) == 0
    log = server.log_tail(200)
    assert "the grace period ended: cancelling 1 running request(s)" in log and "Traceback" not in log


def test_a_second_signal_cancels_at_once(start_server: StartServer) -> None:
    server = start_server(args=["--shutdown-grace", "120"])
    with ThreadPoolExecutor(1) as pool:
        running = _running_exec(server, pool, 25)
        server.process.send_signal(signal.SIGINT)
        time.sleep(0.5)
        started = time.monotonic()
        server.process.send_signal(signal.SIGINT)
        response = running.result()
    assert time.monotonic() - started < 10
    _assert_cancelled(response)
    assert _exit_code(server, 30) == 0
    log = server.log_tail(200)
    assert "a second SIGINT arrived: cancelling 1 running request(s)" in log
    assert "Traceback" not in log and "KeyboardInterrupt" not in log


def test_a_cancelled_stream_ends_with_an_error_event(start_server: StartServer) -> None:
    server = start_server(args=["--shutdown-grace", "1"])
    body = {
        "model": "execbox-direct", "max_tokens": 256, "stream": True,
        "tools": [{"type": "code_execution_20250825", "name": "code_execution"}],
        "messages": [{"role": "user", "content": "```python\nimport time; time.sleep(25)\n```"}],
    }
    lines: list[str] = []
    with httpx.stream("POST", f"{server.url}/v1/messages", json=body, timeout=60,
                      headers={"anthropic-version": "2023-06-01"}) as response:
        assert response.status_code == 200
        signalled = False
        for line in response.iter_lines():
            lines.append(line)
            if line == "event: content_block_start" and not signalled:
                server.process.send_signal(signal.SIGTERM)
                signalled = True
    assert _exit_code(server, 30) == 0
    assert lines.count("event: error") == 1, lines
    error = lines[lines.index("event: error") + 1]
    assert '"overloaded_error"' in error and "shutting down" in error
