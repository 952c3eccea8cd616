"""Programmatic tool calling: client tools that code running in the container awaits.

With a REPL version of the code tool (20260120, 20260521), every client tool whose
``allowed_callers`` names a code-execution version is an async function in the
container's Python session: ``rows = await query_database({"sql": ...})``. When a cell
awaits such calls, the response stops with ``stop_reason: "tool_use"``: the code's
``server_tool_use`` without a result, then one ``tool_use`` per call, each with
``caller: {"type": "code_execution_20260120", "tool_id": <the server_tool_use id>}``
(that caller type for both versions: the SDKs know no other). The client answers with
``tool_result`` blocks (and ``container``); the same cell then goes on, still running in
its kernel, and the response opens with its ``code_execution_tool_result`` (or with the
next calls). A call's awaited value is its result's text; an ``is_error`` result is still
just that text. A client that never answers: the call raises ``TimeoutError`` in the code
after 270 s (the kernel's own clock), and a late answer is dropped.

The waiting cells are kept in this server's memory, like the kernels they live in.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from execbox.conversation.history import blocks
from execbox.errors import InvalidRequest
from execbox.ids import new_id
from execbox.protocol.messages import REPL_TOOLS, Caller, MessageCreateParams, ToolUseBlock
from execbox.sandbox.types import ToolCall

CALLER_TYPE = "code_execution_20260120"
# How long a waiting cell is remembered (past the kernel's own 270 s wait and then some).
FORGET_AFTER_S = 3600.0


@dataclass
class WaitingCode:
    """A code cell whose kernel waits for client tool results."""

    workspace: str
    container_id: str
    calls: dict[str, int]  # tool_use id -> the call's number in its kernel
    since: float


def programmatic_tools(params: MessageCreateParams) -> tuple[str, ...]:
    """Names of the client tools the code of this request may call."""
    if params.code_tool is None or params.code_tool.type not in REPL_TOOLS:
        return ()
    return tuple(
        tool.name
        for tool in params.client_tools
        if any(caller.startswith("code_execution_") for caller in (tool.allowed_callers or ()))
    )


def check_request(params: MessageCreateParams) -> None:
    """What programmatic tool calling does not support: strict tools, serial calls (400)."""
    names = set(programmatic_tools(params))
    if not names:
        return
    for tool in params.client_tools:
        if tool.name in names and tool.strict:
            raise InvalidRequest(f"tools: `{tool.name}` can be called by code, which does not support `strict`.")
    if params.tool_choice is not None and getattr(params.tool_choice, "disable_parallel_tool_use", None):
        raise InvalidRequest(
            "tool_choice.disable_parallel_tool_use is not supported with tools that code can call."
        )


class ProgrammaticCalls:
    """Code cells waiting for client tool results, by the id of their ``server_tool_use``."""

    def __init__(self) -> None:
        self._waiting: dict[str, WaitingCode] = {}

    def wait(self, server_tool_id: str, workspace: str, container_id: str, calls: list[ToolCall]) -> list[ToolUseBlock]:
        """Remember that the code of ``server_tool_id`` waits for ``calls``: their blocks."""
        self._forget_old()
        made = [(new_id("toolu"), call) for call in calls]
        self._waiting[server_tool_id] = WaitingCode(
            workspace, container_id, {tool_id: call.call for tool_id, call in made}, time.monotonic()
        )
        caller = Caller(type=CALLER_TYPE, tool_id=server_tool_id)  # type: ignore[arg-type]
        return [
            ToolUseBlock(id=tool_id, name=call.name, input=call.input if isinstance(call.input, dict) else {},
                         caller=caller)
            for tool_id, call in made
        ]

    def waiting(self, server_tool_id: str, workspace: str) -> WaitingCode | None:
        found = self._waiting.get(server_tool_id)
        return found if found is not None and found.workspace == workspace else None

    def done(self, server_tool_id: str) -> None:
        self._waiting.pop(server_tool_id, None)

    def check_continuation(self, history: list[dict[str, Any]], params: MessageCreateParams, workspace: str) -> None:
        """Refuse a continuation of waiting code that cannot be served (400s, as the API's):
        the calls of code in the last assistant message must be answered, alone, with
        ``container`` naming its container."""
        if len(history) < 2 or history[-1]["role"] != "user" or history[-2]["role"] != "assistant":
            return
        codes = [b["id"] for b in blocks(history[-2]) if b.get("type") == "server_tool_use" and "id" in b]
        for server_tool_id in codes:
            waiting = self.waiting(server_tool_id, workspace)
            if waiting is None:
                continue
            if params.container_id != waiting.container_id:
                raise InvalidRequest(
                    f"container: `{server_tool_id}` is waiting for tool results in container "
                    f"`{waiting.container_id}`; send that id as `container` with the `tool_result` blocks."
                )
            reply = history[-1] if history and history[-1]["role"] == "user" else {"content": []}
            given = {b.get("tool_use_id") for b in blocks(reply) if b.get("type") == "tool_result"}
            if missing := [tool_id for tool_id in waiting.calls if tool_id not in given]:
                raise InvalidRequest(
                    f"messages.{len(history) - 1}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a corresponding "
                    f"`tool_result` block in the next message."
                )
            if any(b.get("type") != "tool_result" for b in blocks(reply)):
                raise InvalidRequest(
                    f"messages.{len(history) - 1}: the reply to calls made by code may hold only `tool_result` "
                    f"blocks, no text or other content."
                )
            self.results(waiting, history)  # text results only

    @staticmethod
    def results(waiting: WaitingCode, history: list[dict[str, Any]]) -> dict[int, str]:
        """The kernel call numbers and result texts that the last user message answers."""
        answered = {}
        for block in blocks(history[-1]):
            call = waiting.calls.get(block.get("tool_use_id", ""))
            if block.get("type") == "tool_result" and call is not None:
                answered[call] = _text(block.get("content"))
        return answered

    def _forget_old(self) -> None:
        cutoff = time.monotonic() - FORGET_AFTER_S
        for server_tool_id in [k for k, w in self._waiting.items() if w.since < cutoff]:
            del self._waiting[server_tool_id]


def _text(content: Any) -> str:
    """A tool result as the code receives it: text blocks joined (the contract's A2)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        if any(isinstance(b, dict) and b.get("type") not in ("text", None) for b in content):
            raise InvalidRequest("tool_result: a result for code holds text only (no images or documents).")
        return "".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return "" if content is None else json.dumps(content)
