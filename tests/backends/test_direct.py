"""The built-in ``direct`` model: fenced blocks in, tool calls and answers out."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from execbox.backends.base import (
    BlockStart,
    InputDelta,
    InputTokens,
    ModelEvent,
    ModelRequest,
    TextDelta,
    ToolSpec,
    TurnStop,
)
from execbox.backends.direct import NO_CODE, DirectBackend, approximate_tokens
from execbox.conversation.tools import server_tools
from execbox.errors import InvalidRequest, Overloaded

PYTHON_TOOLS = server_tools("code_execution_20250522")
BASH_TOOLS = server_tools("code_execution_20250825")
LOOKUP = ToolSpec(name="lookup", input_schema={"type": "object"})


def ask(prompt: str, tools: list[ToolSpec], *later: dict[str, Any], **fields: Any) -> ModelRequest:
    messages = [{"role": "user", "content": prompt}, *later]
    return ModelRequest(
        model="claude-opus-4-20250514",
        messages=messages,
        max_tokens=fields.pop("max_tokens", 1000),
        tools=tools,
        **fields,
    )


async def events(request: ModelRequest) -> list[ModelEvent]:
    """The turn's events after the input token count, which comes first and matches the final one."""
    seen = [event async for event in DirectBackend().stream(request)]
    assert seen[0] == InputTokens(seen[-1].input_tokens)  # type: ignore[union-attr]
    return seen[1:]


async def call(request: ModelRequest) -> tuple[str | None, dict[str, Any]]:
    """The single tool call the model makes (name, input)."""
    seen = await events(request)
    assert isinstance(seen[-1], TurnStop) and seen[-1].stop_reason == "tool_use"
    start = seen[0]
    assert isinstance(start, BlockStart) and start.kind == "tool_use"
    pieces = [e.partial_json for e in seen if isinstance(e, InputDelta)]
    assert len(pieces) >= 2
    return start.name, json.loads("".join(pieces))


async def answer(request: ModelRequest) -> tuple[str, TurnStop]:
    seen = await events(request)
    assert isinstance(seen[0], BlockStart) and seen[0].kind == "text"
    stop = seen[-1]
    assert isinstance(stop, TurnStop)
    return "".join(e.text for e in seen if isinstance(e, TextDelta)), stop


def result(stdout: str, stderr: str = "", return_code: int = 0) -> dict[str, Any]:
    return {
        "type": "bash_code_execution_tool_result",
        "tool_use_id": "srvtoolu_1",
        "content": {
            "type": "bash_code_execution_result",
            "stdout": stdout,
            "stderr": stderr,
            "return_code": return_code,
            "content": [],
        },
    }


def assistant(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "content": list(blocks)}


CALL = {"type": "server_tool_use", "id": "srvtoolu_1", "name": "bash_code_execution", "input": {}}


def test_it_serves_exactly_the_ids_it_lists() -> None:
    backend = DirectBackend()
    assert [m.id for m in backend.models()] == ["execbox-direct"]
    assert backend.serves("execbox-direct") and not backend.serves("claude-opus-4-20250514")
    aliased = DirectBackend(aliases=["claude-opus-4-20250514", "execbox-direct", "claude-opus-4-20250514"])
    assert [m.id for m in aliased.models()] == ["execbox-direct", "claude-opus-4-20250514"]
    assert aliased.serves("claude-opus-4-20250514") and not aliased.serves("gpt-4o")


@pytest.mark.parametrize("info", ["python", "py", ""])
async def test_python_blocks_with_the_python_tool(info: str) -> None:
    assert await call(ask(f"Please:\n```{info}\nprint(1)\n```", PYTHON_TOOLS)) == (
        "code_execution",
        {"code": "print(1)\n"},
    )


async def test_bash_blocks_with_the_python_tool_run_through_subprocess() -> None:
    name, tool_input = await call(ask("```sh\necho hi | tr a-z A-Z\n```", PYTHON_TOOLS))
    assert name == "code_execution"
    ran = subprocess.run(["python3", "-c", tool_input["code"]], capture_output=True, text=True)
    assert ran.stdout == "HI\n"


async def test_python_blocks_with_the_bash_tool_run_from_a_heredoc() -> None:
    code = 's = """\nEXECBOX_PY\n"""\nprint(s.strip())\n'  # a line equal to the usual delimiter
    name, tool_input = await call(ask(f"```python\n{code}```", BASH_TOOLS))
    assert name == "bash_code_execution"
    ran = subprocess.run(["bash", "-c", tool_input["command"]], capture_output=True, text=True)
    assert (ran.stdout, ran.stderr) == ("EXECBOX_PY\n", "")


