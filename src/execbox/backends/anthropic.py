"""Claude models through Anthropic's Messages API (or any server speaking it).

execbox's code tools are given to Claude as ordinary client tools; execbox runs them and
the history is rewritten in client-tool form (see ``_convert``). The backend serves exactly
the ids it lists: a static list of Claude snapshots and their aliases, plus any ids the
operator adds (``EXECBOX_ANTHROPIC_MODELS``), so ``GET /v1/models`` and ``POST /v1/messages``
agree.

``thinking`` is forwarded, but thinking blocks are neither relayed nor sent back, and Claude
refuses thinking on a call that answers tool calls made without it; so a tool loop's calls
after the first go without ``thinking``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import httpx

from execbox.backends._convert import blocks, client_tool_history
from execbox.backends._upstream import error_for_type, post_json, post_stream, sse_json
from execbox.backends.base import (
    BlockStart,
    BlockStop,
    InputDelta,
    InputTokens,
    ModelEvent,
    ModelInfo,
    ModelRequest,
    TextDelta,
    TurnStop,
)
from execbox.errors import BadGateway

API_VERSION = "2023-06-01"
PASSTHROUGH = ("temperature", "top_p", "top_k", "metadata")


def _claude(model_id: str, display_name: str, max_tokens: int) -> ModelInfo:
    """A Claude model, dated by its snapshot id (``...-20250929``)."""
    created = datetime.strptime(model_id[-8:], "%Y%m%d").replace(tzinfo=timezone.utc)
    return ModelInfo(model_id, display_name, max_tokens=max_tokens, created_at=created)


CLAUDE_SNAPSHOTS = [
    _claude("claude-opus-4-5-20251101", "Claude Opus 4.5", 64_000),
    _claude("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", 64_000),
    _claude("claude-haiku-4-5-20251001", "Claude Haiku 4.5", 64_000),
    _claude("claude-opus-4-1-20250805", "Claude Opus 4.1", 32_000),
    _claude("claude-opus-4-20250514", "Claude Opus 4", 32_000),
    _claude("claude-sonnet-4-20250514", "Claude Sonnet 4", 64_000),
]
# Each snapshot also under its alias (the id without the date: ``claude-sonnet-4-5``).
CLAUDE_MODELS = CLAUDE_SNAPSHOTS + [
    ModelInfo(info.id[:-9], info.display_name, info.max_input_tokens, info.max_tokens, info.created_at)
    for info in CLAUDE_SNAPSHOTS
]


class AnthropicBackend:
    """Forwards its Claude models to ``{base_url}/v1/messages`` with the operator's key."""

    def __init__(
        self,
        api_key: str,
        base_url: str = "https://api.anthropic.com",
        timeout: float = 600.0,
        extra_models: list[str] | tuple[str, ...] = (),
    ) -> None:
        known = {info.id for info in CLAUDE_MODELS}
        self._models = CLAUDE_MODELS + [ModelInfo(model, model) for model in extra_models if model not in known]
        self._ids = {info.id for info in self._models}
        self.base_url = base_url.rstrip("/")
        self._headers = {"x-api-key": api_key, "anthropic-version": API_VERSION}
        self._client = httpx.AsyncClient(timeout=timeout)

    def models(self) -> list[ModelInfo]:
        return list(self._models)

    def serves(self, model: str) -> bool:
        return model in self._ids

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        body = {**self._params(request), "max_tokens": request.max_tokens, "stream": True}
        if request.stop_sequences:
            body["stop_sequences"] = request.stop_sequences
        body.update({key: request.extra[key] for key in PASSTHROUGH if request.extra.get(key) is not None})
        if request.extra.get("thinking") and not _answers_tool_calls(body["messages"]):
            body["thinking"] = request.extra["thinking"]
        url = f"{self.base_url}/v1/messages"
        async with post_stream(self._client, url, body, self._headers) as response:
            turn = _Turn()
            async for data in sse_json(response):
                for event in turn.feed(data):
                    yield event
                if turn.stopped:
                    return
        raise BadGateway(f"The upstream model at {url} ended its stream before the end of the turn.")

    async def count_tokens(self, request: ModelRequest) -> int:
        answer = await post_json(
            self._client, f"{self.base_url}/v1/messages/count_tokens", self._params(request), self._headers
        )
        return int(answer["input_tokens"])

    async def aclose(self) -> None:
        await self._client.aclose()

    @staticmethod
    def _params(request: ModelRequest) -> dict[str, Any]:
        """The request fields shared by ``messages`` and ``count_tokens``."""
        params: dict[str, Any] = {"model": request.model, "messages": client_tool_history(request.messages)}
        if request.system:
            params["system"] = request.system if isinstance(request.system, str) else blocks(request.system)
        if request.tools:
            params["tools"] = [
                {"name": tool.name, "description": tool.description, "input_schema": tool.input_schema}
                for tool in request.tools
            ]
        if request.tool_choice:
            params["tool_choice"] = request.tool_choice
        return params


