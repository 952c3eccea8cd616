"""Models on any OpenAI-compatible Chat Completions endpoint (vLLM, Ollama, llama.cpp, OpenAI).

The history is first put in client-tool form (see ``_convert``), then in chat form: the
system prompt becomes a system message, tool calls an assistant message's ``tool_calls``,
and every tool result a ``role: "tool"`` message. Token counts come from the upstream's
final usage chunk; without one, and for ``count_tokens``, they are estimated as one token
per four characters of text (images are not counted).
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from execbox.backends._convert import blocks, client_tool_history
from execbox.backends._upstream import message_of, post_stream, sse_json
from execbox.backends.base import (
    BlockStart,
    BlockStop,
    InputDelta,
    ModelEvent,
    ModelInfo,
    ModelRequest,
    TextDelta,
    ToolSpec,
    TurnStop,
)
from execbox.errors import BadGateway, InvalidRequest, Overloaded, error_for_status

PASSTHROUGH = ("temperature", "top_p", "top_k")
FINISH_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


class OpenAIBackend:
    """Serves the configured ``models`` from ``{base_url}/chat/completions``."""

    def __init__(self, base_url: str, api_key: str | None = None, models: list[str] | None = None,
                 timeout: float = 600.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._models = list(models or [])
        self._headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(timeout=timeout)

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(model, model) for model in self._models]

    def serves(self, model: str) -> bool:
        return model in self._models

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        messages = chat_messages(request)
        body: dict[str, Any] = {
            "model": request.model,
            "messages": messages,
            "max_tokens": request.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.tools:
            body["tools"] = chat_tools(request.tools)
        if request.tool_choice:
            body.update(chat_tool_choice(request.tool_choice, has_tools=bool(request.tools)))
        if request.stop_sequences:
            body["stop"] = request.stop_sequences
        body.update({key: request.extra[key] for key in PASSTHROUGH if request.extra.get(key) is not None})
        user_id = (request.extra.get("metadata") or {}).get("user_id")
        if user_id:
            body["user"] = user_id

        url = f"{self.base_url}/chat/completions"
        completion = _Completion(request.stop_sequences)
        async with post_stream(self._client, url, body, self._headers) as response:
            async for chunk in sse_json(response):
                for event in completion.feed(chunk):
                    yield event
        if completion.finish_reason is None:
            raise BadGateway(f"The upstream model at {url} ended its stream before the end of the turn.")
        for event in completion.finish(estimate_tokens(messages, body.get("tools", []))):
            yield event

    async def count_tokens(self, request: ModelRequest) -> int:
        return estimate_tokens(chat_messages(request), chat_tools(request.tools))

    async def aclose(self) -> None:
        await self._client.aclose()


def chat_messages(request: ModelRequest) -> list[dict[str, Any]]:
    """The conversation as Chat Completions messages."""
    messages: list[dict[str, Any]] = []
    system = _joined_text(blocks(request.system))
    if system:
        messages.append({"role": "system", "content": system})
    for turn in client_tool_history(request.messages):
        if turn["role"] == "assistant":
            messages.append(_assistant_message(turn["content"]))
        else:
            messages.extend(_user_messages(turn["content"]))
    return messages


def chat_tools(tools: list[ToolSpec]) -> list[dict[str, Any]]:
    return [
        {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.input_schema}}
        for t in tools
    ]


def chat_tool_choice(choice: dict[str, Any], *, has_tools: bool) -> dict[str, Any]:
    """Anthropic ``tool_choice`` as the ``tool_choice`` (and ``parallel_tool_calls``) fields."""
    kind = choice.get("type")
    if kind == "tool":
        fields: dict[str, Any] = {"tool_choice": {"type": "function", "function": {"name": choice["name"]}}}
    elif kind in ("auto", "any", "none"):
        fields = {"tool_choice": {"auto": "auto", "any": "required", "none": "none"}[kind]}
    else:
        raise InvalidRequest(f"tool_choice.type: unknown type {kind!r}")
    if has_tools and choice.get("disable_parallel_tool_use"):
        fields["parallel_tool_calls"] = False
    return fields


def estimate_tokens(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> int:
    """About one token per four characters of text, tool calls and tool definitions."""
    chars = len(json.dumps(tools)) if tools else 0
    for message in messages:
        content = message.get("content") or ""
        chars += len(content) if isinstance(content, str) else sum(len(p.get("text", "")) for p in content)
        for call in message.get("tool_calls", []):
            chars += len(call["function"]["name"]) + len(call["function"]["arguments"])
    return math.ceil(chars / 4)


def _assistant_message(content: list[dict[str, Any]]) -> dict[str, Any]:
    calls = [
        {"id": b["id"], "type": "function", "function": {"name": b["name"], "arguments": json.dumps(b["input"])}}
        for b in content
        if b["type"] == "tool_use"
    ]
    message: dict[str, Any] = {"role": "assistant", "content": _joined_text(content) or (None if calls else "")}
    if calls:
        message["tool_calls"] = calls
    return message


def _user_messages(content: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool results as ``tool`` messages (they come first), then the rest as one user message.

    ``tool`` messages carry text only, so the images of tool results (plots an execution made)
    open the user message that follows, introduced by a line naming their call."""
    messages = [
        {"role": "tool", "tool_call_id": b["tool_use_id"], "content": _joined_text(blocks(b.get("content")))}
        for b in content
        if b["type"] == "tool_result"
    ]
    parts: list[dict[str, Any]] = []
    for b in content:
        images = [i for i in blocks(b.get("content")) if i.get("type") == "image"] if b["type"] == "tool_result" else []
        if images:
            parts.append({"type": "text", "text": f"Images produced by tool call {b['tool_use_id']}:"})
            parts += [_user_part(image) for image in images]
    parts += [_user_part(b) for b in content if b["type"] != "tool_result"]
    if parts and all(part["type"] == "text" for part in parts):
        messages.append({"role": "user", "content": "\n\n".join(part["text"] for part in parts)})
    elif parts:
        messages.append({"role": "user", "content": parts})
    return messages


