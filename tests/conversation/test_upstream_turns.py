"""What upstream models get back from the tool loop: their calls and the results, as they made them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from execbox.backends.anthropic import AnthropicBackend
from execbox.backends.openai import OpenAIBackend
from tests.backends.fakes import FakeUpstream, anthropic_reply, openai_reply
from tests.conversation.build import request
from tests.conversation.conftest import MakeConversation

CALLS = [
    {"id": "call_a", "name": "bash_code_execution", "input": {"command": "echo a"}},
    {"id": "call_b", "name": "bash_code_execution", "input": {"command": "echo b"}},
]


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


async def run(make_conversation: MakeConversation, backend: Any, model: str) -> None:
    conversation = make_conversation(backend)
    turn = await conversation.start(request("Run both", model=model), "default")
    message = await turn.complete()
    await backend.aclose()
    assert [block.type for block in message.content] == [
        "server_tool_use", "server_tool_use",
        "bash_code_execution_tool_result", "bash_code_execution_tool_result",
        "text",
    ]


async def test_parallel_calls_go_back_to_claude_as_one_turn(
    make_conversation: MakeConversation, upstream: FakeUpstream
) -> None:
    upstream.add(anthropic_reply(*({"type": "tool_use", **call} for call in CALLS)))
    upstream.add(anthropic_reply({"type": "text", "text": "a and b"}))
    await run(make_conversation, AnthropicBackend("sk-test", upstream.base_url), "claude-sonnet-4-5")

    sent = upstream.requests[1].body["messages"]
    assert [message["role"] for message in sent] == ["user", "assistant", "user"]
    calls, results = sent[1]["content"], sent[2]["content"]
    assert [(block["type"], block["input"]) for block in calls] == [("tool_use", call["input"]) for call in CALLS]
    assert [block["tool_use_id"] for block in results] == [block["id"] for block in calls]
    assert [block["content"] for block in results] == ["stdout:\na\n\nreturn_code: 0", "stdout:\nb\n\nreturn_code: 0"]


async def test_parallel_calls_go_back_to_a_chat_model_as_one_message(
    make_conversation: MakeConversation, upstream: FakeUpstream
) -> None:
    upstream.add(openai_reply(tool_calls=CALLS), openai_reply("a and b"))
    await run(make_conversation, OpenAIBackend(upstream.base_url, models=["local"]), "local")

    sent = upstream.requests[1].body["messages"]
    assert [message["role"] for message in sent] == ["user", "assistant", "tool", "tool"]
    calls = sent[1]["tool_calls"]
    assert [call["function"]["arguments"] for call in calls] == ['{"command": "echo a"}', '{"command": "echo b"}']
    assert [message["tool_call_id"] for message in sent[2:]] == [call["id"] for call in calls]
