"""The tool loop: model -> server tool call -> sandbox -> result -> model, within one request."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

from execbox.backends.base import BlockStart, BlockStop, InputDelta, ModelEvent, ModelRequest, TurnStop
from execbox.conversation.loop import Conversation
from execbox.errors import ContainerExpired, ContainerNotFound, FileNotFound, InvalidRequest, Overloaded
from execbox.files.store import FileStore
from execbox.protocol.messages import CountTokensParams
from tests.conversation.build import request
from tests.conversation.conftest import MakeConversation
from tests.conversation.fakes import FakeContainers, ScriptedBackend

BASH = "code_execution_20250825"
PY = "```python\n{}\n```\n"
SH = "```bash\n{}\n```\n"


async def run(conversation: Conversation, params: Any, workspace: str = "default") -> dict[str, Any]:
    turn = await conversation.start(params, workspace)
    message = await turn.complete()
    return message.model_dump(mode="json")


def types(message: dict[str, Any]) -> list[str]:
    return [block["type"] for block in message["content"]]


async def test_python_tool_runs_each_block_and_answers_with_the_last_output(conversation: Conversation) -> None:
    message = await run(
        conversation, request(PY.format("print(6 * 7)") + PY.format("print('done')"), "code_execution_20250522")
    )

    assert types(message) == [
        "server_tool_use",
        "code_execution_tool_result",
        "server_tool_use",
        "code_execution_tool_result",
        "text",
    ]
    call, result = message["content"][0], message["content"][1]
    assert call["id"].startswith("srvtoolu_") and call["name"] == "code_execution"
    assert call["input"] == {"code": "print(6 * 7)\n"}
    assert result["tool_use_id"] == call["id"]
    assert result["content"] == {
        "type": "code_execution_result",
        "stdout": "42\n",
        "stderr": "",
        "return_code": 0,
        "content": [],
    }
    assert message["content"][-1]["text"] == "done\n"
    assert message["stop_reason"] == "end_turn"
    assert message["container"]["id"].startswith("container_")
    assert message["usage"]["server_tool_use"]["code_execution_requests"] == 2
    assert message["usage"]["server_tool_use"]["web_search_requests"] == 0
    assert message["usage"]["input_tokens"] > 0 and message["usage"]["output_tokens"] > 0


async def test_bash_tool_runs_python_bash_and_text_editor_calls(conversation: Conversation) -> None:
    prompt = (
        PY.format("print('from python')")
        + SH.format("echo from bash")
        + "```create notes.txt\nfirst line\n```\n"
        + "```str_replace notes.txt\nfirst\n=====\nsecond\n```\n"
        + "```view notes.txt\n```\n"
    )
    message = await run(conversation, request(prompt))

    calls = [block for block in message["content"] if block["type"] == "server_tool_use"]
    assert [call["name"] for call in calls] == ["bash_code_execution"] * 2 + ["text_editor_code_execution"] * 3
    results = [block["content"] for block in message["content"] if block["type"].endswith("_tool_result")]
    assert results[0]["stdout"] == "from python\n" and results[0]["type"] == "bash_code_execution_result"
    assert results[1]["stdout"] == "from bash\n"
    assert results[2] == {"type": "text_editor_code_execution_create_result", "is_file_update": False}
    assert results[3]["type"] == "text_editor_code_execution_str_replace_result"
    assert results[4]["type"] == "text_editor_code_execution_view_result"
    assert results[4]["content"] == "second line\n"
    assert message["content"][-1] == {"type": "text", "text": "second line\n", "citations": None}


@pytest.mark.parametrize("version", ["code_execution_20260120", "code_execution_20260521"])
async def test_newer_versions_are_aliases_of_20250825(conversation: Conversation, version: str) -> None:
    message = await run(conversation, request(SH.format("echo hi"), version))
    assert message["content"][0]["name"] == "bash_code_execution"
    assert message["content"][1]["content"]["stdout"] == "hi\n"


async def test_a_non_zero_exit_is_a_normal_result(conversation: Conversation) -> None:
    message = await run(conversation, request(SH.format("echo oops >&2; exit 3")))
    assert message["content"][1]["content"] == {
        "type": "bash_code_execution_result",
        "stdout": "",
        "stderr": "oops\n",
        "return_code": 3,
        "content": [],
    }
    assert message["content"][-1]["text"] == "oops\n"


async def test_files_written_to_output_dir_come_back_as_file_ids(conversation: Conversation, files: FileStore) -> None:
    code = "import os\nopen(os.path.join(os.environ['OUTPUT_DIR'], 'report.txt'), 'w').write('hello')"
    for version, output_type in (
        ("code_execution_20250522", "code_execution_output"),
        ("code_execution_20250825", "bash_code_execution_output"),
    ):
        message = await run(conversation, request(PY.format(code), version))
        outputs = message["content"][1]["content"]["content"]
        assert [output["type"] for output in outputs] == [output_type]
        record = files.get("default", outputs[0]["file_id"])
        assert record.filename == "report.txt" and record.downloadable
        assert files.path("default", record.id).read_bytes() == b"hello"


async def test_an_oversized_output_file(conversation: Conversation) -> None:
    code = "import os\nopen(os.path.join(os.environ['OUTPUT_DIR'], 'big.bin'), 'wb').write(b'x' * 5000)\nprint('wrote')"
    bash = await run(conversation, request(PY.format(code)))
    assert bash["content"][1]["content"] == {
        "type": "bash_code_execution_tool_result_error",
        "error_code": "output_file_too_large",
    }
    # The Python tool has no such error code: the result stays, without the file.
    python = await run(conversation, request(PY.format(code), "code_execution_20250522"))
    assert python["content"][1]["content"]["stdout"] == "wrote\n"
    assert python["content"][1]["content"]["content"] == []


@pytest.mark.parametrize(
    ("naming", "code"), [("sdk", "execution_time_exceeded"), ("legacy", "code_execution_exceeded")]
)
async def test_a_timeout_is_an_error_result(
    make_conversation: MakeConversation, containers: FakeContainers, naming: str, code: str
) -> None:
    containers.timeout_s = 0.3
    message = await run(
        make_conversation(tool_error_names=naming), request(SH.format("sleep 5"), "code_execution_20250522")
    )
    assert message["content"][1]["content"] == {"type": "code_execution_tool_result_error", "error_code": code}
    assert message["stop_reason"] == "end_turn"


async def test_text_editor_errors_keep_their_code_and_message(conversation: Conversation) -> None:
    message = await run(conversation, request("```view missing.txt\n```\n"))
    assert message["content"][1]["content"] == {
        "type": "text_editor_code_execution_tool_result_error",
        "error_code": "file_not_found",
        "error_message": "missing.txt",
    }


async def test_invalid_tool_input_is_reported_to_the_model(make_conversation: MakeConversation) -> None:
    model = ScriptedBackend(
        [
            ("call", "bash_code_execution", '{"cmd": "ls"}'),
            ("call", "text_editor_code_execution", '{"command": "delete", "path": "a"}'),
        ],
        [("call", "bash_code_execution", "not json")],
        [("text", "sorry")],
    )
    message = await run(make_conversation(model), request("go"))
    errors = [block["content"] for block in message["content"] if block["type"].endswith("_tool_result")]
    assert errors == [
        {"type": "bash_code_execution_tool_result_error", "error_code": "invalid_tool_input"},
        {
            "type": "text_editor_code_execution_tool_result_error",
            "error_code": "invalid_tool_input",
            "error_message": "`command` must be view, create or str_replace, not 'delete'",
        },
        {"type": "bash_code_execution_tool_result_error", "error_code": "invalid_tool_input"},
    ]
    assert message["content"][-1]["text"] == "sorry"
    # The model, unlike the client, is told why.
    seen = [block["content"] for block in model.requests[-1].messages[-1]["content"] if "tool_use_id" in block]
    assert [content.get("error_message") for content in seen] == [
        "`command` must be a string",
        "`command` must be view, create or str_replace, not 'delete'",
        "`command` must be a string",
    ]


@pytest.mark.parametrize(("naming", "code"), [("sdk", "unavailable"), ("legacy", "container_expired")])
async def test_a_container_expiring_mid_turn(
    make_conversation: MakeConversation, containers: FakeContainers, naming: str, code: str
) -> None:
    class ExpiringContainers(FakeContainers):
        async def execute(self, workspace: str, container_id: str, request: Any) -> Any:
            self.expired.add(container_id)
            return await super().execute(workspace, container_id, request)

    containers.__class__ = ExpiringContainers
    message = await run(make_conversation(tool_error_names=naming), request(SH.format("echo hi")))
    assert message["content"][1]["content"] == {"type": "bash_code_execution_tool_result_error", "error_code": code}


async def test_a_container_is_reused_with_its_files(conversation: Conversation) -> None:
    first = await run(conversation, request(SH.format("echo 42 > number.txt")))
    container_id = first["container"]["id"]
    second = await run(conversation, request(SH.format("cat number.txt"), container=container_id))
    assert second["container"]["id"] == container_id
    assert second["content"][1]["content"]["stdout"] == "42\n"
    third = await run(conversation, request(SH.format("cat number.txt"), container={"id": container_id}))
    assert third["content"][-1]["text"] == "42\n"


async def test_unknown_expired_and_foreign_containers_are_refused(
    conversation: Conversation, containers: FakeContainers
) -> None:
    with pytest.raises(ContainerNotFound):
        await conversation.start(request("hi", container="container_nope"), "default")
    mine = await containers.create("default")
    with pytest.raises(ContainerNotFound):
        await conversation.start(request("hi", container=mine.id), "other-team")
    containers.expired.add(mine.id)
    with pytest.raises(ContainerExpired):
        await conversation.start(request("hi", container=mine.id), "default")


async def test_without_the_code_tool_there_is_no_container(
    conversation: Conversation, containers: FakeContainers
) -> None:
    message = await run(conversation, request(PY.format("print(1)"), tool=None))
    assert message["container"] is None
    assert types(message) == ["text"]
    assert containers.containers == {}


async def test_container_uploads_are_copied_in_before_the_turn(conversation: Conversation, files: FileStore) -> None:
    upload = files.create("default", "data.csv", io.BytesIO(b"a,b\n1,2\n"))
    content = [{"type": "text", "text": SH.format("cat data.csv")}, {"type": "container_upload", "file_id": upload.id}]
    message = await run(conversation, request(content))
    assert message["content"][1]["content"]["stdout"] == "a,b\n1,2\n"


async def test_the_model_is_told_where_uploads_are(make_conversation: MakeConversation, files: FileStore) -> None:
    model = ScriptedBackend([("text", "seen")])
    earlier = files.create("default", "old.txt", io.BytesIO(b"old"))
    upload = files.create("default", "data.csv", io.BytesIO(b"a,b\n"))
    messages = [
        {"role": "user", "content": [{"type": "container_upload", "file_id": earlier.id}]},
        {"role": "assistant", "content": "ok"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Analyze this"}, {"type": "container_upload", "file_id": upload.id}],
        },
    ]
    await run(make_conversation(model), request(None, messages=messages))
    seen = model.requests[0].messages
    assert seen[0]["content"][1] == {
        "type": "text",
        "text": f"(The file {earlier.id} is in the container at /workspace/old.txt.)",
    }
    assert seen[2]["content"][2] == {
        "type": "text",
        "text": f"(The file {upload.id} is in the container at /workspace/data.csv.)",
    }


async def test_upload_records_are_read_off_the_event_loop(
    make_conversation: MakeConversation, files: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    earlier = files.create("default", "old.txt", io.BytesIO(b"old"))
    upload = files.create("default", "data.csv", io.BytesIO(b"a,b\n"))
    readers: list[threading.Thread] = []
    get = files.get

    def reading_get(workspace: str, file_id: str) -> Any:
        readers.append(threading.current_thread())
        return get(workspace, file_id)

    monkeypatch.setattr(files, "get", reading_get)
    messages = [
        {"role": "user", "content": [{"type": "container_upload", "file_id": earlier.id}]},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "container_upload", "file_id": upload.id}]},
    ]
    await make_conversation(ScriptedBackend([("text", "seen")])).start(request(None, messages=messages), "default")
    assert len(readers) == 3  # the loop reads both uploads, the containers the one it copies in
    assert threading.main_thread() not in readers


async def test_an_unknown_upload_fails_before_any_work(conversation: Conversation, containers: FakeContainers) -> None:
    content = [{"type": "text", "text": "hi"}, {"type": "container_upload", "file_id": "file_nope"}]
    with pytest.raises(FileNotFound):
        await conversation.start(request(content), "default")
    assert containers.containers == {}
    with pytest.raises(InvalidRequest, match="code execution tool"):
        await conversation.start(request(content, tool=None), "default")


async def test_pause_turn_and_continuation(make_conversation: MakeConversation) -> None:
    conversation = make_conversation(max_tool_iterations=2)
    prompt = "".join(SH.format(f"echo step {n}") for n in range(1, 4))
    first = await run(conversation, request(prompt))
    # Two executions: the turn pauses right after the second result, with no call pending.
    assert first["stop_reason"] == "pause_turn"
    assert types(first) == ["server_tool_use", "bash_code_execution_tool_result"] * 2
    assert [b["content"]["stdout"] for b in first["content"] if b["type"].endswith("_result")] == [
        "step 1\n",
        "step 2\n",
    ]

    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": first["content"]}]
    second = await run(conversation, request(None, messages=messages, container=first["container"]["id"]))
    assert types(second) == ["server_tool_use", "bash_code_execution_tool_result", "text"]
    assert second["content"][1]["content"]["stdout"] == "step 3\n"
    assert second["stop_reason"] == "end_turn"


async def test_a_pause_waits_for_the_rest_of_a_steps_calls(make_conversation: MakeConversation) -> None:
    model = ScriptedBackend(
        [
            ("call", "bash_code_execution", '{"command": "echo a"}'),
            ("call", "bash_code_execution", '{"command": "echo b"}'),
        ],
        [("text", "all done")],
    )
    conversation = make_conversation(model, max_tool_iterations=1)
    first = await run(conversation, request("go"))
    # Calls the model made together all run before the pause, so none is left pending.
    assert types(first) == [
        "server_tool_use", "server_tool_use", "bash_code_execution_tool_result", "bash_code_execution_tool_result"
    ]
    assert first["stop_reason"] == "pause_turn"

    messages = [{"role": "user", "content": "go"}, {"role": "assistant", "content": first["content"]}]
    second = await run(conversation, request(None, messages=messages, container=first["container"]["id"]))
    assert types(second) == ["text"] and second["content"][0]["text"] == "all done"


async def test_a_paused_call_sent_back_pending_runs_first(make_conversation: MakeConversation) -> None:
    # Responses of earlier versions paused with a call pending; a client sends it back as is
    # (here in two assistant messages, as a client appending each response would).
    conversation = make_conversation(max_tool_iterations=5)
    prompt = SH.format("echo a") + SH.format("echo b")
    first = await run(make_conversation(max_tool_iterations=1), request(prompt))
    call = {"type": "server_tool_use", "id": "srvtoolu_pending", "name": "bash_code_execution",
            "input": {"command": "echo b"}}
    messages = [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": first["content"]},
        {"role": "assistant", "content": [call]},
    ]
    second = await run(conversation, request(None, messages=messages, container=first["container"]["id"]))
    assert types(second)[0] == "bash_code_execution_tool_result"
    assert second["content"][0]["tool_use_id"] == "srvtoolu_pending"
    assert second["content"][0]["content"]["stdout"] == "b\n"


async def test_client_tools_interleave_with_server_tools(conversation: Conversation) -> None:
    tools = [{"name": "lookup", "description": "Look a word up.", "input_schema": {"type": "object"}}]
    prompt = SH.format("echo before") + '```tool lookup\n{"word": "sandbox"}\n```\n' + SH.format("echo after")
    first = await run(conversation, request(prompt, tools=tools))
    assert types(first) == ["server_tool_use", "bash_code_execution_tool_result", "tool_use"]
    call = first["content"][2]
    assert call["id"].startswith("toolu_") and call == {**call, "name": "lookup", "input": {"word": "sandbox"}}
    assert first["stop_reason"] == "tool_use"

    messages = [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": first["content"]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": "a box"}]},
    ]
    second = await run(conversation, request(None, messages=messages, tools=tools, container=first["container"]["id"]))
    assert types(second) == ["server_tool_use", "bash_code_execution_tool_result", "text"]
    assert second["content"][-1]["text"] == "after\n"


async def test_a_server_call_after_a_client_call_stays_pending(make_conversation: MakeConversation) -> None:
    model = ScriptedBackend(
        [
            ("call", "bash_code_execution", '{"command": "echo first"}'),
            ("call", "lookup", "{}"),
            ("call", "bash_code_execution", '{"command": "echo second"}'),
        ],
        [("text", "finished")],
    )
    conversation = make_conversation(model)
    tools = [{"name": "lookup", "input_schema": {"type": "object"}}]
    first = await run(conversation, request("go", tools=tools))
    # Results follow the model's blocks: only the call before the client call has run.
    assert types(first) == ["server_tool_use", "tool_use", "server_tool_use", "bash_code_execution_tool_result"]
    assert first["content"][3]["tool_use_id"] == first["content"][0]["id"]
    assert first["stop_reason"] == "tool_use"

    messages = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": first["content"]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": first["content"][1]["id"], "content": "ok"}],
        },
    ]
    second = await run(conversation, request(None, messages=messages, tools=tools, container=first["container"]["id"]))
    assert types(second) == ["bash_code_execution_tool_result", "text"]
    assert second["content"][0]["tool_use_id"] == first["content"][2]["id"]
    assert second["content"][0]["content"]["stdout"] == "second\n"
    # The model saw its three calls together, as it made them, then the server results.
    seen = model.requests[-1].messages
    assert [b["type"] for b in seen[1]["content"]] == [
        "server_tool_use",
        "tool_use",
        "server_tool_use",
        "bash_code_execution_tool_result",
        "bash_code_execution_tool_result",
    ]
    assert seen[2]["content"][0]["type"] == "tool_result"


@pytest.mark.parametrize(
    ("tool", "call", "text"),
    [
        # No code execution tool, another version's tool, a server tool execbox does not run.
        (None, {"type": "server_tool_use", "name": "bash_code_execution", "input": {}}, "bash_code_execution"),
        (BASH, {"type": "server_tool_use", "name": "code_execution", "input": {}}, "code_execution"),
        (BASH, {"type": "server_tool_use", "name": "web_search", "input": {}}, "web_search"),
        # A client call must be answered before the turn can go on.
        (BASH, {"type": "tool_use", "name": "lookup", "input": {}}, "tool_result"),
    ],
)
async def test_unanswered_calls_that_cannot_be_resumed_are_refused(
    conversation: Conversation, containers: FakeContainers, tool: str | None, call: dict[str, Any], text: str
) -> None:
    messages = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [{**call, "id": "call_1"}]},
        # A reply that answers some other call: the turn goes on with call_1 still open.
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_2", "content": "ok"}]},
    ]
    tools = [{"name": "lookup", "input_schema": {"type": "object"}}]
    with pytest.raises(InvalidRequest, match=f"call_1.*{text}"):
        await conversation.start(request(None, tool, messages=messages, tools=tools), "default")
    assert containers.containers == {}


async def test_max_tokens(conversation: Conversation, containers: FakeContainers) -> None:
    prewarm = await run(conversation, request(PY.format("print(1)"), max_tokens=0))
    assert prewarm["content"] == [] and prewarm["stop_reason"] == "max_tokens"
    assert prewarm["usage"]["input_tokens"] > 0
    assert containers.executed == []

    cut = await run(conversation, request(SH.format("echo " + "x" * 100), max_tokens=3 + 40))
    assert cut["stop_reason"] == "max_tokens"


class CutShort(ScriptedBackend):
    """A model that runs out of tokens in the middle of a tool call's input."""

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        yield BlockStart(kind="tool_use", name="bash_code_execution")
        yield InputDelta('{"command": "echo hi", "args": [1, 2')
        yield BlockStop()
        yield TurnStop("max_tokens", 10, 20)