def _user_part(block: dict[str, Any]) -> dict[str, Any]:
    kind, source = block["type"], block.get("source") or {}
    if kind == "text":
        return {"type": "text", "text": block["text"]}
    if kind == "image" and source.get("type") == "base64":
        return {"type": "image_url", "image_url": {"url": f"data:{source['media_type']};base64,{source['data']}"}}
    if kind == "image" and source.get("type") == "url":
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    if kind == "document" and source.get("type") == "text":
        return {"type": "text", "text": source["data"]}
    described = f"{kind} blocks with a {source['type']} source" if source.get("type") else f"{kind} blocks"
    raise InvalidRequest(f"messages: {described} are not supported by OpenAI-compatible models.")


def _joined_text(content: list[dict[str, Any]]) -> str:
    return "\n\n".join(b["text"] for b in content if b.get("type") == "text" and b.get("text"))


@dataclass
class _ToolCall:
    key: int | None
    id: str | None = None
    name: str | None = None
    started: bool = False
    arguments: str = ""
    sent: int = 0  # characters of ``arguments`` already emitted (none before the name is known)

    def is_other_call(self, key: int | None, call_id: str | None, name: str | None) -> bool:
        """Whether a streamed piece starts another call: by its index or, without one, a new id,
        or a name when this call already has one and the piece no id."""
        if key is not None:
            return key != self.key
        if call_id:
            return self.id is not None and call_id != self.id
        return bool(name and self.name)


class _Completion:
    """Turns streamed chat completion chunks into backend events.

    Servers differ: arguments come in pieces or all at once, ids may be missing, and
    parallel calls come one after the other, told apart by ``index`` (or, without one,
    by a new id or name). Each call becomes its own tool_use block.
    """

    def __init__(self, stop_sequences: list[str]) -> None:
        self.finish_reason: str | None = None
        self._stop_sequences = stop_sequences
        self._stop_match: Any = None
        self._usage: dict[str, Any] = {}
        self._text_open = False
        self._tool: _ToolCall | None = None
        self._tool_calls = 0
        self._output_chars = 0

    def feed(self, chunk: dict[str, Any]) -> list[ModelEvent]:
        if chunk.get("error"):
            error = chunk["error"]
            status = error.get("code") if isinstance(error, dict) else None
            message = message_of(chunk) or "Upstream model error."
            if isinstance(status, int) and status < 500:
                raise error_for_status(status, message)
            raise Overloaded(message) if status in (503, 529) else BadGateway(message)
        self._usage = chunk.get("usage") or self._usage
        events: list[ModelEvent] = []
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            # Some servers put whitespace between tool calls: it must not split a call.
            if delta.get("content") and not (self._tool and delta["content"].isspace()):
                if not self._text_open:
                    events += self._close()
                    events.append(BlockStart("text"))
                    self._text_open = True
                events.append(TextDelta(delta["content"]))
                self._output_chars += len(delta["content"])
            for call in delta.get("tool_calls") or []:
                events += self._tool_piece(call)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
                # vLLM names the stop string it stopped at.
                self._stop_match = choice.get("stop_reason")
        return events

    def finish(self, estimated_input: int) -> list[ModelEvent]:
        """Stop the open block and end the turn (token counts fall back to estimates)."""
        events = self._close()
        if self.finish_reason != "length" and self._tool_calls:
            stop_reason = "tool_use"
        else:
            stop_reason = FINISH_REASONS.get(self.finish_reason or "", "end_turn")
        stop_sequence = None
        if stop_reason == "end_turn" and self._stop_match in self._stop_sequences:
            stop_reason, stop_sequence = "stop_sequence", self._stop_match
        input_tokens = self._usage.get("prompt_tokens")
        output_tokens = self._usage.get("completion_tokens")
        events.append(TurnStop(
            stop_reason,
            input_tokens if input_tokens is not None else estimated_input,
            output_tokens if output_tokens is not None else math.ceil(self._output_chars / 4),
            stop_sequence,
        ))
        return events

    def _tool_piece(self, call: dict[str, Any]) -> list[ModelEvent]:
        function = call.get("function") or {}
        key, call_id, name = call.get("index"), call.get("id"), function.get("name")
        tool = self._tool
        events: list[ModelEvent] = []
        if tool is None or tool.is_other_call(key, call_id, name):
            events += self._close()
            tool = self._tool = _ToolCall(key)
            self._tool_calls += 1
        tool.id = tool.id or call_id
        tool.name = tool.name or name
        arguments = function.get("arguments") or ""
        if not isinstance(arguments, str):  # some servers send the arguments as an object
            arguments = json.dumps(arguments)
        tool.arguments += arguments
        self._output_chars += len(arguments)
        if not tool.started and tool.name:
            tool.started = True
            events.append(BlockStart("tool_use", name=tool.name, id=tool.id))
        if tool.started and len(tool.arguments) > tool.sent:
            events.append(InputDelta(tool.arguments[tool.sent:]))
            tool.sent = len(tool.arguments)
        return events

    def _close(self) -> list[ModelEvent]:
        """Stop the open block, if any."""
        events: list[ModelEvent] = []
        if self._text_open:
            self._text_open = False
            events.append(BlockStop())
        if self._tool is not None:
            tool, self._tool = self._tool, None
            if not tool.started:
                raise BadGateway("The upstream model called a tool without naming it.")
            if not tool.arguments.strip():
                events.append(InputDelta("{}"))  # a call without arguments still gets a whole JSON value
            events.append(BlockStop())
        return events
