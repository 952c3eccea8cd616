"""Anthropic's batch limits, enforced with clear 4xx errors: 100,000 requests, 256 MB."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlparse

import httpx

from tests.conftest import Server

API = {"anthropic-version": "2023-06-01"}  # the Anthropic API routes require it


def test_more_than_100000_requests_is_a_bad_request(server: Server) -> None:
    params = {"model": "execbox-direct", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]}
    body = {"requests": [{"custom_id": f"r{i}", "params": params} for i in range(100_001)]}
    response = httpx.post(f"{server.url}/v1/messages/batches", content=json.dumps(body), timeout=120,
                          headers={"content-type": "application/json", **API})
    assert response.status_code == 400, response.text[:300]
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "requests" in response.json()["error"]["message"] and "100000" in response.json()["error"]["message"]


def test_a_body_over_256_mb_is_refused_before_it_is_read(server: Server) -> None:
    url = urlparse(server.url)
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(
            b"POST /v1/messages/batches HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"anthropic-version: 2023-06-01\r\n"
            + f"Content-Length: {256 * 1000**2 + 1}\r\n\r\n".encode()
        )
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < _length(answer):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 413"), head
    assert json.loads(body)["error"]["type"] == "request_too_large"


def _length(answer: bytes) -> int:
    for line in answer.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 1 << 30
