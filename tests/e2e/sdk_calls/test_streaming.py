"""Streamed responses through the official SDK (2.x and 1.1)."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest
from anthropic.types import (
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawContentBlockStopEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStopEvent,
)

from tests.e2e.servers import MAX_TOOL_ITERATIONS

BASH_TOOL: Any = {"type": "code_execution_20250825", "name": "code_execution"}
PROMPT = "```python\nprint('streamed', 6 * 7)\n```\n```bash\necho second\n```"


@pytest.fixture(scope="module")
def client(e2e_url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=e2e_url, api_key="test", max_retries=0, _strict_response_validation=True)


def request(prompt: str = PROMPT) -> dict[str, Any]:
    return {
        "model": "execbox-direct",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": prompt}],
        "tools": [BASH_TOOL],
    }


def shape(message: Any) -> list[dict[str, Any]]:
    """A message's content without its generated ids."""
    blocks = []
    for block in message.content:
        data = block.model_dump(exclude={"id", "tool_use_id", "parsed_output", "caller"})
        blocks.append(data)
    return blocks


def test_the_final_streamed_message_matches_the_plain_one(client: anthropic.Anthropic) -> None:
    plain = client.beta.messages.create(**request())
    with client.beta.messages.stream(**request()) as stream:
        streamed = stream.get_final_message()
    assert shape(streamed) == shape(plain)
    call = streamed.content[0]
    assert call.type == "server_tool_use" and isinstance(call.input, dict) and "python3" in call.input["command"]
    assert streamed.container is not None and streamed.container.id.startswith("container_")
    assert (streamed.stop_reason, streamed.stop_sequence) == ("end_turn", None)
    assert streamed.usage.input_tokens == plain.usage.input_tokens
    assert streamed.usage.output_tokens == plain.usage.output_tokens
    assert streamed.content[-1].text == "second\n"  # type: ignore[union-attr]


def test_streamed_pause_and_client_tool_turns(client: anthropic.Anthropic) -> None:
    lookup: Any = {"name": "lookup", "input_schema": {"type": "object"}}
    runs = "".join(f"```bash\necho {n}\n```\n" for n in range(MAX_TOOL_ITERATIONS + 1))
    prompt = runs + '```tool lookup\n{"word": "box"}\n```\n```bash\necho last\n```'
    messages: Any = [{"role": "user", "content": prompt}]

    def turn(**fields: Any) -> Any:
        params = {**request(), "messages": messages, "tools": [BASH_TOOL, lookup], **fields}
        with client.messages.stream(**params) as stream:
            starts = [event.index for event in stream if event.type == "content_block_start"]
            response = stream.get_final_message()
        assert starts == list(range(len(response.content)))  # each response counts its blocks from 0
        messages.append({"role": "assistant", "content": response.content})
        return response

    paused = turn()
    assert paused.stop_reason == "pause_turn"
    resumed = turn(container=paused.container.id)
    # The turn paused right after a result; the model goes on with the last run, then the client tool.
    assert paused.content[-1].type == "bash_code_execution_tool_result"
    assert [b.type for b in resumed.content] == ["server_tool_use", "bash_code_execution_tool_result", "tool_use"]
    assert resumed.content[1].content.stdout == f"{MAX_TOOL_ITERATIONS}\n"
    assert (resumed.stop_reason, resumed.content[2].input) == ("tool_use", {"word": "box"})
    reply = {"type": "tool_result", "tool_use_id": resumed.content[2].id, "content": "a box"}
    messages.append({"role": "user", "content": [reply]})
    answered = turn(container=paused.container.id)
    assert answered.stop_reason == "end_turn" and answered.content[-1].text == "last\n"
    assert answered.container is not None and answered.container.id == paused.container.id


def test_raw_events(client: anthropic.Anthropic) -> None:
    events = list(client.messages.create(**request(), stream=True))
    kinds = {type(event) for event in events}
    assert kinds == {
        RawMessageStartEvent,
        RawContentBlockStartEvent,
        RawContentBlockDeltaEvent,
        RawContentBlockStopEvent,
        RawMessageDeltaEvent,
        RawMessageStopEvent,
    }
    assert isinstance(events[0], RawMessageStartEvent) and isinstance(events[-1], RawMessageStopEvent)
    starts = [e for e in events if isinstance(e, RawContentBlockStartEvent)]
    assert [e.index for e in starts] == list(range(len(starts)))
    assert [e.content_block.type for e in starts] == [
        "server_tool_use",
        "bash_code_execution_tool_result",
        "server_tool_use",
        "bash_code_execution_tool_result",
        "text",
    ]
    delta = next(e for e in events if isinstance(e, RawMessageDeltaEvent))
    assert delta.delta.stop_reason == "end_turn" and delta.delta.container is not None


def test_a_failure_mid_stream_raises(client: anthropic.Anthropic) -> None:
    prompt = "```bash\necho first\n```\n```error 529\nThe model is overloaded.\n```"
    seen = []
    with pytest.raises(anthropic.APIStatusError, match="overloaded") as failure:
        for event in client.messages.create(**request(prompt), stream=True):
            seen.append(event.type)
    assert seen[0] == "message_start" and "content_block_stop" in seen
    assert failure.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