async def test_text_editor_blocks() -> None:
    prompt = (
        "```create notes/a.txt\nhello\n```\n"
        "```view notes/a.txt\n```\n"
        "```str_replace notes/a.txt\nhello\n=====\nbye\n```"
    )
    calls = []
    later: list[dict[str, Any]] = []
    for _ in range(3):
        name, tool_input = await call(ask(prompt, BASH_TOOLS, *later))
        calls.append((name, tool_input))
        later = [assistant(*[block for m in later for block in m["content"]], CALL, result(""))]
    assert calls == [
        ("text_editor_code_execution", {"command": "create", "path": "notes/a.txt", "file_text": "hello\n"}),
        ("text_editor_code_execution", {"command": "view", "path": "notes/a.txt"}),
        (
            "text_editor_code_execution",
            {"command": "str_replace", "path": "notes/a.txt", "old_str": "hello", "new_str": "bye"},
        ),
    ]


async def test_it_resumes_after_the_calls_already_made_and_answers_with_the_last_output() -> None:
    prompt = "```bash\necho one\n```\n```bash\necho two\n```"
    assert await call(ask(prompt, BASH_TOOLS, assistant(CALL, result("one\n")))) == (
        "bash_code_execution",
        {"command": "echo two\n"},
    )
    text, stop = await answer(ask(prompt, BASH_TOOLS, assistant(CALL, result("one\n"), CALL, result("two\n"))))
    assert (text, stop.stop_reason) == ("two\n", "end_turn")
    failed, _ = await answer(ask("```bash\nfalse\n```", BASH_TOOLS, assistant(CALL, result("out", "boom", 1))))
    assert failed == "boom"


async def test_without_runnable_blocks_it_says_what_it_does() -> None:
    assert (await answer(ask("What is 2+2?", BASH_TOOLS)))[0] == NO_CODE
    assert (await answer(ask("```python\nprint(1)\n```", [])))[0] == NO_CODE
    assert (await answer(ask("```create a.txt\nx\n```", PYTHON_TOOLS)))[0] == NO_CODE
    assert (await answer(ask("```python\nprint(1)\n```", BASH_TOOLS, tool_choice={"type": "none"})))[0] == NO_CODE


async def test_client_tool_blocks() -> None:
    prompt = '```tool lookup\n{"word": "box"}\n```'
    assert await call(ask(prompt, [*BASH_TOOLS, LOOKUP])) == ("lookup", {"word": "box"})
    assert (await answer(ask(prompt, BASH_TOOLS)))[0] == NO_CODE
    reply = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "a container"}]}
    used = assistant({"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}})
    assert (await answer(ask(prompt, [LOOKUP], used, reply)))[0] == "a container"
    with pytest.raises(InvalidRequest, match="JSON"):
        await events(ask("```tool lookup\nnot json\n```", [LOOKUP]))


async def test_error_blocks_fail_like_an_upstream_model() -> None:
    with pytest.raises(Overloaded, match="busy"):
        await events(ask("```error 529\nbusy\n```", BASH_TOOLS))


async def test_max_tokens_and_stop_sequences() -> None:
    done = assistant(CALL, result("a" * 100 + " END more"))
    text, stop = await answer(ask("```bash\nx\n```", BASH_TOOLS, done, max_tokens=5))
    assert (text, stop.stop_reason) == ("a" * 20, "max_tokens")
    text, stop = await answer(ask("```bash\nx\n```", BASH_TOOLS, done, stop_sequences=["END", "more"]))
    assert (text, stop.stop_reason, stop.stop_sequence) == ("a" * 100 + " ", "stop_sequence", "END")


async def test_text_streams_in_small_chunks() -> None:
    done = assistant(CALL, result("x" * 100))
    seen = await events(ask("```bash\nx\n```", BASH_TOOLS, done))
    assert len([e for e in seen if isinstance(e, TextDelta)]) > 2


async def test_token_counts_are_deterministic() -> None:
    request = ask("hello", BASH_TOOLS)
    count = await DirectBackend().count_tokens(request)
    assert count == await DirectBackend().count_tokens(ask("hello", BASH_TOOLS))
    assert count > await DirectBackend().count_tokens(ask("hello", []))
    assert approximate_tokens("abcde") == 2
    stop = (await events(request))[-1]
    assert isinstance(stop, TurnStop) and stop.input_tokens == count
