"""Failures outside any route still get Anthropic's error envelope and a request id."""

from __future__ import annotations

import httpx
import pytest


@pytest.fixture(scope="module")
def http(server) -> httpx.Client:
    with httpx.Client(base_url=server.url, headers={"anthropic-version": "2023-06-01"}, timeout=60) as client:
        yield client


def envelope(response: httpx.Response, status: int, error_type: str) -> str:
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["type"] == "error"
    assert payload["error"]["type"] == error_type
    assert payload["request_id"] == response.headers["request-id"]
    return payload["error"]["message"]


def test_unknown_paths_are_404_not_found_errors(http: httpx.Client) -> None:
    assert "GET /v1/nothing" in envelope(http.get("/v1/nothing"), 404, "not_found_error")


def test_wrong_methods_keep_their_status(http: httpx.Client) -> None:
    envelope(http.delete("/v1/messages"), 405, "invalid_request_error")


def test_every_response_has_a_request_id(http: httpx.Client) -> None:
    first, second = http.get("/health"), http.get("/health")
    assert first.headers["request-id"].startswith("req_")
    assert first.headers["request-id"] != second.headers["request-id"]
