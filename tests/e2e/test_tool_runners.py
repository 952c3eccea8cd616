"""The Python SDK's tool runner (``client.beta.messages.tool_runner``, anthropic 2.12) against a
real server, in its default mode: message threads.

The runner's first request carries ``thread: {"type": "create"}`` and the whole history; each
later one only the messages after the last response, under
``thread: {"type": "continue", ...}``, without ``tools`` or ``system`` (after a
``pause_turn``: no message at all). The direct model runs the fenced blocks of the first user
message, so a right answer at the end shows the server had the whole conversation.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import pytest
from anthropic import beta_tool
from anthropic.types.thread_already_continued_error import ThreadAlreadyContinuedError
from anthropic.types.thread_not_found_error import ThreadNotFoundError

from tests.conftest import StartServer
from tests.e2e.servers import MAX_TOOL_ITERATIONS

BASH_TOOL: Any = {"type": "code_execution_20250825", "name": "code_execution"}
looked_up: list[str] = []


@beta_tool
def lookup(word: str) -> str:
    """Look a word up in the dictionary.

    Args:
        word: the word to look up.
    """
    looked_up.append(word)
    return f"{word}: a container for things"


def recording_client(url: str) -> tuple[anthropic.Anthropic, list[dict[str, Any]]]:
    """A strict client, and the JSON bodies of the Messages requests it sends."""
    bodies: list[dict[str, Any]] = []

    def record(request: Any) -> None:
        if request.url.path.endswith("/v1/messages"):
            bodies.append(json.loads(request.read()))

    http = anthropic.DefaultHttpxClient(event_hooks={"request": [record]})
    client = anthropic.Anthropic(
        base_url=url, api_key="test", max_retries=0, _strict_response_validation=True, http_client=http
    )
    return client, bodies


def fence(language: str, code: str) -> str:
    return f"```{language}\n{code}\n```\n"


def test_tool_runner_threads_a_client_tool_between_code_executions(e2e_url: str) -> None:
    client, bodies = recording_client(e2e_url)
    prompt = fence("bash", "echo before > note.txt") + fence("tool lookup", '{"word": "box"}') + fence(
        "bash", "cat note.txt; echo after"
    )
    runner = client.beta.messages.tool_runner(
        model="execbox-direct",
        max_tokens=2048,
        system="Answer briefly.",
        tools=[BASH_TOOL, lookup],
        messages=[{"role": "user", "content": prompt}],
    )
    final = runner.until_done()
    assert final.stop_reason == "end_turn"
    assert final.content[-1].text == "before\nafter\n"  # type: ignore[union-attr]
    assert "box" in looked_up

    first, second = bodies
    assert first["thread"] == {"type": "create"} and "tools" in first and "system" in first
    assert second["thread"]["type"] == "continue"
    assert "tools" not in second and "system" not in second
    [reply] = second["messages"]  # only the tool result
    assert [block["type"] for block in reply["content"]] == ["tool_result"]
    assert second["container"] == final.container.id  # type: ignore[union-attr]


def test_tool_runner_resumes_a_paused_turn_with_no_messages(e2e_url: str) -> None:
    client, bodies = recording_client(e2e_url)
    prompt = "".join(fence("bash", f"echo step {n}") for n in range(1, MAX_TOOL_ITERATIONS + 2))
    runner = client.beta.messages.tool_runner(
        model="execbox-direct", max_tokens=2048, tools=[BASH_TOOL], messages=[{"role": "user", "content": prompt}]
    )
    replies = list(runner)
    assert [reply.stop_reason for reply in replies] == ["pause_turn", "end_turn"]
    assert replies[-1].content[-1].text == f"step {MAX_TOOL_ITERATIONS + 1}\n"  # type: ignore[union-attr]
    assert bodies[1]["thread"] == {"type": "continue", "previous_message_id": replies[0].id}
    assert bodies[1]["messages"] == []


def test_tool_runner_without_threads(e2e_url: str) -> None:
    client, bodies = recording_client(e2e_url)
    prompt = fence("tool lookup", '{"word": "cup"}') + fence("bash", "echo unthreaded")
    runner = client.beta.messages.tool_runner(
        model="execbox-direct",
        max_tokens=2048,
        tools=[BASH_TOOL, lookup],
        messages=[{"role": "user", "content": prompt}],
        thread=False,
    )
    assert runner.until_done().content[-1].text == "unthreaded\n"  # type: ignore[union-attr]
    assert all("thread" not in body for body in bodies) and len(bodies[-1]["messages"]) == 3


def test_tool_runner_falls_back_when_threads_are_off(start_server: StartServer) -> None:
    server = start_server(env={"EXECBOX_MESSAGE_THREADS": "false"})
    client, bodies = recording_client(server.url)
    prompt = fence("tool lookup", '{"word": "lid"}') + fence("bash", "echo done")
    runner = client.beta.messages.tool_runner(
        model="execbox-direct", max_tokens=2048, tools=[BASH_TOOL, lookup], messages=[{"role": "user", "content": prompt}]
    )
    final = runner.until_done()
    assert final.content[-1].text == "done\n"  # type: ignore[union-attr]
    # Refused with `thread_unsupported_request`, the runner sent the same turn without a thread,
    # and the rest of the conversation in full.
    assert bodies[0]["thread"] == {"type": "create"}
    assert all("thread" not in body for body in bodies[1:])
    assert len(bodies[-1]["messages"]) == 3
    server.stop()


def test_thread_errors_are_the_sdk_exceptions(e2e_url: str) -> None:
    client = anthropic.Anthropic(base_url=e2e_url, api_key="test", max_retries=0, _strict_response_validation=True)
    created = client.beta.messages.create(
        model="execbox-direct",
        max_tokens=100,
        messages=[{"role": "user", "content": "hi"}],
        thread={"type": "create"},
    )
    follow: Any = {"type": "continue", "previous_message_id": created.id}
    more: Any = [{"role": "user", "content": "again"}]
    client.beta.messages.create(model="execbox-direct", max_tokens=100, messages=more, thread=follow)
    with pytest.raises(ThreadAlreadyContinuedError):
        client.beta.messages.create(model="execbox-direct", max_tokens=100, messages=more, thread=follow)
    with pytest.raises(ThreadNotFoundError):
        client.beta.messages.create(
            model="execbox-direct",
            max_tokens=100,
            messages=more,
            thread={"type": "continue", "previous_message_id": "msg_gone"},
        )
