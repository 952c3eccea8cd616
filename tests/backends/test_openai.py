"""The openai backend against a fake Chat Completions endpoint over real HTTP."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from execbox.backends.base import (
    BlockStart,
    BlockStop,
    InputDelta,
    ModelEvent,
    ModelRequest,
    TextDelta,
    ToolSpec,
    TurnStop,
)
from execbox.backends.openai import OpenAIBackend
from execbox.errors import (
    BadGateway,
    ExecboxError,
    InternalError,
    InvalidRequest,
    NotFound,
    Overloaded,
    RateLimited,
    UpstreamTimeout,
)
from tests.backends.fakes import (
    FakeUpstream,
    Reply,
    hang,
    json_reply,
    openai_chunk,
    openai_error,
    openai_reply,
    openai_stream,
)

BASH = ToolSpec(
    "bash_code_execution",
    {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
    "Run a bash command in the container.",
    server=True,
)
WEATHER = ToolSpec("get_weather", {"type": "object", "properties": {"city": {"type": "string"}}}, "Weather.")
MODEL = "qwen2.5-coder:7b"


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
async def backend(upstream: FakeUpstream) -> AsyncIterator[OpenAIBackend]:
    backend = OpenAIBackend(f"{upstream.base_url}/v1", "sk-local", [MODEL, "llama3"], timeout=5)
    yield backend
    await backend.aclose()


def ask(messages: list[dict[str, Any]] | str = "Hi", **fields: Any) -> ModelRequest:
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    return ModelRequest(model=MODEL, messages=messages, max_tokens=512, **fields)


async def events(backend: OpenAIBackend, request: ModelRequest) -> list[ModelEvent]:
    return [event async for event in backend.stream(request)]


async def sent(backend: OpenAIBackend, upstream: FakeUpstream, request: ModelRequest) -> dict[str, Any]:
    upstream.add(openai_reply("ok"))
    await events(backend, request)
    return upstream.requests[-1].body


async def test_text_answer_with_usage(backend: OpenAIBackend, upstream: FakeUpstream) -> None:
    upstream.add(openai_reply("Hello there", usage=(12, 3)))

    assert await events(backend, ask()) == [
        BlockStart("text"), TextDelta("Hell"), TextDelta("o th"), TextDelta("ere"), BlockStop(),
        TurnStop("end_turn", input_tokens=12, output_tokens=3),
    ]


async def test_request_shape_and_headers(backend: OpenAIBackend, upstream: FakeUpstream) -> None:
    request = ask(
        system=[{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use tools."}],
        tools=[BASH, WEATHER],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        stop_sequences=["END"],
        extra={"temperature": 0.1, "top_p": 0.9, "metadata": {"user_id": "u1"}, "thinking": {"type": "enabled"}},
    )
    body = await sent(backend, upstream, request)

    (received,) = upstream.requests
    assert received.path == "/v1/chat/completions"
    assert received.headers["authorization"] == "Bearer sk-local"
    assert body == {
        "model": MODEL,
        "messages": [{"role": "system", "content": "Be brief.\n\nUse tools."}, {"role": "user", "content": "Hi"}],
        "max_tokens": 512,
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": [
            {"type": "function", "function": {"name": "bash_code_execution", "description": BASH.description,
                                              "parameters": BASH.input_schema}},
            {"type": "function", "function": {"name": "get_weather", "description": "Weather.",
                                              "parameters": WEATHER.input_schema}},
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "stop": ["END"],
        "temperature": 0.1,
        "top_p": 0.9,
        "user": "u1",
    }


async def test_no_key_means_no_authorization_header(upstream: FakeUpstream) -> None:
    backend = OpenAIBackend(f"{upstream.base_url}/v1", None, [MODEL], timeout=5)
    upstream.add(openai_reply("ok"))

    await events(backend, ask())

    assert "authorization" not in upstream.requests[0].headers
    await backend.aclose()


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}),
    ],
)
async def test_tool_choice_mapping(
    backend: OpenAIBackend, upstream: FakeUpstream, choice: dict[str, Any], expected: Any
) -> None:
    body = await sent(backend, upstream, ask(tools=[WEATHER], tool_choice=choice))

    assert body["tool_choice"] == expected
    assert "parallel_tool_calls" not in body


async def test_tool_call_streamed_in_pieces(backend: OpenAIBackend, upstream: FakeUpstream) -> None:
    upstream.add(openai_reply(
        "Let me check.",
        [{"id": "call_1", "name": "bash_code_execution", "input": {"command": "ls"}}],
        piece=8, usage=(20, 9),
    ))

    assert await events(backend, ask(tools=[BASH])) == [
        BlockStart("text"), TextDelta("Let me c"), TextDelta("heck."), BlockStop(),
        BlockStart("tool_use", name="bash_code_execution", id="call_1"),
        InputDelta('{"comman'), InputDelta('d": "ls"'), InputDelta("}"), BlockStop(),
        TurnStop("tool_use", input_tokens=20, output_tokens=9),
    ]


async def test_parallel_tool_calls_become_sequential_blocks(backend: OpenAIBackend, upstream: FakeUpstream) -> None:
    upstream.add(openai_reply(tool_calls=[
        {"id": "call_a", "name": "bash_code_execution", "input": {"command": "pwd"}},
        {"id": "call_b", "name": "get_weather", "input": {"city": "Rome"}},
    ]))

    got = await events(backend, ask(tools=[BASH, WEATHER]))

    assert [e for e in got if not isinstance(e, InputDelta)] == [
        BlockStart("tool_use", "bash_code_execution", "call_a"), BlockStop(),
        BlockStart("tool_use", "get_weather", "call_b"), BlockStop(),
        TurnStop("tool_use", 10, 5),
    ]
    first_stop = got.index(BlockStop())
    assert "".join(e.partial_json for e in got[:first_stop] if isinstance(e, InputDelta)) == '{"command": "pwd"}'
    assert "".join(e.partial_json for e in got[first_stop:] if isinstance(e, InputDelta)) == '{"city": "Rome"}'


async def test_whole_tool_calls_without_ids_or_indexes(backend: OpenAIBackend, upstream: FakeUpstream) -> None:
    # As some local servers send them: every call complete in one chunk, arguments even as an object.
    upstream.add(openai_stream(
        openai_chunk({"role": "assistant", "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}},
            {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}},
            {"type": "function", "function": {"name": "get_weather", "arguments": ""}},
        ]}),
        openai_chunk(finish_reason="stop"),
    ))

    assert await events(backend, ask(tools=[WEATHER])) == [
        BlockStart("tool_use", "get_weather"), InputDelta('{"city": "Rome"}'), BlockStop(),
        BlockStart("tool_use", "get_weather"), InputDelta('{"city": "Oslo"}'), BlockStop(),
        BlockStart("tool_use", "get_weather"), InputDelta("{}"), BlockStop(),
        TurnStop("tool_use", input_tokens=math.ceil((len("Hi") + len(json.dumps([
            {"type": "function", "function": {"name": "get_weather", "description": "Weather.",
                                              "parameters": WEATHER.input_schema}}]))) / 4),
                 output_tokens=math.ceil(len('{"city": "Rome"}{"city": "Oslo"}') / 4)),
    ]


async def test_tool_name_after_the_first_arguments(backend: OpenAIBackend, upstream: FakeUpstream) -> None:
    upstream.add(openai_stream(
        openai_chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"arguments": '{"ci'}}]}),
        openai_chunk({"tool_calls": [{"index": 0, "function": {"name": "get_weather", "arguments": 'ty": "Rome"'}}]}),
        openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": "}"}}]}),
        openai_chunk(finish_reason="tool_calls"),
    ))

    got = await events(backend, ask(tools=[WEATHER]))

    assert got[:-1] == [
        BlockStart("tool_use", "get_weather", "call_1"), InputDelta('{"city": "Rome"'), InputDelta("}"), BlockStop(),
    ]


async def test_whitespace_between_tool_call_pieces_is_ignored(backend: OpenAIBackend, upstream: FakeUpstream) -> None:
    upstream.add(openai_stream(
        openai_chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "get_weather"}}]}),
        openai_chunk({"content": "\n"}),
        openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Rome"}'}}]}),
        openai_chunk(finish_reason="tool_calls"),
    ))

    got = await events(backend, ask(tools=[WEATHER]))

    assert got[:-1] == [BlockStart("tool_use", "get_weather", "call_1"), InputDelta('{"city": "Rome"}'), BlockStop()]


@pytest.mark.parametrize(
    ("finish", "extra", "stop_reason", "stop_sequence"),
    [
        ("length", {}, "max_tokens", None),
        ("stop", {"stop_reason": "END"}, "stop_sequence", "END"),  # vLLM names the matched stop string
        ("stop", {"stop_reason": None}, "end_turn", None),
        ("content_filter", {}, "refusal", None),
    ],
)
async def test_finish_reasons(
    backend: OpenAIBackend, upstream: FakeUpstream, finish: str, extra: dict[str, Any], stop_reason: str,
    stop_sequence: str | None,
) -> None:
    upstream.add(openai_stream(openai_chunk({"content": "1 2 3"}), openai_chunk(finish_reason=finish, **extra)))

    got = await events(backend, ask(stop_sequences=["END"]))

    assert got[-1].stop_reason == stop_reason
    assert got[-1].stop_sequence == stop_sequence


async def test_tokens_are_estimated_without_a_usage_chunk(backend: OpenAIBackend, upstream: FakeUpstream) -> None:
    upstream.add(openai_reply("A twenty char answer", usage=None))

    got = await events(backend, ask("Count these chars please"))

    assert got[-1] == TurnStop("end_turn", input_tokens=math.ceil(24 / 4), output_tokens=5)


async def test_history_in_chat_form(backend: OpenAIBackend, upstream: FakeUpstream) -> None:
    history = [
        {"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}},
            {"type": "text", "text": "What is this?", "citations": None},
            {"type": "container_upload", "file_id": "file_01"},
        ]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking."},
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "bash_code_execution", "input": {"command": "ls"}},
            {"type": "bash_code_execution_tool_result", "tool_use_id": "srvtoolu_1",
             "content": {"type": "bash_code_execution_result", "stdout": "a.csv\n", "stderr": "", "return_code": 0,
                         "content": []}},
            {"type": "text", "text": "A CSV file. And the weather?"},
            {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {"city": "Rome"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_9", "content": [{"type": "text", "text": "sunny"}]},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Notes."}},
        ]},
    ]

    body = await sent(backend, upstream, ask(history, system="Be brief.", tools=[BASH, WEATHER]))

    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
            {"type": "text", "text": "What is this?"},
        ]},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "srvtoolu_1", "type": "function",
             "function": {"name": "bash_code_execution", "arguments": '{"command": "ls"}'}},
        ]},
        {"role": "tool", "tool_call_id": "srvtoolu_1", "content": "stdout:\na.csv\n\nreturn_code: 0"},
        {"role": "assistant", "content": "A CSV file. And the weather?", "tool_calls": [
            {"id": "toolu_9", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}},
        ]},
        {"role": "tool", "tool_call_id": "toolu_9", "content": "sunny"},
        {"role": "user", "content": "Notes."},
    ]


async def test_unsupported_blocks_are_rejected_before_calling_upstream(
    backend: OpenAIBackend, upstream: FakeUpstream
) -> None:
    pdf = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}}

    with pytest.raises(InvalidRequest, match="document blocks with a base64 source"):
        await events(backend, ask([{"role": "user", "content": [pdf, {"type": "text", "text": "Summarise"}]}]))

    assert upstream.requests == []


@pytest.mark.parametrize(
    ("reply", "error", "says"),
    [
        (openai_error(400, "max_tokens is too large"), InvalidRequest, "max_tokens is too large"),
        (openai_error(401, "Incorrect API key"), InternalError, "rejected the server's API key"),
        (openai_error(429, "Rate limit reached"), RateLimited, "Rate limit reached"),
        (openai_error(500, "The server had an error"), BadGateway, "The server had an error"),
        (openai_error(503, "Model is loading"), Overloaded, "Model is loading"),
        (json_reply(404, {"error": f'model "{MODEL}" not found, try pulling it first'}), NotFound, "not found"),
    ],
)
async def test_upstream_error_statuses(
    backend: OpenAIBackend, upstream: FakeUpstream, reply: Reply, error: type[ExecboxError], says: str
) -> None:
    upstream.add(reply)

    with pytest.raises(error) as caught:
        await events(backend, ask())

    assert says in caught.value.message


@pytest.mark.parametrize(
    ("error", "raised"),
    [
        ({"object": "error", "message": "context too long", "type": "BadRequestError", "code": 400}, InvalidRequest),
        ({"message": "The server had an error", "type": "server_error", "code": None}, BadGateway),
    ],
)
async def test_mid_stream_error_chunk(
    backend: OpenAIBackend, upstream: FakeUpstream, error: dict[str, Any], raised: type[ExecboxError]
) -> None:
    upstream.add(openai_stream(openai_chunk({"content": "Hi"}), {"error": error}))

    with pytest.raises(raised, match=error["message"]):
        await events(backend, ask())


async def test_stream_cut_short_is_an_error(backend: OpenAIBackend, upstream: FakeUpstream) -> None:
    upstream.add(openai_stream(openai_chunk({"content": "Hi"}), done=False))

    with pytest.raises(BadGateway, match="ended its stream"):
        await events(backend, ask())


async def test_upstream_that_hangs_times_out(upstream: FakeUpstream) -> None:
    upstream.add(hang())
    backend = OpenAIBackend(f"{upstream.base_url}/v1", None, [MODEL], timeout=0.3)

    with pytest.raises(UpstreamTimeout):
        await events(backend, ask())
    await backend.aclose()


async def test_count_tokens_is_an_estimate(backend: OpenAIBackend, upstream: FakeUpstream) -> None:
    assert await backend.count_tokens(ask("12345678", system="abcd")) == 3
    assert upstream.requests == []


async def test_serves_the_configured_models(backend: OpenAIBackend) -> None:
    assert backend.serves(MODEL) and backend.serves("llama3")
    assert not backend.serves("claude-sonnet-4-5")
    assert [model.id for model in backend.models()] == [MODEL, "llama3"]
