"""The TypeScript SDK (``@anthropic-ai/sdk``, the release ``run.sh`` installs) against real servers.

Each test runs one scenario of ``typescript/scenarios.cjs`` with node and checks what it
saw: the tool runner in its default (thread) mode with a client tool and code execution and
with a ``pause_turn``, threads by hand, strict validation, container errors, and every field
the SDK's types declare (read from the installed ``.d.ts`` files) in every response and event.
Skipped, saying why, when node is not installed; set-up (``./run.sh setup``) installs the SDK.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.servers import CONTAINER_TTL_S, MAX_TOOL_ITERATIONS

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = Path(__file__).with_name("typescript") / "scenarios.cjs"
TS_SDK_VERSION = re.search(r"^TS_SDK_VERSION=(\S+)", (ROOT / "run.sh").read_text(), re.MULTILINE).group(1)  # type: ignore[union-attr]
NODE_MODULES = ROOT / ".venv" / f"node-sdk-{TS_SDK_VERSION}" / "node_modules"
SDK = NODE_MODULES / "@anthropic-ai" / "sdk"

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (the TypeScript SDK needs it)")


def scenario(name: str, e2e_url: str, **env: str) -> dict[str, Any]:
    assert (SDK / "package.json").exists(), f"{SDK} is missing: run ./run.sh setup"
    run = subprocess.run(
        ["node", str(SCENARIOS), name],
        env={**os.environ, "NODE_PATH": str(NODE_MODULES), "E2E_URL": e2e_url,
             "MAX_TOOL_ITERATIONS": str(MAX_TOOL_ITERATIONS), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, f"node {name} failed:\n{run.stderr}"
    return json.loads(run.stdout)


def test_the_installed_sdk_is_the_pinned_release() -> None:
    assert json.loads((SDK / "package.json").read_text())["version"] == TS_SDK_VERSION


def test_tool_runner_threads_a_client_tool_between_code_executions(e2e_url: str) -> None:
    seen = scenario("runner_client_tool", e2e_url)
    final, bodies = seen["final"], seen["bodies"]
    assert final["stop_reason"] == "end_turn" and final["content"][-1]["text"] == "before\nafter\n"
    assert seen["looked"] == ["box"]
    first, second = bodies
    assert first["thread"] == {"type": "create"} and "tools" in first and first["system"] == "Answer briefly."
    assert second["thread"]["type"] == "continue" and "tools" not in second and "system" not in second
    [reply] = second["messages"]
    assert [block["type"] for block in reply["content"]] == ["tool_result"]
    assert second["container"] == final["container"]["id"]


def test_tool_runner_resumes_a_paused_turn(e2e_url: str) -> None:
    seen = scenario("runner_pause", e2e_url)
    replies, bodies = seen["replies"], seen["bodies"]
    assert [reply["stop_reason"] for reply in replies] == ["pause_turn", "end_turn"]
    assert replies[-1]["content"][-1]["text"] == f"step {MAX_TOOL_ITERATIONS + 1}\n"
    assert bodies[1]["thread"] == {"type": "continue", "previous_message_id": replies[0]["id"]}
    assert bodies[1]["messages"] == []


def test_threads_create_and_continue(e2e_url: str) -> None:
    seen = scenario("threads", e2e_url)
    assert seen["second"]["content"][-1]["text"] == "two\n"
    assert seen["second"]["container"]["id"] == seen["first"]["container"]["id"]  # the thread's container
    for key, status, code, exception in (
        ("again", 400, "thread_already_continued", "ThreadAlreadyContinuedError"),
        ("lost", 404, "thread_not_found", "ThreadNotFoundError"),
        ("repeated", 400, "thread_fingerprint_mismatch", "ThreadFingerprintMismatchError"),
    ):
        assert (seen[key]["status"], seen[key]["name"]) == (status, exception)
        assert seen[key]["body"]["error"]["details"]["error_code"] == code


def test_strict_validation(e2e_url: str) -> None:
    seen = scenario("strictness", e2e_url)
    expected = {
        "topLevel": "response_format: Extra inputs are not permitted",
        "nested": "messages.0.name: Extra inputs are not permitted",
        "noVersion": "anthropic-version: header is required",
        "badVersion": 'anthropic-version: "2023-10-01" is not a valid version',
    }
    for key, message in expected.items():
        assert (seen[key]["name"], seen[key]["status"]) == ("BadRequestError", 400)
        assert seen[key]["body"]["error"] == {"type": "invalid_request_error", "message": message}
    assert seen["oldVersion"]["type"] == "message"


def test_container_errors(e2e_url: str, expiring_url: str) -> None:
    seen = scenario(
        "containers", e2e_url, E2E_EXPIRING_URL=expiring_url, CONTAINER_TTL_S=str(CONTAINER_TTL_S)
    )
    for key in ("unknown", "unknownObject", "expired"):
        failure = seen[key]
        assert (failure["name"], failure["status"], failure["shouldRetry"]) == ("NotFoundError", 404, "false")
        assert failure["body"]["error"]["type"] == "not_found_error"
        assert failure["body"]["error"]["message"].startswith("Container not found")
    assert "expired" in seen["expired"]["body"]["error"]["message"]


# --- every declared field -------------------------------------------------------------------

# Objects whose type the wire does not name: (type, field) -> the field's type.
FIELD_TYPES = {
    ("Message", "usage"): "Usage",
    ("Message", "container"): "Container",
    ("Usage", "server_tool_use"): "ServerToolUsage",
    ("Usage", "cache_creation"): "CacheCreation",
    ("RawMessageStartEvent", "message"): "Message",
    ("RawMessageDeltaEvent", "usage"): "MessageDeltaUsage",
    ("RawMessageDeltaEvent", "delta"): "RawMessageDeltaEvent.Delta",
    ("RawMessageDeltaEvent.Delta", "container"): "Container",
    ("MessageDeltaUsage", "server_tool_use"): "ServerToolUsage",
}
EVENT_TYPES = {
    "message_start": "RawMessageStartEvent",
    "message_delta": "RawMessageDeltaEvent",
    "message_stop": "RawMessageStopEvent",
    "content_block_start": "RawContentBlockStartEvent",
    "content_block_delta": "RawContentBlockDeltaEvent",
    "content_block_stop": "RawContentBlockStopEvent",
}


@cache
def declarations(beta: bool) -> str:
    path = SDK / "resources" / ("beta/messages/messages.d.ts" if beta else "messages/messages.d.ts")
    return path.read_text()


@cache
def declared_fields(type_name: str, beta: bool) -> dict[str, bool] | None:
    """The fields the SDK's ``.d.ts`` declares without ``?`` for ``type_name`` (``A`` or
    ``A.B`` for an interface in namespace A), each mapped to whether it may be null; None if
    the file has no such interface."""
    text = declarations(beta)
    outer, _, inner = type_name.partition(".")
    if inner:
        start = text.find(f"export declare namespace {outer} {{")
        if start < 0:
            return None
        start = text.find(f"\n    interface {inner} {{", start)
        indent, end_marker = " " * 8, "\n    }"
    else:
        start = text.find(f"\nexport interface {outer} {{")
        indent, end_marker = " " * 4, "\n}"
    if start < 0:
        return None
    body = text[start : text.find(end_marker, start + 1)]
    return {
        match.group(1): "null" in match.group(2)
        for match in re.finditer(rf"^{indent}(\w+): (.*);$", body, re.MULTILINE)
    }


def type_for(kind: str, beta: bool) -> str:
    """The SDK's interface for a wire ``type``: ``bash_code_execution_result`` ->
    ``BashCodeExecutionResultBlock`` (or without ``Block``), ``Beta``-prefixed for beta."""
    camel = "".join(part.upper() if part == "json" else part.capitalize() for part in kind.split("_"))
    prefix = "Beta" if beta else ""
    for candidate in (camel, f"{camel}Block", f"{camel}Event", f"{camel}Caller", f"{camel}Object"):
        if declared_fields(prefix + candidate, beta) is not None:
            return candidate
    raise AssertionError(f"no type in the SDK's declarations for {kind!r}")


def missing_fields(value: dict[str, Any], type_name: str, beta: bool, where: str) -> list[str]:
    """Where ``value`` (of ``type_name``), or an object inside it, lacks a declared field or
    is null where the type does not allow it."""
    fields = declared_fields(("Beta" if beta else "") + type_name, beta)
    assert fields is not None, f"{type_name} is not declared"
    problems = []
    for field, nullable in fields.items():
        if field not in value:
            problems.append(f"{where}: {type_name}.{field} is missing")
        elif value[field] is None and not nullable:
            problems.append(f"{where}: {type_name}.{field} is null")
    for field, item in value.items():
        items = item if isinstance(item, list) else [item]
        for i, child in enumerate(items):
            if not isinstance(child, dict):
                continue
            inner = FIELD_TYPES.get((type_name, field))
            if inner is None and "type" in child:
                inner = type_for(child["type"], beta)
            if inner is not None:
                problems += missing_fields(child, inner, beta, f"{where}.{field}" + (f".{i}" if item is items else ""))
    return problems


def test_every_field_the_types_declare_is_present(e2e_url: str) -> None:
    seen = scenario("fields", e2e_url)
    kinds = {block["type"] for message in seen["messages"] for block in message["content"]}
    assert {"text", "tool_use", "server_tool_use", "bash_code_execution_tool_result",
            "text_editor_code_execution_tool_result", "code_execution_tool_result"} <= kinds
    problems = []
    for i, message in enumerate(seen["messages"]):
        problems += missing_fields(message, "Message", False, f"messages.{i}")
    for i, message in enumerate([*seen["betaMessages"], seen["streamed"]]):
        problems += missing_fields(message, "Message", True, f"betaMessages.{i}")
    for beta, events in ((False, seen["events"]), (True, seen["betaEvents"])):
        assert {event["type"] for event in events} >= set(EVENT_TYPES) - {"content_block_delta"} | {"message_delta"}
        for i, event in enumerate(events):
            problems += missing_fields(event, EVENT_TYPES[event["type"]], beta, f"events.{i}")
    assert problems == []


def test_the_field_check_sees_a_missing_field() -> None:
    if not (SDK / "package.json").exists():
        pytest.skip("the TypeScript SDK is not installed")
    container = {"id": "container_1", "expires_at": "2026-01-01T00:00:00Z"}  # no `skills`
    assert missing_fields(container, "Container", False, "c") == ["c: Container.skills is missing"]
    call = {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}, "caller": None}
    assert missing_fields(call, "ToolUseBlock", False, "b") == ["b: ToolUseBlock.caller is null"]


def test_programmatic_tool_calls(e2e_url: str) -> None:
    seen = scenario("ptc", e2e_url)
    first, final, runner = seen["first"], seen["final"], seen["runner"]
    code, *calls = first["content"]
    assert first["stop_reason"] == "tool_use" and code["type"] == "server_tool_use" and len(calls) == 2
    for call in calls:
        assert call["caller"] == {"type": "code_execution_20260120", "tool_id": code["id"]}
    result = final["content"][0]
    assert result["type"] == "code_execution_tool_result" and result["tool_use_id"] == code["id"]
    assert result["content"]["stdout"] == "a! | b!\n"
    # The runner answered the call the code made, and the code printed the tool's answer.
    assert seen["looked"] == ["ptc"]
    assert runner["stop_reason"] == "end_turn" and runner["content"][-1]["text"].strip() == "ptc: a container for things"
    assert seen["bodies"][-1]["thread"]["type"] == "continue"
