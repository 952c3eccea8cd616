"""Programmatic tool calling through the official Python SDK (strict validation), against
a real server: client tools awaited by code in the container's Python session."""

from __future__ import annotations

import time
from typing import Any

import anthropic
import pytest
from anthropic.types import CodeExecutionToolResultBlock, Message, ServerToolUseBlock, ToolUseBlock

MODEL = "execbox-direct"
LOOKUP: Any = {
    "name": "lookup",
    "description": "Looks a key up; returns JSON.",
    "input_schema": {"type": "object", "properties": {"key": {"type": "string"}}, "required": ["key"]},
    "allowed_callers": ["code_execution_20260120"],
}


@pytest.fixture(scope="module")
def client(e2e_url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=e2e_url, api_key="test", max_retries=0, _strict_response_validation=True)


def python(code: str) -> str:
    return f"```python\n{code}\n```\n"


def tools(version: str = "code_execution_20260120") -> list[Any]:
    return [{"type": version, "name": "code_execution"}, LOOKUP]


def paused_calls(response: Message) -> tuple[ServerToolUseBlock, list[ToolUseBlock]]:
    assert response.stop_reason == "tool_use"
    code, *calls = response.content
    assert isinstance(code, ServerToolUseBlock) and code.name == "code_execution"
    for call in calls:
        assert isinstance(call, ToolUseBlock) and call.name == "lookup"
        assert call.caller is not None and call.caller.type == "code_execution_20260120"
        assert call.caller.tool_id == code.id  # type: ignore[union-attr]
    return code, calls  # type: ignore[return-value]


def answer(client: anthropic.Anthropic, prompt: str, first: Message, results: list[dict[str, Any]],
           version: str = "code_execution_20260120", **extra: Any) -> Message:
    assert first.container is not None
    return client.messages.create(
        model=MODEL, max_tokens=1024, tools=tools(version), container=first.container.id,
        messages=[{"role": "user", "content": prompt},
                  {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
                  {"role": "user", "content": results}],
        **extra,
    )


CODE = "import json\nrow = json.loads(await lookup({'key': 'answer'}))\nprint('got', row['value'])"


@pytest.mark.parametrize("version", ["code_execution_20260120", "code_execution_20260521"])
def test_code_awaits_a_client_tool_and_goes_on_with_its_result(client: anthropic.Anthropic, version: str) -> None:
    prompt = python("before = 'kept'") + python(CODE)
    first = client.messages.create(model=MODEL, max_tokens=1024, tools=tools(version),
                                   messages=[{"role": "user", "content": prompt}])
    # The first block ran to its end; the second waits for lookup.
    assert isinstance(first.content[1], CodeExecutionToolResultBlock)
    first_without_done = first.model_copy(update={"content": first.content})
    code = first.content[2]
    assert isinstance(code, ServerToolUseBlock)
    calls = first.content[3:]
    assert first.stop_reason == "tool_use" and len(calls) == 1
    call = calls[0]
    assert isinstance(call, ToolUseBlock) and call.input == {"key": "answer"}
    assert call.caller is not None and call.caller.type == "code_execution_20260120" and call.caller.tool_id == code.id
    final = answer(client, prompt, first_without_done,
                   [{"type": "tool_result", "tool_use_id": call.id, "content": '{"value": 42}'}], version)
    result = final.content[0]
    assert isinstance(result, CodeExecutionToolResultBlock) and result.tool_use_id == code.id
    assert result.content.stdout == "got 42\n" and result.content.return_code == 0  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"


def test_parallel_calls_come_back_together_and_errors_are_text(client: anthropic.Anthropic) -> None:
    code = ("import asyncio\n"
            "a, b = await asyncio.gather(lookup({'key': 'a'}), lookup({'key': 'b'}))\n"
            "print(a, '|', b)")
    prompt = python(code)
    first = client.messages.create(model=MODEL, max_tokens=1024, tools=tools(),
                                   messages=[{"role": "user", "content": prompt}])
    server_call, calls = paused_calls(first)
    assert sorted(c.input["key"] for c in calls) == ["a", "b"]  # type: ignore[index]
    results = [{"type": "tool_result", "tool_use_id": c.id, "content": [{"type": "text", "text": f"value-{c.input['key']}"}]}  # type: ignore[index]
               if c.input["key"] == "a" else  # type: ignore[index]
               {"type": "tool_result", "tool_use_id": c.id, "content": "no such key", "is_error": True}
               for c in calls]
    final = answer(client, prompt, first, results)
    result = final.content[0]
    assert isinstance(result, CodeExecutionToolResultBlock) and result.tool_use_id == server_call.id
    assert result.content.stdout == "value-a | no such key\n"  # type: ignore[union-attr]


def test_a_streamed_pause_and_continuation(client: anthropic.Anthropic) -> None:
    prompt = python(CODE)
    with client.messages.stream(model=MODEL, max_tokens=1024, tools=tools(),
                                messages=[{"role": "user", "content": prompt}]) as stream:
        first = stream.get_final_message()
    _, [call] = paused_calls(first)
    assert call.input == {"key": "answer"}
    assert first.container is not None
    with client.messages.stream(
        model=MODEL, max_tokens=1024, tools=tools(), container=first.container.id,
        messages=[{"role": "user", "content": prompt},
                  {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                                "content": '{"value": 7}'}]}],
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].content.stdout == "got 7\n"  # type: ignore[union-attr]


