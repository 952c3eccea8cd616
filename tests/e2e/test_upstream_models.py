"""The ``openai`` and ``anthropic`` model backends through a real server, driven by the SDK.

Each backend's server talks to a scripted fake upstream model (``tests/backends/fakes.py``);
the tool calls the fake makes run in real sandboxes, and what the fake receives next shows
the loop fed the results back.
"""

from __future__ import annotations

import json
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from anthropic.types import BashCodeExecutionResultBlock, Message
from anthropic.types.beta import BetaCodeExecutionResultBlock, BetaMessage

from tests.backends.fakes import (
    FakeUpstream,
    Received,
    Reply,
    anthropic_error,
    anthropic_reply,
    openai_error,
    openai_reply,
)
from tests.conftest import Server, StartServer, _free_port

PYTHON_TOOL: Any = {"type": "code_execution_20250522", "name": "code_execution"}
BASH_TOOL: Any = {"type": "code_execution_20250825", "name": "code_execution"}
CALLER_KEY = "caller-key"  # any key works on these servers; it must never go upstream
ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}


class Upstream(ABC):
    """A fake upstream model of one API flavour, and the execbox server and SDK client using it."""

    model: str
    auth: tuple[str, str]  # the header carrying the operator's upstream key
    client: anthropic.Anthropic
    server: Server

    def __init__(self, fake: FakeUpstream) -> None:
        self.fake = fake

    @property
    def requests(self) -> list[Received]:
        return self.fake.requests

    def add(self, *replies: Reply) -> None:
        self.fake.add(*replies)

    @abstractmethod
    def tool_call(self, name: str, tool_input: dict[str, Any]) -> Reply:
        """A reply calling one tool."""

    @abstractmethod
    def text(self, text: str) -> Reply:
        """A reply that is only text."""

    @abstractmethod
    def error(self, status: int, message: str) -> Reply:
        """An error reply."""

    @abstractmethod
    def tools(self, body: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
        """The tools a request offered: (name, description, input schema)."""

    @abstractmethod
    def tool_calls(self, body: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
        """The earlier tool calls in a request's history: (id, name, input)."""

    @abstractmethod
    def tool_results(self, body: dict[str, Any]) -> list[tuple[str, str]]:
        """The tool results in a request's history: (call id, text)."""

    @abstractmethod
    def user_text(self, body: dict[str, Any]) -> str:
        """All the text of a request's user messages."""


class OpenAIUpstream(Upstream):
    model = "fake-llama"
    auth = ("authorization", "Bearer sk-openai-test")

    def tool_call(self, name: str, tool_input: dict[str, Any]) -> Reply:
        return openai_reply(tool_calls=[{"id": "call_fake", "name": name, "input": tool_input}])

    def text(self, text: str) -> Reply:
        return openai_reply(text)

    def error(self, status: int, message: str) -> Reply:
        return openai_error(status, message)

    def tools(self, body: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
        functions = [tool["function"] for tool in body["tools"]]
        return [(f["name"], f["description"], f["parameters"]) for f in functions]

    def tool_calls(self, body: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
        return [
            (call["id"], call["function"]["name"], json.loads(call["function"]["arguments"]))
            for message in body["messages"]
            if message["role"] == "assistant"
            for call in message.get("tool_calls", [])
        ]

    def tool_results(self, body: dict[str, Any]) -> list[tuple[str, str]]:
        return [(m["tool_call_id"], m["content"]) for m in body["messages"] if m["role"] == "tool"]

    def user_text(self, body: dict[str, Any]) -> str:
        return "\n".join(m["content"] for m in body["messages"] if m["role"] == "user")


class AnthropicUpstream(Upstream):
    model = "claude-opus-4-5-20251101"
    auth = ("x-api-key", "sk-test")

    def tool_call(self, name: str, tool_input: dict[str, Any]) -> Reply:
        return anthropic_reply({"type": "tool_use", "id": "toolu_fake", "name": name, "input": tool_input})

    def text(self, text: str) -> Reply:
        return anthropic_reply({"type": "text", "text": text})

    def error(self, status: int, message: str) -> Reply:
        return anthropic_error(status, ANTHROPIC_ERROR_TYPES.get(status, "api_error"), message)

    def tools(self, body: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
        return [(t["name"], t["description"], t["input_schema"]) for t in body["tools"]]

    def tool_calls(self, body: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
        return [(b["id"], b["name"], b["input"]) for b in self._blocks(body, "assistant", "tool_use")]

    def tool_results(self, body: dict[str, Any]) -> list[tuple[str, str]]:
        return [(b["tool_use_id"], b["content"]) for b in self._blocks(body, "user", "tool_result")]

    def user_text(self, body: dict[str, Any]) -> str:
        return "\n".join(b["text"] for b in self._blocks(body, "user", "text"))

    @staticmethod
    def _blocks(body: dict[str, Any], role: str, kind: str) -> list[dict[str, Any]]:
        return [b for m in body["messages"] if m["role"] == role for b in m["content"] if b["type"] == kind]


@pytest.fixture(scope="module", params=["openai", "anthropic"])
def upstream_server(request: pytest.FixtureRequest, start_server: StartServer) -> Iterator[Upstream]:
    """One fake upstream and one execbox server using it, per backend."""
    with FakeUpstream() as fake:
        if request.param == "openai":
            upstream: Upstream = OpenAIUpstream(fake)
            # The OpenAI convention: the base URL includes the API version.
            env = {
                "EXECBOX_OPENAI_BASE_URL": f"{fake.base_url}/v1",
                "EXECBOX_OPENAI_API_KEY": "sk-openai-test",
                "EXECBOX_OPENAI_MODELS": upstream.model,
            }
        else:
            upstream = AnthropicUpstream(fake)
            env = {"EXECBOX_ANTHROPIC_API_KEY": "sk-test", "EXECBOX_ANTHROPIC_BASE_URL": fake.base_url}
        # The fake listens on 127.0.0.1 in this process: keep any configured proxy out of the way.
        server = start_server(env={**env, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"})
        upstream.client = anthropic.Anthropic(
            base_url=server.url, api_key=CALLER_KEY, max_retries=0, _strict_response_validation=True
        )
        upstream.server = server
        yield upstream
        server.stop()


@pytest.fixture
def upstream(upstream_server: Upstream) -> Upstream:
    """The backend's upstream, its record of requests cleared for the test."""
    upstream_server.requests.clear()
    return upstream_server


def ask(upstream: Upstream, content: Any, tool: Any = BASH_TOOL) -> Message:
    return upstream.client.messages.create(
        model=upstream.model, max_tokens=1024, tools=[tool], messages=[{"role": "user", "content": content}]
    )


def test_python_tool_call_runs_in_a_sandbox_and_its_result_goes_back(upstream: Upstream) -> None:
    upstream.add(upstream.tool_call("code_execution", {"code": "print(6 * 7)"}), upstream.text("It is 42."))
    response = upstream.client.beta.messages.create(
        model=upstream.model,
        max_tokens=1024,
        betas=["code-execution-2025-05-22"],
        tools=[PYTHON_TOOL],
        messages=[{"role": "user", "content": "What is 6 times 7?"}],
    )

    assert isinstance(response, BetaMessage)
    assert [b.type for b in response.content] == ["server_tool_use", "code_execution_tool_result", "text"]
    call, result, answer = response.content
    assert call.type == "server_tool_use" and call.id.startswith("srvtoolu_")
    assert (call.name, call.input) == ("code_execution", {"code": "print(6 * 7)"})
    assert result.type == "code_execution_tool_result" and result.tool_use_id == call.id
    assert isinstance(result.content, BetaCodeExecutionResultBlock)
    assert (result.content.stdout, result.content.stderr, result.content.return_code) == ("42\n", "", 0)
    assert answer.type == "text" and answer.text == "It is 42."
    assert response.stop_reason == "end_turn"
    assert response.usage.server_tool_use is not None

    first, second = upstream.requests
    assert first.body["model"] == upstream.model and first.body["stream"] is True
    assert upstream.tool_calls(second.body) == [(call.id, "code_execution", {"code": "print(6 * 7)"})]
    ((result_id, text),) = upstream.tool_results(second.body)
    assert result_id == call.id
    assert "stdout:\n42\n" in text and "return_code: 0" in text


def test_bash_tool_reads_an_uploaded_file(upstream: Upstream) -> None:
    uploaded = upstream.client.beta.files.upload(file=("numbers.csv", b"x\n17\n25\n", "text/csv"))
    command = "python3 -c \"import pandas as pd; print(pd.read_csv('numbers.csv').x.sum())\""
    upstream.add(upstream.tool_call("bash_code_execution", {"command": command}), upstream.text("The sum is 42."))
    response = ask(
        upstream,
        [{"type": "text", "text": "Add up numbers.csv."}, {"type": "container_upload", "file_id": uploaded.id}],
    )

    assert [b.type for b in response.content] == ["server_tool_use", "bash_code_execution_tool_result", "text"]
    call, result, answer = response.content
    assert call.type == "server_tool_use" and call.name == "bash_code_execution"
    assert result.type == "bash_code_execution_tool_result" and result.tool_use_id == call.id
    assert isinstance(result.content, BashCodeExecutionResultBlock)
    assert (result.content.stdout, result.content.return_code) == ("42\n", 0)
    assert answer.type == "text" and answer.text == "The sum is 42."
    assert response.container is not None

    first, second = upstream.requests
    assert "/workspace/numbers.csv" in upstream.user_text(first.body)
    ((result_id, text),) = upstream.tool_results(second.body)
    assert result_id == call.id and "stdout:\n42\n" in text


def test_streaming_gives_the_same_content(upstream: Upstream) -> None:
    upstream.add(upstream.tool_call("bash_code_execution", {"command": "echo $((6 * 7))"}), upstream.text("42 it is."))
    with upstream.client.messages.stream(
        model=upstream.model,
        max_tokens=1024,
        tools=[BASH_TOOL],
        messages=[{"role": "user", "content": "What is 6 times 7?"}],
    ) as stream:
        events = list(stream)
        response = stream.get_final_message()

    assert [b.type for b in response.content] == ["server_tool_use", "bash_code_execution_tool_result", "text"]
    call, result, answer = response.content
    assert call.type == "server_tool_use" and call.input == {"command": "echo $((6 * 7))"}
    assert result.type == "bash_code_execution_tool_result" and result.tool_use_id == call.id
    assert isinstance(result.content, BashCodeExecutionResultBlock) and result.content.stdout == "42\n"
    assert answer.type == "text" and answer.text == "42 it is."
    assert response.stop_reason == "end_turn"

    starts = [e.content_block.type for e in events if e.type == "content_block_start"]
    assert starts == ["server_tool_use", "bash_code_execution_tool_result", "text"]
    text_deltas = [e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta"]
    assert "".join(text_deltas) == "42 it is." and len(text_deltas) > 1  # relayed as the upstream sent it
    ((result_id, text),) = upstream.tool_results(upstream.requests[1].body)
    assert result_id == call.id and "stdout:\n42\n" in text


def test_a_follow_up_turn_sees_the_history_and_the_container(upstream: Upstream) -> None:
    create = {"command": "create", "path": "notes.txt", "file_text": "remember 42\n"}
    upstream.add(upstream.tool_call("text_editor_code_execution", create), upstream.text("Noted."))
    first = ask(upstream, "Write a note.")
    assert [b.type for b in first.content] == ["server_tool_use", "text_editor_code_execution_tool_result", "text"]
    assert first.content[1].content.type == "text_editor_code_execution_create_result"  # type: ignore[union-attr]
    assert first.container is not None

    upstream.requests.clear()
    upstream.add(upstream.tool_call("bash_code_execution", {"command": "cat notes.txt"}), upstream.text("It says 42."))
    second = upstream.client.messages.create(
        model=upstream.model,
        max_tokens=1024,
        tools=[BASH_TOOL],
        container=first.container.id,
        messages=[
            {"role": "user", "content": "Write a note."},
            {"role": "assistant", "content": first.content},  # type: ignore[typeddict-item]
            {"role": "user", "content": "What does it say?"},
        ],
    )
    result = second.content[1]
    assert result.type == "bash_code_execution_tool_result"
    assert isinstance(result.content, BashCodeExecutionResultBlock) and result.content.stdout == "remember 42\n"

    # The earlier server tool call and result reach the upstream as a client tool call and result.
    call_id = first.content[0].id  # type: ignore[union-attr]
    history = upstream.requests[0].body
    assert upstream.tool_calls(history) == [(call_id, "text_editor_code_execution", create)]
    assert upstream.tool_results(history) == [(call_id, "File created.")]


@pytest.mark.parametrize(
    ("tool", "required"),
    [
        (PYTHON_TOOL, {"code_execution": ["code"]}),
        (BASH_TOOL, {"bash_code_execution": ["command"], "text_editor_code_execution": ["command", "path"]}),
    ],
    ids=["20250522", "20250825"],
)
def test_the_upstream_gets_the_server_tools_and_the_operators_key(
    upstream: Upstream, tool: Any, required: dict[str, list[str]]
) -> None:
    upstream.add(upstream.text("Nothing to run."))
    response = ask(upstream, "Hello", tool)
    assert [b.type for b in response.content] == ["text"]

    (request,) = upstream.requests
    header, key = upstream.auth
    assert request.headers[header] == key
    assert not any(CALLER_KEY in value for value in request.headers.values())
    tools = upstream.tools(request.body)
    assert {name: schema["required"] for name, _, schema in tools} == required
    assert [name for name, _, _ in tools] == list(required)
    _, description, schema = tools[0]
    assert set(schema["properties"]) == set(required[tools[0][0]])  # `code` or `command`, nothing else
    assert "/workspace" in description and "$OUTPUT_DIR" in description


def test_models_lists_the_backend_models(upstream: Upstream) -> None:
    listed = [model.id for model in upstream.client.models.list(limit=100)]
    assert upstream.model in listed and "execbox-direct" in listed
    assert upstream.client.models.retrieve(upstream.model).id == upstream.model
    assert upstream.requests == []  # the list is the server's own, not asked upstream


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (429, anthropic.RateLimitError),
        (529, anthropic.OverloadedError),
        (400, anthropic.BadRequestError),
    ],
)
def test_upstream_errors_reach_the_caller(upstream: Upstream, status: int, error: type[Exception]) -> None:
    upstream.add(upstream.error(status, f"upstream said no ({status})"))
    with pytest.raises(error) as raised:
        ask(upstream, "Hello")
    assert isinstance(raised.value, anthropic.APIStatusError) and raised.value.status_code == status
    assert f"upstream said no ({status})" in raised.value.body["error"]["message"]  # type: ignore[index]


def test_upstream_errors_reach_a_streaming_caller(upstream: Upstream) -> None:
    upstream.add(upstream.error(429, "slow down"))
    with pytest.raises(anthropic.RateLimitError) as raised:
        with upstream.client.messages.stream(
            model=upstream.model, max_tokens=1024, tools=[BASH_TOOL], messages=[{"role": "user", "content": "Hi"}]
        ) as stream:
            stream.get_final_message()
    assert "slow down" in raised.value.body["error"]["message"]  # type: ignore[index]


def test_a_rejected_upstream_key_is_the_servers_fault(upstream: Upstream) -> None:
    upstream.add(upstream.error(401, "invalid x-api-key"))
    with pytest.raises(anthropic.InternalServerError) as raised:
        ask(upstream, "Hello")
    assert raised.value.status_code == 500
    message = raised.value.body["error"]["message"]  # type: ignore[index]
    assert "rejected the server's API key" in message and "invalid x-api-key" in message


def _active_containers(server: Server) -> int:
    with sqlite3.connect(server.data_dir / "execbox.db") as db:
        return db.execute("SELECT count(*) FROM containers WHERE status = 'active'").fetchone()[0]


@pytest.mark.parametrize("status", [500, 502])
def test_a_failing_upstream_is_a_bad_gateway_and_frees_the_new_container(upstream: Upstream, status: int) -> None:
    before = _active_containers(upstream.server)
    upstream.add(upstream.error(status, "upstream broke"))
    with pytest.raises(anthropic.InternalServerError) as raised:
        ask(upstream, "Hello")
    assert raised.value.status_code == 502 and raised.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    assert "upstream broke" in raised.value.body["error"]["message"]  # type: ignore[index]
    assert _active_containers(upstream.server) == before, "the request's container was not left for its TTL"


def test_an_unreachable_upstream_is_a_bad_gateway(start_server: StartServer) -> None:
    closed = f"http://127.0.0.1:{_free_port()}"  # nothing listens there: connection refused
    server = start_server(env={"EXECBOX_ANTHROPIC_API_KEY": "sk-test", "EXECBOX_ANTHROPIC_BASE_URL": closed,
                               "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"})
    client = anthropic.Anthropic(base_url=server.url, api_key=CALLER_KEY, max_retries=0)
    with pytest.raises(anthropic.InternalServerError) as raised:
        client.messages.create(model="claude-opus-4-5-20251101", max_tokens=100, tools=[BASH_TOOL],
                               messages=[{"role": "user", "content": "Hi"}])
    assert raised.value.status_code == 502
    assert "Cannot connect to the upstream model" in raised.value.body["error"]["message"]  # type: ignore[index]
    assert _active_containers(server) == 0
    assert "released container" in server.log_tail()
    server.stop()