def _answers_tool_calls(messages: list[dict[str, Any]]) -> bool:
    """Whether the conversation ends with tool results (the model's turn goes on)."""
    return bool(messages) and any(block["type"] == "tool_result" for block in messages[-1]["content"])


class _Turn:
    """Turns Anthropic stream events into backend events, skipping blocks execbox does not relay."""

    def __init__(self) -> None:
        self.stopped = False
        self._relayed: set[int] = set()
        self._awaiting_input: int | None = None  # a tool_use block with no input piece yet
        self._input_tokens = 0
        self._output_tokens = 0
        self._stop_reason = "end_turn"
        self._stop_sequence: str | None = None

    def feed(self, event: dict[str, Any]) -> list[ModelEvent]:
        kind = event.get("type")
        if kind == "message_start":
            self._count(event["message"].get("usage") or {})
            return [InputTokens(self._input_tokens)]
        elif kind == "content_block_start":
            return self._start(event["index"], event["content_block"])
        elif kind == "content_block_delta" and event["index"] in self._relayed:
            return self._delta(event["delta"])
        elif kind == "content_block_stop" and event["index"] in self._relayed:
            # A tool called without input still gets a whole JSON value.
            return [InputDelta("{}"), BlockStop()] if event["index"] == self._awaiting_input else [BlockStop()]
        elif kind == "message_delta":
            delta = event.get("delta") or {}
            self._stop_reason = delta.get("stop_reason") or self._stop_reason
            self._stop_sequence = delta.get("stop_sequence")
            self._count(event.get("usage") or {})
        elif kind == "message_stop":
            self.stopped = True
            return [TurnStop(self._stop_reason, self._input_tokens, self._output_tokens, self._stop_sequence)]
        elif kind == "error":
            error = event.get("error") or {}
            raise error_for_type(error.get("type"), error.get("message") or "Upstream model error.")
        return []

    def _start(self, index: int, block: dict[str, Any]) -> list[ModelEvent]:
        if block["type"] == "text":
            self._relayed.add(index)
            return [BlockStart("text"), *([TextDelta(block["text"])] if block.get("text") else [])]
        if block["type"] == "tool_use":
            self._relayed.add(index)
            self._awaiting_input = index
            return [BlockStart("tool_use", name=block["name"], id=block["id"])]
        return []

    def _delta(self, delta: dict[str, Any]) -> list[ModelEvent]:
        if delta["type"] == "text_delta" and delta["text"]:
            return [TextDelta(delta["text"])]
        if delta["type"] == "input_json_delta" and delta["partial_json"]:
            self._awaiting_input = None
            return [InputDelta(delta["partial_json"])]
        return []

    def _count(self, usage: dict[str, Any]) -> None:
        """Usage fields are cumulative; input counts cached tokens too."""
        if usage.get("input_tokens") is not None:
            self._input_tokens = sum(
                usage.get(key) or 0
                for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
            )
        if usage.get("output_tokens") is not None:
            self._output_tokens = usage["output_tokens"]