async def test_max_tokens_in_the_middle_of_a_call(
    make_conversation: MakeConversation, containers: FakeContainers
) -> None:
    turn = await make_conversation(CutShort()).start(request("go"), "default")
    deltas = [event.delta.partial_json async for event in turn.events() if event.type == "content_block_delta"]
    assert turn.message.stop_reason == "max_tokens"
    (call,) = turn.message.content
    # What the SDKs make of the streamed pieces: the input so far, without the cut-off item.
    assert "".join(deltas) == '{"command": "echo hi", "args": [1, 2'
    assert call.input == {"command": "echo hi", "args": [1, 2]}  # type: ignore[union-attr]
    assert containers.executed == []


async def test_stop_sequences(conversation: Conversation) -> None:
    message = await run(conversation, request(SH.format("echo 'alpha STOP beta'"), stop_sequences=["STOP"]))
    assert message["content"][-1]["text"] == "alpha "
    assert message["stop_reason"] == "stop_sequence" and message["stop_sequence"] == "STOP"


async def test_stream_events_follow_the_wire_sequence(conversation: Conversation) -> None:
    turn = await conversation.start(request(SH.format("echo hi")), "default")
    events = [event.model_dump(mode="json") async for event in turn.events()]
    kinds = [(e["type"], e.get("content_block", {}).get("type") or e.get("delta", {}).get("type")) for e in events]

    assert kinds[0] == ("message_start", None)
    assert events[0]["message"]["content"] == [] and events[0]["message"]["stop_reason"] is None
    assert kinds[1] == ("content_block_start", "server_tool_use")
    assert events[1]["content_block"]["input"] == {}
    json_deltas = [e for e in events if e.get("delta", {}).get("type") == "input_json_delta"]
    assert len(json_deltas) >= 2
    assert "".join(d["delta"]["partial_json"] for d in json_deltas) == '{"command": "echo hi\\n"}'
    result_start = kinds.index(("content_block_start", "bash_code_execution_tool_result"))
    assert kinds[result_start + 1] == ("content_block_stop", None)
    assert kinds[-2:] == [("message_delta", None), ("message_stop", None)]
    delta = events[-2]
    assert delta["delta"]["stop_reason"] == "end_turn" and delta["delta"]["container"]["id"]
    assert delta["usage"] == turn.message.model_dump(mode="json")["usage"]
    indexes = [e["index"] for e in events if e["type"] == "content_block_start"]
    assert indexes == list(range(len(turn.message.content)))


