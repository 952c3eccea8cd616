"""Message threads: create, continue with only the new messages, and every refusal."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from execbox.conversation.loop import Conversation
from execbox.conversation.thread_store import ThreadStore
from execbox.errors import (
    ContainerNotFound,
    ExecboxError,
    InvalidRequest,
    ThreadAlreadyContinued,
    ThreadContinueInFlight,
    ThreadFingerprintMismatch,
    ThreadNotFound,
    ThreadUnsupportedRequest,
)
from tests.conversation.build import request
from tests.conversation.conftest import MakeConversation
from tests.conversation.fakes import ScriptedBackend
from tests.conversation.test_loop import SH, run, types

LOOKUP = {"name": "lookup", "description": "Look a word up.", "input_schema": {"type": "object"}}
CREATE = {"type": "create"}


def follow(message: dict[str, Any]) -> dict[str, Any]:
    return {"type": "continue", "previous_message_id": message["id"]}


def reply(call_id: str, text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id, "content": text}]}]


async def test_a_client_tool_turn_continues_with_only_the_tool_result(conversation: Conversation) -> None:
    prompt = SH.format("echo before") + '```tool lookup\n{"word": "box"}\n```\n' + SH.format("echo after")
    first = await run(conversation, request(prompt, tools=[LOOKUP], system="Be brief.", thread=CREATE))
    assert first["stop_reason"] == "tool_use"
    call = first["content"][-1]
    # No history, no tools, no system: the thread has them (and the container).
    second = await run(
        conversation, request(None, tool=None, messages=reply(call["id"], "a box"), thread=follow(first))
    )
    assert types(second) == ["server_tool_use", "bash_code_execution_tool_result", "text"]
    assert second["content"][-1]["text"] == "after\n"
    assert second["container"]["id"] == first["container"]["id"]


async def test_the_model_sees_the_stored_conversation_system_and_tools(make_conversation: MakeConversation) -> None:
    model = ScriptedBackend([("call", "lookup", '{"word": "box"}')], [("text", "done")])
    conversation = make_conversation(model)
    first = await run(conversation, request("look it up", tools=[LOOKUP], system="Be brief.", thread=CREATE))
    call_id = first["content"][0]["id"]
    await run(conversation, request(None, tool=None, messages=reply(call_id, "a box"), thread=follow(first)))
    seen = model.requests[-1]
    assert seen.system == "Be brief."
    assert [spec.name for spec in seen.tools if not spec.server] == ["lookup"]
    assert [m["role"] for m in seen.messages] == ["user", "assistant", "user"]
    assert seen.messages[0]["content"] == "look it up"
    assert seen.messages[2]["content"][0]["content"] == "a box"


async def test_an_empty_continue_resumes_a_paused_turn(make_conversation: MakeConversation) -> None:
    conversation = make_conversation(max_tool_iterations=1)
    prompt = SH.format("echo one") + SH.format("echo two")
    first = await run(conversation, request(prompt, thread=CREATE))
    assert first["stop_reason"] == "pause_turn"
    second = await run(conversation, request(None, tool=None, messages=[], thread=follow(first)))
    assert types(second) == ["server_tool_use", "bash_code_execution_tool_result"]
    assert second["content"][-1]["content"]["stdout"] == "two\n" and second["stop_reason"] == "pause_turn"
    last = await run(conversation, request(None, tool=None, messages=[], thread=follow(second)))
    assert types(last) == ["text"] and last["content"][0]["text"] == "two\n"
    second = last
    # An empty list continues nothing else.
    with pytest.raises(InvalidRequest, match="only resumes a `pause_turn`"):
        await conversation.start(request(None, tool=None, messages=[], thread=follow(second)), "default")
    # ... and that refusal did not use up the response: it can still be continued.
    more = [{"role": "user", "content": SH.format("echo three")}]
    third = await run(conversation, request(None, tool=None, messages=more, thread=follow(second)))
    assert third["content"][-1]["content"]["stdout"] == "three\n"


async def test_empty_messages_need_a_thread_continue() -> None:
    with pytest.raises(ValueError, match="at least one message"):
        request(None, messages=[])
    with pytest.raises(ValueError, match="at least one message"):
        request(None, messages=[], thread=CREATE)


def code_of(failure: pytest.ExceptionInfo[ExecboxError]) -> tuple[int, str]:
    return failure.value.status, failure.value.details["error_code"]


async def test_a_response_is_continued_once(conversation: Conversation, thread_store: ThreadStore) -> None:
    first = await run(conversation, request(SH.format("echo hi"), thread=CREATE))
    follow_up = [{"role": "user", "content": SH.format("echo again")}]
    # While one continue runs, another from the same response is refused...
    running = await conversation.start(request(None, tool=None, messages=follow_up, thread=follow(first)), "default")
    assert thread_store.state(first["id"]) == "in_flight"
    with pytest.raises(ThreadContinueInFlight) as failure:
        await conversation.start(request(None, tool=None, messages=follow_up, thread=follow(first)), "default")
    assert code_of(failure) == (400, "thread_continue_in_flight")
    second = (await running.complete()).model_dump(mode="json")
    assert second["content"][-1]["text"] == "again\n"
    # ... and once it is stored, the response is used up.
    assert thread_store.state(first["id"]) == "continued"
    with pytest.raises(ThreadAlreadyContinued) as failure:
        await conversation.start(request(None, tool=None, messages=follow_up, thread=follow(first)), "default")
    assert code_of(failure) == (400, "thread_already_continued")
    assert thread_store.state(second["id"]) == "open"


async def test_unknown_foreign_and_expired_threads_are_not_found(make_conversation: MakeConversation) -> None:
    conversation = make_conversation(thread_ttl=0.5)
    first = await run(conversation, request(SH.format("echo hi"), thread=CREATE))
    more = [{"role": "user", "content": "hi"}]
    for message_id, workspace in (("msg_unknown", "default"), (first["id"], "other-team")):
        with pytest.raises(ThreadNotFound) as failure:
            await conversation.start(
                request(None, tool=None, messages=more, thread={"type": "continue", "previous_message_id": message_id}),
                workspace,
            )
        assert code_of(failure) == (404, "thread_not_found")
    await asyncio.sleep(0.6)
    with pytest.raises(ThreadNotFound):
        await conversation.start(request(None, tool=None, messages=more, thread=follow(first)), "default")


async def test_a_continue_cannot_send_system_or_tools(conversation: Conversation, thread_store: ThreadStore) -> None:
    first = await run(conversation, request(SH.format("echo hi"), thread=CREATE))
    more = [{"role": "user", "content": "hi"}]
    with pytest.raises(ThreadFingerprintMismatch, match="`system` and `tools`") as failure:
        await conversation.start(request(None, messages=more, system="Other.", thread=follow(first)), "default")
    assert code_of(failure) == (400, "thread_fingerprint_mismatch")
    assert thread_store.state(first["id"]) == "open"  # refused before anything happened


async def test_a_failed_continue_gives_its_claim_back(conversation: Conversation, thread_store: ThreadStore) -> None:
    first = await run(conversation, request(SH.format("echo hi"), thread=CREATE))
    more = [{"role": "user", "content": SH.format("echo later")}]
    with pytest.raises(ContainerNotFound):
        await conversation.start(
            request(None, tool=None, messages=more, container="container_nope", thread=follow(first)), "default"
        )
    assert thread_store.state(first["id"]) == "open"
    later = await run(conversation, request(None, tool=None, messages=more, thread=follow(first)))
    assert later["content"][-1]["text"] == "later\n"


async def test_a_plain_request_stores_nothing(conversation: Conversation, thread_store: ThreadStore) -> None:
    message = await run(conversation, request("hi", tool=None))
    assert thread_store.state(message["id"]) is None
    with pytest.raises(ThreadNotFound):
        await conversation.start(request(None, tool=None, messages=[], thread=follow(message)), "default")


async def test_switched_off_threads_are_unsupported_requests(make_conversation: MakeConversation) -> None:
    conversation = make_conversation(message_threads=False)
    for thread in (CREATE, {"type": "continue", "previous_message_id": "msg_x"}):
        with pytest.raises(ThreadUnsupportedRequest) as failure:
            await conversation.start(request("hi", thread=thread), "default")
        assert code_of(failure) == (400, "thread_unsupported_request")


async def test_expired_thread_state_is_deleted(make_conversation: MakeConversation, thread_store: ThreadStore) -> None:
    conversation = make_conversation(thread_ttl=0.2)
    first = await run(conversation, request("hi", tool=None, thread=CREATE))
    assert thread_store.state(first["id"]) == "open"
    await asyncio.sleep(0.3)
    sweeper = asyncio.create_task(conversation.threads.sweep_forever(0.05))
    await asyncio.sleep(0.3)
    sweeper.cancel()
    assert thread_store.state(first["id"]) is None


async def test_a_continue_abandoned_mid_stream_gives_its_claim_back(
    conversation: Conversation, thread_store: ThreadStore
) -> None:
    first = await run(conversation, request("hi", thread=CREATE))
    more = [{"role": "user", "content": SH.format("echo later")}]
    turn = await conversation.start(request(None, tool=None, messages=more, thread=follow(first)), "default")
    events = turn.events()
    await anext(events)  # the response has started: the client then leaves
    await events.aclose()  # type: ignore[attr-defined]
    assert thread_store.state(first["id"]) == "open"
    assert thread_store.state(turn.message.id) is None  # nothing half-done was stored
    later = await run(conversation, request(None, tool=None, messages=more, thread=follow(first)))
    assert later["content"][-1]["text"] == "later\n"