def test_continuations_that_cannot_be_served_are_refused(client: anthropic.Anthropic) -> None:
    prompt = python(CODE)
    first = client.messages.create(model=MODEL, max_tokens=1024, tools=tools(),
                                   messages=[{"role": "user", "content": prompt}])
    _, [call] = paused_calls(first)
    history = [{"role": "user", "content": prompt},
               {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]}]
    result = {"type": "tool_result", "tool_use_id": call.id, "content": "{}"}
    with pytest.raises(anthropic.BadRequestError, match="container"):
        client.messages.create(model=MODEL, max_tokens=1024, tools=tools(),
                               messages=[*history, {"role": "user", "content": [result]}])
    with pytest.raises(anthropic.BadRequestError, match="no text"):
        answer(client, prompt, first, [result, {"type": "text", "text": "here you go"}])
    # Still waiting after the refusals: the right answer goes through.
    final = answer(client, prompt, first, [{**result, "content": '{"value": 1}'}])
    assert final.content[0].content.stdout == "got 1\n"  # type: ignore[union-attr]


def test_what_code_cannot_call_with_is_refused(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError, match="strict"):
        client.messages.create(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "hi"}],
                               tools=[tools()[0], {**LOOKUP, "strict": True}])
    with pytest.raises(anthropic.BadRequestError, match="disable_parallel_tool_use"):
        client.messages.create(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "hi"}],
                               tools=tools(), tool_choice={"type": "auto", "disable_parallel_tool_use": True})


def test_a_client_that_answers_too_late(start_server) -> None:  # noqa: ANN001
    server = start_server(args=["--tool-wait", "1"])
    client = anthropic.Anthropic(base_url=server.url, api_key="test", max_retries=0, _strict_response_validation=True)
    prompt = python("import json\ntry:\n    await lookup({'key': 'slow'})\nexcept TimeoutError as e:\n    print('gave up:', e)")
    first = client.messages.create(model=MODEL, max_tokens=1024, tools=tools(),
                                   messages=[{"role": "user", "content": prompt}])
    _, [call] = paused_calls(first)
    time.sleep(2)  # past the 1 s the code waits
    final = answer(client, prompt, first, [{"type": "tool_result", "tool_use_id": call.id, "content": "late"}])
    result = final.content[0]
    assert isinstance(result, CodeExecutionToolResultBlock)  # the late answer was dropped, the cell had ended
    assert result.content.stdout == "gave up: Calling tool ['lookup'] timed out (no response after 1s).\n"  # type: ignore[union-attr]
