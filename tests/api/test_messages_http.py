"""``POST /v1/messages`` and ``/count_tokens`` on the wire: validation, errors, headers, SSE framing."""

from __future__ import annotations

import json
import time
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
        (
            body(
                tools=[*BASH, {"name": "q", "input_schema": {"type": "object"}, "allowed_callers": ["code_execution_20260120"]}],
                tool_choice={"type": "tool", "name": "q"},
            ),
            "does not include `direct`",
        ),
        (body(tools=[{"name": "q", "input_schema": {"type": "object"}, "allowed_callers": ["someone"]}]), "allowed_callers"),
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
        tools=[
            {**BASH[0], "cache_control": {"type": "ephemeral"}, "allowed_callers": ["direct"], "strict": False},
            {"name": "q", "input_schema": {"type": "object"}, "allowed_callers": ["direct", "code_execution_20260120"],
             "defer_loading": False, "input_examples": [{}], "eager_input_streaming": True, "type": "custom"},
        ],
        speed="standard",
        fallbacks=None,
        diagnostics=None,
        output_format=None,
        user_profile_id="u",
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


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        (body(response_format={"type": "json"}), "response_format"),
        (body(thread_id="t1"), "thread_id"),
        (body(messages=[{"role": "user", "content": "hi", "name": "me"}]), "messages.0.name"),
        (body([{"type": "text", "text": "hi", "cache_controll": {}}]), "messages.0.content.0.text.cache_controll"),
        (body(tools=[{"name": "f", "input_schema": {"type": "object"}, "defer": True}]), "tools.0.custom.defer"),
        (body(tools=[{**BASH[0], "timeout": 5}]), "tools.0.code_execution.timeout"),
        (body(tool_choice={"type": "auto", "parallel": False}), "tool_choice.parallel"),
        (body(metadata={"user_id": "u", "team": "x"}), "metadata.team"),
        (body(container={"id": "container_x", "ttl": 5}), "container.ttl"),
        (body(thread={"type": "create", "id": "x"}), "thread.create.id"),
        (body(system=[{"type": "text", "text": "x", "lang": "en"}]), "system.0.lang"),
    ],
)
def test_unknown_fields_are_extra_inputs(http: httpx.Client, payload: dict[str, Any], path: str) -> None:
    error = assert_error(http.post("/v1/messages", json=payload), 400, "invalid_request_error")
    assert error["error"]["message"] == f"{path}: Extra inputs are not permitted"


def test_unknown_count_tokens_fields_are_extra_inputs(http: httpx.Client) -> None:
    payload = {"model": "execbox-direct", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    error = assert_error(http.post("/v1/messages/count_tokens", json=payload), 400, "invalid_request_error")
    assert error["error"]["message"] == "max_tokens: Extra inputs are not permitted"


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"anthropic-version": None}, "anthropic-version: header is required"),
        ({"anthropic-version": "2023-10-01"}, 'anthropic-version: "2023-10-01" is not a valid version'),
    ],
)
@pytest.mark.parametrize(
    ("method", "path", "payload"),
    [
        ("POST", "/v1/messages", body()),
        ("POST", "/v1/messages/count_tokens", {"model": "execbox-direct", "messages": [{"role": "user", "content": "hi"}]}),
        ("GET", "/v1/models", None),
        ("GET", "/v1/files", None),
    ],
)
def test_the_api_version_header_is_required(
    server, headers: dict[str, Any], message: str, method: str, path: str, payload: Any
) -> None:
    sent = {key: value for key, value in {**HEADERS, **headers}.items() if value is not None}
    response = httpx.request(method, server.url + path, json=payload, headers=sent)
    error = assert_error(response, 400, "invalid_request_error")
    assert error["error"]["message"] == message


@pytest.mark.parametrize("version", ["2023-06-01", "2026-10-21", "2023-01-01"])
def test_every_api_version_is_accepted(http: httpx.Client, version: str) -> None:
    assert http.post("/v1/messages", json=body(), headers={"anthropic-version": version}).status_code == 200


def test_unknown_and_expired_containers_are_404s(http: httpx.Client, start_server) -> None:
    for container in ("container_nope", {"id": "container_nope"}):
        response = http.post("/v1/messages", json=body(tools=BASH, container=container))
        error = assert_error(response, 404, "not_found_error")["error"]
        assert error["message"].startswith("Container not found") and "container_nope" in error["message"]
        assert response.headers["x-should-retry"] == "false"
    for naming, status in (("sdk", 404), ("legacy", 400)):
        short = start_server(args=["--container-ttl", "0.5", "--tool-error-names", naming])
        with httpx.Client(base_url=short.url, headers=HEADERS, timeout=60) as client:
            first = client.post("/v1/messages", json=body("```bash\necho hi\n```", tools=BASH)).json()
            container = first["container"]["id"]
            time.sleep(1)
            for form in (container, {"id": container}):
                response = client.post("/v1/messages", json=body(tools=BASH, container=form))
                assert response.status_code == status, response.text
                error = response.json()["error"]
                assert error["details"]["error_code"] == "container_expired" and "expired" in error["message"]
                if naming == "sdk":
                    assert error["type"] == "not_found_error" and error["message"].startswith("Container not found")
                else:
                    assert error["type"] == "invalid_request_error"
        short.stop()


