"""How a streamed response ends when something goes wrong: a failure inside the tool loop,
a client that leaves while its code runs."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from execbox.backends.base import ModelEvent, ModelRequest
from tests.api.inprocess import app_client
from tests.conftest import Server
from tests.conversation.fakes import ScriptedBackend

BASH = [{"type": "code_execution_20250825", "name": "code_execution"}]


def body(prompt: str, **fields: Any) -> dict[str, Any]:
    return {
        "model": "execbox-direct",
        "max_tokens": 256,
        "stream": True,
        "messages": [{"role": "user", "content": prompt}],
        "tools": BASH,
        **fields,
    }


class BrokenBackend(ScriptedBackend):
    """Plays its turns back, then fails the way a bug would (not with an execbox error)."""

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        if not self.turns:
            raise RuntimeError("a bug in a backend")
        async for event in super().stream(request):
            yield event


async def test_an_unexpected_failure_after_the_first_event_is_an_error_event(tmp_path: Path) -> None:
    model = BrokenBackend([("call", "bash_code_execution", '{"command": "echo hi"}')])
    async with app_client(tmp_path, backend=model) as (client, _):
        response = await client.post("/v1/messages", json=body("go"))
    assert response.status_code == 200
    chunks = response.text.strip().split("\n\n")
    names = [chunk.splitlines()[0].removeprefix("event: ") for chunk in chunks]
    assert names[0] == "message_start" and "content_block_stop" in names
    assert names[-1] == "error" and names.count("error") == 1
    error = json.loads(chunks[-1].splitlines()[1].removeprefix("data: "))
    assert error["error"] == {"type": "api_error", "message": "Internal server error."}
    assert error["request_id"] == response.headers["request-id"]


def wait_until(condition: Callable[[], bool], what: str, deadline_s: float = 15) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.05)


def test_a_client_leaving_mid_stream_stops_its_code(server: Server) -> None:
    # The shared server's executions time out after 30 s: the code must stop well before.
    marker = f"sleep {uuid.uuid4().int % 10_000 + 1000}.5"

    def running() -> bool:
        return subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 0

    tracebacks = server.log_path.read_text().count("Traceback")
    with httpx.Client(base_url=server.url, headers={"anthropic-version": "2023-06-01"}, timeout=60) as client:
        first = client.post("/v1/messages", json=body("```bash\necho ready\n```", stream=False)).json()
        container = first["container"]["id"]
        with client.stream("POST", "/v1/messages", json=body(f"```bash\n{marker}\n```", container=container)) as r:
            lines = r.iter_lines()  # kept: dropping a half-read iterator would already close the connection
            for line in lines:
                if line == "event: content_block_stop":  # the call is complete: its code starts now
                    break
            wait_until(running, "the code to start")
        # Leaving the block closes the connection mid-stream.
        wait_until(lambda: not running(), "the code to stop")
        # The container is free for the next request.
        again = client.post("/v1/messages", json=body("```bash\necho again\n```", stream=False, container=container))
        assert again.json()["content"][-1]["text"] == "again\n"
    assert server.log_path.read_text().count("Traceback") == tracebacks, "the server logged an error"


def test_a_client_leaving_a_plain_request_stops_its_code(server: Server) -> None:
    marker = f"sleep {uuid.uuid4().int % 10_000 + 1000}.25"

    def running() -> bool:
        return subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 0

    payload = json.dumps(body(f"```bash\n{marker}\n```", stream=False)).encode()
    address = urlsplit(server.url)
    head = (
        f"POST /v1/messages HTTP/1.1\r\nhost: {address.netloc}\r\ncontent-type: application/json\r\n"
        "anthropic-version: 2023-06-01\r\n"
        f"content-length: {len(payload)}\r\n\r\n"
    ).encode()
    with socket.create_connection((address.hostname, address.port)) as connection:
        connection.sendall(head + payload)
        wait_until(running, "the code to start")
    # The connection is closed without waiting for the answer.
    wait_until(lambda: not running(), "the code to stop")