async def test_message_start_reports_the_first_model_calls_input_tokens(conversation: Conversation) -> None:
    turn = await conversation.start(request(SH.format("echo hi")), "default")
    events = [event.model_dump(mode="json") async for event in turn.events()]
    started, final = events[0]["message"]["usage"], events[-2]["usage"]
    # Two model calls: the prompt's count first, the total of both calls at the end.
    assert turn.model_calls == 2
    assert 0 < started["input_tokens"] < final["input_tokens"]
    assert started["output_tokens"] == 0
    assert final == turn.message.model_dump(mode="json")["usage"]


async def test_streamed_and_plain_responses_agree(conversation: Conversation) -> None:
    turn = await conversation.start(request(SH.format("echo same")), "default")
    rebuilt = accumulate([event.model_dump(mode="json") async for event in turn.events()])
    assert rebuilt == {**turn.message.model_dump(mode="json"), "usage": rebuilt["usage"]}
    assert rebuilt["usage"] == turn.message.model_dump(mode="json")["usage"]


def accumulate(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Rebuild a message from its events, the way the SDKs do."""
    message: dict[str, Any] = {}
    partial: dict[int, str] = {}
    for event in events:
        if event["type"] == "message_start":
            message = event["message"]
        elif event["type"] == "content_block_start":
            message["content"].append(event["content_block"])
        elif event["type"] == "content_block_delta":
            block, delta = message["content"][event["index"]], event["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            else:
                partial[event["index"]] = partial.get(event["index"], "") + delta["partial_json"]
                block["input"] = json.loads(partial[event["index"]]) if _complete(partial[event["index"]]) else {}
        elif event["type"] == "message_delta":
            message.update(event["delta"])
            message["usage"] = event["usage"]
    return message


def _complete(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


async def test_a_model_failure_mid_turn_ends_the_event_stream(conversation: Conversation) -> None:
    turn = await conversation.start(request(SH.format("echo hi") + "```error 529\nOverloaded\n```\n"), "default")
    seen: list[str] = []
    with pytest.raises(Overloaded, match="Overloaded"):
        async for event in turn.events():
            seen.append(event.type)
    assert seen[0] == "message_start" and "content_block_stop" in seen


async def test_client_tools_may_not_take_server_tool_names(conversation: Conversation) -> None:
    tools = [{"name": "bash_code_execution", "input_schema": {"type": "object"}}]
    with pytest.raises(InvalidRequest, match="rename"):
        await conversation.start(request("hi", tools=tools), "default")


async def test_a_forced_tool_choice_applies_to_the_first_model_call(make_conversation: MakeConversation) -> None:
    model = ScriptedBackend([("call", "bash_code_execution", '{"command": "echo hi"}')], [("text", "done")])
    choice = {"type": "tool", "name": "code_execution"}
    await run(make_conversation(model), request("go", tool_choice=choice))
    assert [r.tool_choice for r in model.requests] == [
        {"type": "tool", "name": "bash_code_execution"},
        {"type": "auto"},
    ]


async def test_count_tokens_includes_the_tools(conversation: Conversation) -> None:
    bare = CountTokensParams.model_validate({"model": "execbox-direct", "messages": [{"role": "user", "content": "hi"}]})
    with_tool = CountTokensParams.model_validate(
        {
            **bare.model_dump(exclude_unset=True),
            "tools": [{"type": "code_execution_20250825", "name": "code_execution"}],
        }
    )
    assert 0 < await conversation.count_tokens(bare) < await conversation.count_tokens(with_tool)