def test_unserved_models_are_404s(http: httpx.Client) -> None:
    for model in ("gpt-4o", "claude-opus-4-2025051"):
        response = http.post("/v1/messages", json={**body(), "model": model})
        assert_error(response, 404, "not_found_error", model)
        assert http.get(f"/v1/models/{model}").status_code == 404
    # What the documents name is served, and listed.
    listed = [m["id"] for m in http.get("/v1/models", params={"limit": 1000}).json()["data"]]
    assert "claude-opus-4-20250514" in listed and "execbox-direct" in listed
    for model in listed:
        assert http.post("/v1/messages", json={**body(), "model": model}).status_code == 200
        assert http.get(f"/v1/models/{model}").json()["id"] == model


# The non-optional fields of the TypeScript SDK's types (1.14), where execbox emits them.
MESSAGE_FIELDS = {"id", "type", "role", "model", "content", "usage", "container", "diagnostics", "stop_details",
                  "stop_reason", "stop_sequence", "context_management"}
USAGE_FIELDS = {"input_tokens", "output_tokens", "cache_creation", "cache_creation_input_tokens",
                "cache_read_input_tokens", "inference_geo", "output_tokens_details", "server_tool_use",
                "service_tier", "speed", "fallback_credit", "iterations"}


def test_every_declared_field_is_present(http: httpx.Client) -> None:
    lookup = {"name": "lookup", "input_schema": {"type": "object"}}
    prompt = "Hi.\n```bash\necho hi\n```\n```view missing.txt\n```\n```tool lookup\n{}\n```"
    message = http.post("/v1/messages", json=body(prompt, tools=[*BASH, lookup])).json()
    assert MESSAGE_FIELDS <= set(message) and USAGE_FIELDS <= set(message["usage"])
    assert set(message["container"]) == {"id", "expires_at", "skills"} and message["container"]["skills"] is None
    assert message["stop_details"] is None
    calls = [b for b in message["content"] if b["type"] in ("tool_use", "server_tool_use")]
    assert calls and all(b["caller"] == {"type": "direct"} for b in calls)
    assert all("cache_control" not in b for b in message["content"])
    error = next(b for b in message["content"] if b["type"] == "text_editor_code_execution_tool_result")
    assert set(error["content"]) == {"type", "error_code", "error_message"}
    streamed = sse(http.post("/v1/messages", json=body("hi", stream=True)))
    start = next(data for name, data in streamed if name == "message_start")["message"]
    assert MESSAGE_FIELDS <= set(start) and USAGE_FIELDS <= set(start["usage"])
    text = next(data for name, data in streamed if name == "content_block_start")["content_block"]
    assert text == {"type": "text", "text": "", "citations": None}
    delta = next(data for name, data in streamed if name == "message_delta")
    assert set(delta["delta"]) == {"stop_reason", "stop_sequence", "stop_details", "container"}
    assert "context_management" in delta and USAGE_FIELDS <= set(delta["usage"])


def test_threads_over_http(http: httpx.Client) -> None:
    first = http.post("/v1/messages", json=body("```bash\necho one\n```", tools=BASH, thread={"type": "create"}))
    assert first.status_code == 200, first.text
    follow = {"type": "continue", "previous_message_id": first.json()["id"]}
    more = [{"role": "user", "content": "```bash\necho two\n```"}]
    second = http.post("/v1/messages", json={**body(), "messages": more, "thread": follow})
    assert second.status_code == 200, second.text
    assert second.json()["content"][-1]["text"] == "two\n"
    again = http.post("/v1/messages", json={**body(), "messages": more, "thread": follow})
    assert assert_error(again, 400, "invalid_request_error")["error"]["details"] == {
        "error_code": "thread_already_continued"
    }
    lost = {"type": "continue", "previous_message_id": "msg_nope"}
    missing = http.post("/v1/messages", json={**body(), "messages": more, "thread": lost})
    assert assert_error(missing, 404, "not_found_error")["error"]["details"] == {"error_code": "thread_not_found"}
    follow = {"type": "continue", "previous_message_id": second.json()["id"]}
    repeated = http.post("/v1/messages", json={**body(tools=BASH), "messages": more, "thread": follow})
    details = assert_error(repeated, 400, "invalid_request_error", "`tools`")["error"]["details"]
    assert details == {"error_code": "thread_fingerprint_mismatch"}


def test_threads_over_streams(http: httpx.Client) -> None:
    created = sse(http.post("/v1/messages", json=body("```bash\necho one\n```", tools=BASH, stream=True,
                                                       thread={"type": "create"})))
    first_id = created[0][1]["message"]["id"]
    follow = {"type": "continue", "previous_message_id": first_id}
    more = [{"role": "user", "content": "```bash\necho two\n```"}]
    continued = sse(http.post("/v1/messages", json={**body(stream=True), "messages": more, "thread": follow}))
    text = "".join(data["delta"].get("text", "") for name, data in continued if name == "content_block_delta")
    assert text == "two\n"
    # The streamed response was stored before the stream ended: it can be continued at once.
    follow = {"type": "continue", "previous_message_id": continued[0][1]["message"]["id"]}
    last = http.post("/v1/messages", json={**body(), "messages": [{"role": "user", "content": "hi"}], "thread": follow})
    assert last.status_code == 200, last.text
