"""``POST /v1/messages`` and ``/count_tokens`` on the wire: validation, errors, headers, SSE framing."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

BASH = [{"type": "code_execution_20250825", "name": "code_execution"}]
HEADERS = {"x-api-key": "test", "anthropic-version": "2023-06-01"}
# A server tool call still waiting for its result, as a paused response leaves it.
PENDING = {"type": "server_tool_use", "id": "srvtoolu_1", "name": "bash_code_execution", "input": {"command": "ls"}}


def body(content: Any = "hello", **fields: Any) -> dict[str, Any]:
    return {"model": "execbox-direct", "max_tokens": 256, "messages": [{"role": "user", "content": content}], **fields}


@pytest.fixture(scope="module")
def http(server) -> httpx.Client:
    with httpx.Client(base_url=server.url, headers=HEADERS, timeout=120) as client:
        yield client


def assert_error(response: httpx.Response, status: int, error_type: str, text: str = "") -> dict[str, Any]:
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["type"] == "error" and payload["error"]["type"] == error_type
    assert text in payload["error"]["message"]
    assert payload["request_id"] == response.headers["request-id"]
    return payload


def sse(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """The (event name, data) pairs of an SSE body; every event must name itself."""
    events = []
    for chunk in response.text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in chunk.splitlines())
        data = json.loads(lines["data"])
        assert lines["event"] == data["type"]
        events.append((lines["event"], data))
    return events


def test_a_plain_request_without_tools(http: httpx.Client) -> None:
    response = http.post("/v1/messages", json=body())
    assert response.status_code == 200
    message = response.json()
    assert message["id"].startswith("msg_") and message["type"] == "message" and message["role"] == "assistant"
    assert message["model"] == "execbox-direct"
    assert message["content"][0]["type"] == "text" and message["stop_reason"] == "end_turn"
    assert message["container"] is None
    assert message["usage"]["server_tool_use"] == {
        "web_search_requests": 0,
        "web_fetch_requests": 0,
        "code_execution_requests": 0,
        "execution_time_seconds": 0.0,
    }
    assert response.headers["request-id"].startswith("req_")


@pytest.mark.parametrize(
    ("payload", "text"),
    [
        ({"max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": "m", "messages": [{"role": "user", "content": "hi"}]}, "max_tokens"),
        (body(max_tokens=-1), "max_tokens"),
        ({"model": "m", "max_tokens": 10}, "messages"),
        (body(messages=[]), "messages"),
        (body(messages=[{"role": "system", "content": "hi"}]), "role"),
        (body([{"type": "no_such_block"}]), "no_such_block"),
        (body(tools=[{"type": "web_search_20250305", "name": "web_search"}]), "Unsupported tool type"),
        (body(tools=[*BASH, *BASH]), "at most one code execution tool"),
        (body(tools=[{"name": "f", "input_schema": {"type": "string"}}]), "tools.0.custom.input_schema"),
        (body(tool_choice={"type": "tool", "name": "missing"}), "missing"),
        (body(temperature=1.5), "temperature"),
        (body(messages=[{"role": "user", "content": "hi"}] * 100_001), "at most 100000"),
        (body(messages=[{"role": "user", "content": "go"}, {"role": "assistant", "content": [PENDING]}]), "srvtoolu_1"),
    ],
)
def test_invalid_bodies_are_400s(http: httpx.Client, payload: dict[str, Any], text: str) -> None:
    assert_error(http.post("/v1/messages", json=payload), 400, "invalid_request_error", text)


def test_malformed_json_is_a_400(http: httpx.Client) -> None:
    response = http.post("/v1/messages", content=b"{not json", headers={"content-type": "application/json"})
    assert_error(response, 400, "invalid_request_error", "JSON")


def test_bodies_over_32_mb_are_413s(http: httpx.Client) -> None:
    response = http.post("/v1/messages", json=body("x" * (33 * 1000**2)))
    assert_error(response, 413, "request_too_large")


def test_sampling_parameters_depend_on_the_api_version(http: httpx.Client) -> None:
    assert http.post("/v1/messages", json=body(temperature=0.5, top_p=0.9, top_k=5)).status_code == 200
    strict = {"anthropic-version": "2026-10-21"}
    assert_error(
        http.post("/v1/messages", json=body(temperature=1), headers=strict), 400, "invalid_request_error", "temperature"
    )
    assert http.post("/v1/messages", json=body(), headers=strict).status_code == 200
    user_citations = body([{"type": "text", "text": "hi", "citations": [{"type": "char_location"}]}])
    assert_error(
        http.post("/v1/messages", json=user_citations, headers=strict), 400, "invalid_request_error", "citations"
    )


def test_unsupported_features_headers_and_query_params_are_ignored(http: httpx.Client) -> None:
    payload = body(
        [{"type": "text", "text": "hi", "citations": None, "cache_control": {"type": "ephemeral"}}],
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        thinking={"type": "enabled", "budget_tokens": 1024},
        service_tier="auto",
        metadata={"user_id": "u1"},
        output_config={"effort": "low"},
        context_management={"edits": []},
        mcp_servers=[],
        inference_geo="us",
        cache_control={"type": "ephemeral"},
        tools=[{**BASH[0], "cache_control": {"type": "ephemeral"}, "allowed_callers": ["direct"], "strict": False}],
    )
    headers = {"anthropic-beta": "code-execution-2025-08-25,some-future-beta", "x-stainless-lang": "python"}
    response = http.post("/v1/messages?beta=true&whatever=1", json=payload, headers=headers)
    assert response.status_code == 200, response.text


def test_every_response_block_is_accepted_back_as_input(http: httpx.Client) -> None:
    first = http.post("/v1/messages", json=body("```bash\necho one\n```\n```create f.txt\nx\n```", tools=BASH)).json()
    messages = [
        {"role": "user", "content": "```bash\necho one\n```"},
        {"role": "assistant", "content": first["content"]},
        {"role": "user", "content": [{"type": "text", "text": "```bash\necho two\n```"}]},
    ]
    response = http.post(
        "/v1/messages", json={**body(tools=BASH), "messages": messages, "container": first["container"]["id"]}
    )
    assert response.status_code == 200, response.text
    assert response.json()["content"][-1]["text"] == "two\n"


def test_every_input_form_is_accepted(http: httpx.Client) -> None:
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    attachments = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"}},
        {"type": "text", "text": "Look these up.", "citations": None},
    ]
    call = {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}, "caller": {"type": "direct"}}
    error = [{"type": "text", "text": "The service is down."}]
    failed = {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True, "content": error}
    messages = [
        {"role": "user", "content": "First question."},
        {"role": "user", "content": attachments},  # consecutive turns of one role
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "sig"}, call]},
        {"role": "user", "content": [failed]},
        {"role": "assistant", "content": [{"type": "text", "text": "The lookup failed."}]},
        {"role": "user", "content": [{"type": "text", "text": "```bash\necho fine\n```"}]},
    ]
    tools = [*BASH, {"name": "lookup", "input_schema": {"type": "object"}}]
    payload = body(messages=messages, tools=tools, system=[{"type": "text", "text": "Be brief."}])
    response = http.post("/v1/messages", json=payload)
    assert response.status_code == 200, response.text
    assert response.json()["content"][-1]["text"] == "fine\n"


def test_unknown_containers_and_files(http: httpx.Client) -> None:
    assert_error(
        http.post("/v1/messages", json=body(tools=BASH, container="container_nope")),
        404,
        "not_found_error",
        "container_nope",
    )
    upload = [{"type": "text", "text": "hi"}, {"type": "container_upload", "file_id": "file_nope"}]
    assert_error(http.post("/v1/messages", json=body(upload, tools=BASH)), 404, "not_found_error", "file_nope")


def test_streamed_events_are_named_and_ordered(http: httpx.Client) -> None:
    response = http.post("/v1/messages", json=body("```bash\necho hi\n```", tools=BASH, stream=True))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse(response)
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert names[-2:] == ["message_delta", "message_stop"]
    start = events[2][1]["content_block"]
    assert start["type"] == "server_tool_use" and start["input"] == {}
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert delta["delta"]["container"]["id"].startswith("container_")
    assert delta["usage"]["server_tool_use"]["code_execution_requests"] == 1


def test_errors_before_the_first_event_are_plain_json(http: httpx.Client) -> None:
    response = http.post("/v1/messages", json=body(tools=BASH, container="container_nope", stream=True))
    assert response.headers["content-type"].startswith("application/json")
    assert_error(response, 404, "not_found_error")


def test_a_failure_mid_stream_is_an_error_event(http: httpx.Client) -> None:
    prompt = "```bash\necho hi\n```\n```error 529\nThe model is overloaded.\n```"
    response = http.post("/v1/messages", json=body(prompt, tools=BASH, stream=True))
    assert response.status_code == 200
    events = sse(response)
    assert events[0][0] == "message_start"
    name, error = events[-1]
    assert name == "error"
    assert error["error"] == {"type": "overloaded_error", "message": "The model is overloaded."}
    assert error["request_id"] == response.headers["request-id"]


def test_count_tokens(http: httpx.Client) -> None:
    bare = http.post(
        "/v1/messages/count_tokens", json={"model": "execbox-direct", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert bare.status_code == 200
    assert list(bare.json()) == ["input_tokens"] and bare.json()["input_tokens"] > 0
    tooled = http.post(
        "/v1/messages/count_tokens",
        json={"model": "execbox-direct", "messages": [{"role": "user", "content": "hi"}], "tools": BASH},
    )
    assert tooled.json()["input_tokens"] > bare.json()["input_tokens"]
    assert_error(http.post("/v1/messages/count_tokens", json={"model": "m"}), 400, "invalid_request_error", "messages")
