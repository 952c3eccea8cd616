"""The anthropic backend against a fake Messages API over real HTTP."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from execbox.backends.anthropic import AnthropicBackend
from execbox.backends.base import (
    BlockStart,
    BlockStop,
    InputDelta,
    InputTokens,
    ModelEvent,
    ModelRequest,
    TextDelta,
    ToolSpec,
    TurnStop,
)
from execbox.errors import (
    BadGateway,
    ExecboxError,
    InternalError,
    InvalidRequest,
    Overloaded,
    RateLimited,
    UpstreamTimeout,
)
from tests.backends.fakes import (
    FakeUpstream,
    Reply,
    anthropic_error,
    anthropic_events,
    anthropic_reply,
    anthropic_stream,
    hang,
    json_reply,
)

BASH = ToolSpec(
    "bash_code_execution",
    {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
    "Run a bash command in the container.",
    server=True,
)
WEATHER = ToolSpec("get_weather", {"type": "object", "properties": {"city": {"type": "string"}}})


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
async def backend(upstream: FakeUpstream) -> AsyncIterator[AnthropicBackend]:
    backend = AnthropicBackend("sk-operator", upstream.base_url, timeout=5)
    yield backend
    await backend.aclose()


def ask(messages: list[dict[str, Any]] | str = "Hi", **fields: Any) -> ModelRequest:
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    return ModelRequest(model="claude-sonnet-4-5", messages=messages, max_tokens=1024, **fields)


async def events(backend: AnthropicBackend, request: ModelRequest) -> list[ModelEvent]:
    return [event async for event in backend.stream(request)]


async def sent_history(backend: AnthropicBackend, upstream: FakeUpstream, messages: list[dict[str, Any]]) -> Any:
    upstream.add(anthropic_reply({"type": "text", "text": "ok"}))
    await events(backend, ask(messages, tools=[BASH]))
    return upstream.requests[-1].body["messages"]


async def test_text_answer_streams_as_one_text_block(backend: AnthropicBackend, upstream: FakeUpstream) -> None:
    upstream.add(anthropic_reply({"type": "text", "text": "Hello there"}, input_tokens=12, output_tokens=3))

    assert await events(backend, ask()) == [
        InputTokens(12), BlockStart("text"), TextDelta("Hell"), TextDelta("o th"), TextDelta("ere"), BlockStop(),
        TurnStop("end_turn", input_tokens=12, output_tokens=3),
    ]


async def test_request_carries_operator_key_version_and_parameters(
    backend: AnthropicBackend, upstream: FakeUpstream
) -> None:
    upstream.add(anthropic_reply({"type": "text", "text": "ok"}))
    request = ask(
        system="Be brief.",
        tools=[BASH, WEATHER],
        tool_choice={"type": "any"},
        stop_sequences=["END"],
        extra={"temperature": 0.2, "top_k": 5, "metadata": {"user_id": "u1"}, "thinking": {"type": "enabled"}},
    )
    await events(backend, request)

    (received,) = upstream.requests
    assert received.path == "/v1/messages"
    assert received.headers["x-api-key"] == "sk-operator"
    assert received.headers["anthropic-version"] == "2023-06-01"
    assert received.body == {
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "system": "Be brief.",
        "tools": [
            {"name": "bash_code_execution", "description": "Run a bash command in the container.",
             "input_schema": BASH.input_schema},
            {"name": "get_weather", "description": "", "input_schema": WEATHER.input_schema},
        ],
        "tool_choice": {"type": "any"},
        "max_tokens": 1024,
        "stream": True,
        "stop_sequences": ["END"],
        "temperature": 0.2,
        "top_k": 5,
        "metadata": {"user_id": "u1"},
        "thinking": {"type": "enabled"},
    }


async def test_tool_call_streams_name_id_and_input_pieces(backend: AnthropicBackend, upstream: FakeUpstream) -> None:
    upstream.add(anthropic_reply(
        {"type": "text", "text": "Running it."},
        {"type": "tool_use", "id": "toolu_01", "name": "bash_code_execution", "input": {"command": "ls -la"}},
        piece=8, output_tokens=30,
    ))

    assert await events(backend, ask(tools=[BASH])) == [
        InputTokens(10), BlockStart("text"), TextDelta("Running "), TextDelta("it."), BlockStop(),
        BlockStart("tool_use", name="bash_code_execution", id="toolu_01"),
        InputDelta('{"comman'), InputDelta('d": "ls '), InputDelta('-la"}'), BlockStop(),
        TurnStop("tool_use", input_tokens=10, output_tokens=30),
    ]


async def test_parallel_tool_calls_are_sequential_blocks(backend: AnthropicBackend, upstream: FakeUpstream) -> None:
    upstream.add(anthropic_reply(
        {"type": "tool_use", "id": "toolu_a", "name": "bash_code_execution", "input": {"command": "pwd"}},
        {"type": "tool_use", "id": "toolu_b", "name": "get_weather", "input": {"city": "Rome"}},
    ))

    got = await events(backend, ask(tools=[BASH, WEATHER]))

    starts = [e for e in got if isinstance(e, BlockStart)]
    assert starts == [BlockStart("tool_use", "bash_code_execution", "toolu_a"),
                      BlockStart("tool_use", "get_weather", "toolu_b")]
    inputs = "".join(e.partial_json for e in got if isinstance(e, InputDelta))
    assert inputs == '{"command": "pwd"}{"city": "Rome"}'
    assert got.count(BlockStop()) == 2
    assert got[-1].stop_reason == "tool_use"


async def test_thinking_goes_upstream_except_to_answer_tool_calls(
    backend: AnthropicBackend, upstream: FakeUpstream
) -> None:
    thinking = {"type": "enabled", "budget_tokens": 1024}
    call = {"type": "server_tool_use", "id": "srvtoolu_1", "name": "bash_code_execution", "input": {"command": "ls"}}
    result = {"type": "bash_code_execution_tool_result", "tool_use_id": "srvtoolu_1", "content": {
        "type": "bash_code_execution_result", "stdout": "a\n", "stderr": "", "return_code": 0, "content": []}}
    upstream.add(anthropic_reply({"type": "text", "text": "ok"}), anthropic_reply({"type": "text", "text": "ok"}))

    await events(backend, ask(tools=[BASH], extra={"thinking": thinking}))
    # Claude refuses thinking when the tool calls it answers were made without it (their thinking is not kept).
    looped = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": [call, result]}]
    await events(backend, ask(looped, tools=[BASH], extra={"thinking": thinking}))

    assert upstream.requests[0].body["thinking"] == thinking
    assert "thinking" not in upstream.requests[1].body


async def test_thinking_blocks_are_not_relayed(backend: AnthropicBackend, upstream: FakeUpstream) -> None:
    upstream.add(anthropic_reply({"type": "thinking", "thinking": "Hmm."}, {"type": "text", "text": "Yes"}))

    assert await events(backend, ask()) == [
        InputTokens(10), BlockStart("text"), TextDelta("Yes"), BlockStop(), TurnStop("end_turn", 10, 5),
    ]


async def test_stop_sequence_and_cached_input_tokens(backend: AnthropicBackend, upstream: FakeUpstream) -> None:
    stream = anthropic_events({"type": "text", "text": "1 2 3"}, stop_reason="stop_sequence", stop_sequence="4")
    stream[0]["message"]["usage"].update(cache_read_input_tokens=100, cache_creation_input_tokens=None)
    upstream.add(anthropic_stream(*stream))

    got = await events(backend, ask(stop_sequences=["4"]))

    assert got[0] == InputTokens(110)
    assert got[-1] == TurnStop("stop_sequence", input_tokens=110, output_tokens=5, stop_sequence="4")


async def test_tool_call_without_input_gets_an_empty_object(backend: AnthropicBackend, upstream: FakeUpstream) -> None:
    stream = anthropic_events({"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}})
    for event in stream:
        if event["type"] == "content_block_delta":
            event["delta"]["partial_json"] = ""
    upstream.add(anthropic_stream(*stream))

    got = await events(backend, ask(tools=[WEATHER]))

    assert got[1:4] == [BlockStart("tool_use", "get_weather", "toolu_1"), InputDelta("{}"), BlockStop()]


async def test_server_tool_calls_become_client_tool_turns(backend: AnthropicBackend, upstream: FakeUpstream) -> None:
    history = [
        {"role": "user", "content": [
            {"type": "text", "text": "Analyse data.csv", "citations": None},
            {"type": "container_upload", "file_id": "file_01"},
        ]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Look first.", "signature": "c2ln"},
            {"type": "text", "text": "Let me look.", "citations": None},
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "bash_code_execution",
             "input": {"command": "head data.csv"}},
            {"type": "bash_code_execution_tool_result", "tool_use_id": "srvtoolu_1",
             "content": {"type": "bash_code_execution_result", "stdout": "a,b\n1,2\n", "stderr": "",
                         "return_code": 0, "content": []}},
            {"type": "server_tool_use", "id": "srvtoolu_2", "name": "text_editor_code_execution",
             "input": {"command": "view", "path": "/tmp/x"}},
            {"type": "text_editor_code_execution_tool_result", "tool_use_id": "srvtoolu_2",
             "content": {"type": "text_editor_code_execution_tool_result_error", "error_code": "file_not_found",
                         "error_message": None}},
            {"type": "text", "text": "Two columns."},
        ]},
        {"role": "user", "content": "Plot it"},
    ]

    assert await sent_history(backend, upstream, history) == [
        {"role": "user", "content": [{"type": "text", "text": "Analyse data.csv"}]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "srvtoolu_1", "name": "bash_code_execution",
             "input": {"command": "head data.csv"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "srvtoolu_1", "content": "stdout:\na,b\n1,2\n\nreturn_code: 0"},
        ]},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "srvtoolu_2", "name": "text_editor_code_execution",
             "input": {"command": "view", "path": "/tmp/x"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "srvtoolu_2", "content": "Error: file_not_found", "is_error": True},
        ]},
        {"role": "assistant", "content": [{"type": "text", "text": "Two columns."}]},
        {"role": "user", "content": [{"type": "text", "text": "Plot it"}]},
    ]


async def test_pending_server_call_beside_a_client_tool(backend: AnthropicBackend, upstream: FakeUpstream) -> None:
    history = [
        {"role": "user", "content": "Weather, and 2+2?"},
        {"role": "assistant", "content": [
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "code_execution", "input": {"code": "print(2+2)"}},
            {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {"city": "Rome"},
             "caller": {"type": "direct"}},
        ]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "sunny"}]},
        {"role": "assistant", "content": [
            {"type": "code_execution_tool_result", "tool_use_id": "srvtoolu_1",
             "content": {"type": "code_execution_result", "stdout": "4\n", "stderr": "", "return_code": 0,
                         "content": []}},
        ]},
    ]

    assert await sent_history(backend, upstream, history) == [
        {"role": "user", "content": [{"type": "text", "text": "Weather, and 2+2?"}]},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "srvtoolu_1", "name": "code_execution", "input": {"code": "print(2+2)"}},
            {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {"city": "Rome"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_9", "content": "sunny"},
            {"type": "tool_result", "tool_use_id": "srvtoolu_1", "content": "stdout:\n4\n\nreturn_code: 0"},
        ]},
    ]


@pytest.mark.parametrize(
    ("result", "text"),
    [
        ({"type": "bash_code_execution_result", "stdout": "", "stderr": "boom\n", "return_code": 2, "content": []},
         "stderr:\nboom\n\nreturn_code: 2"),
        ({"type": "text_editor_code_execution_view_result", "content": "line 1\n", "file_type": "text",
          "num_lines": None}, "line 1\n"),
        ({"type": "text_editor_code_execution_create_result", "is_file_update": False}, "File created."),
        ({"type": "text_editor_code_execution_create_result", "is_file_update": True}, "File updated."),
        ({"type": "text_editor_code_execution_str_replace_result", "lines": ["-  a", "+  b"]}, "Replaced.\n-  a\n+  b"),
        ({"type": "bash_code_execution_tool_result_error", "error_code": "execution_time_exceeded"},
         "Error: execution_time_exceeded"),
    ],
)
async def test_server_results_are_rendered_as_text(
    backend: AnthropicBackend, upstream: FakeUpstream, result: dict[str, Any], text: str
) -> None:
    block_type = "text_editor" if result["type"].startswith("text_editor") else "bash"
    history = [
        {"role": "user", "content": "Go"},
        {"role": "assistant", "content": [
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": f"{block_type}_code_execution", "input": {}},
            {"type": f"{block_type}_code_execution_tool_result", "tool_use_id": "srvtoolu_1", "content": result},
        ]},
    ]

    sent = await sent_history(backend, upstream, history)

    assert sent[-1]["content"][0]["content"] == text


@pytest.mark.parametrize(
    ("reply", "error", "status", "says"),
    [
        (anthropic_error(400, "invalid_request_error", "messages.0: bad block"), InvalidRequest, 400,
         "messages.0: bad block"),
        (anthropic_error(401, "authentication_error", "invalid x-api-key"), InternalError, 500,
         "rejected the server's API key"),
        (anthropic_error(403, "permission_error", "no access"), InternalError, 500, "rejected the server's API key"),
        (anthropic_error(429, "rate_limit_error", "slow down"), RateLimited, 429, "slow down"),
        (anthropic_error(500, "api_error", "internal"), BadGateway, 502, "internal"),
        (anthropic_error(529, "overloaded_error", "Overloaded"), Overloaded, 529, "Overloaded"),
        (Reply(503, [b"Service Unavailable"], "text/plain"), Overloaded, 529, "Service Unavailable"),
    ],
)
async def test_upstream_error_statuses(
    backend: AnthropicBackend, upstream: FakeUpstream, reply: Reply, error: type[ExecboxError], status: int, says: str
) -> None:
    upstream.add(reply)

    with pytest.raises(error) as caught:
        await events(backend, ask())

    assert caught.value.status == status
    assert says in caught.value.message


async def test_mid_stream_error_event(backend: AnthropicBackend, upstream: FakeUpstream) -> None:
    start, block_start, delta = anthropic_events({"type": "text", "text": "Hi"})[:3]
    upstream.add(anthropic_stream(
        start, block_start, delta, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    ))
    got: list[ModelEvent] = []

    with pytest.raises(Overloaded, match="Overloaded"):
        async for event in backend.stream(ask()):
            got.append(event)

    assert got == [InputTokens(10), BlockStart("text"), TextDelta("Hi")]


async def test_stream_cut_short_is_an_error(backend: AnthropicBackend, upstream: FakeUpstream) -> None:
    upstream.add(anthropic_stream(*anthropic_events({"type": "text", "text": "Hi"})[:-1]))

    with pytest.raises(BadGateway, match="ended its stream"):
        await events(backend, ask())


@pytest.mark.parametrize(
    "reply",
    [hang(), anthropic_stream(*anthropic_events({"type": "text", "text": "Hi"})[:3], hang_after=True)],
    ids=["before-headers", "mid-stream"],
)
async def test_upstream_that_hangs_times_out(upstream: FakeUpstream, reply: Reply) -> None:
    upstream.add(reply)
    backend = AnthropicBackend("sk-operator", upstream.base_url, timeout=0.3)

    with pytest.raises(UpstreamTimeout) as caught:
        await events(backend, ask())

    assert caught.value.status == 504
    await backend.aclose()


async def test_unreachable_upstream_names_its_url() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = AnthropicBackend("sk-operator", f"http://127.0.0.1:{port}", timeout=5)

    with pytest.raises(BadGateway, match=f"127.0.0.1:{port}/v1/messages"):
        await events(backend, ask())
    await backend.aclose()


async def test_count_tokens_asks_upstream(backend: AnthropicBackend, upstream: FakeUpstream) -> None:
    upstream.add(json_reply(200, {"input_tokens": 42}))

    assert await backend.count_tokens(ask(system="Be brief.", tools=[BASH])) == 42

    (received,) = upstream.requests
    assert received.path == "/v1/messages/count_tokens"
    assert received.headers["x-api-key"] == "sk-operator"
    assert received.body == {
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "system": "Be brief.",
        "tools": [{"name": "bash_code_execution", "description": BASH.description, "input_schema": BASH.input_schema}],
    }


async def test_count_tokens_errors_are_mapped(backend: AnthropicBackend, upstream: FakeUpstream) -> None:
    upstream.add(anthropic_error(400, "invalid_request_error", "messages: empty"))

    with pytest.raises(InvalidRequest, match="messages: empty"):
        await backend.count_tokens(ask())


async def test_serves_exactly_the_claude_models_it_lists(backend: AnthropicBackend) -> None:
    assert backend.serves("claude-sonnet-4-5") and backend.serves("claude-sonnet-4-5-20250929")
    assert not backend.serves("claude-3-5-haiku-20241022")  # not listed, so not served
    assert not backend.serves("gpt-4o")
    ids = [model.id for model in backend.models()]
    assert len(ids) == len(set(ids))
    extended = AnthropicBackend("sk-test", extra_models=["claude-3-5-haiku-20241022"])
    assert extended.serves("claude-3-5-haiku-20241022")
    assert "claude-3-5-haiku-20241022" in [model.id for model in extended.models()]
    await extended.aclose()
    assert "claude-sonnet-4-5-20250929" in ids
    assert {model.id: model.created_at.date().isoformat() for model in backend.models()}[
        "claude-sonnet-4-5-20250929"] == "2025-09-29"
    assert all(backend.serves(model_id) for model_id in ids)
