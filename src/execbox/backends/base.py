"""The model backend interface.

A backend turns a conversation into the model's next assistant turn, as a stream of
events. It never executes tools: it only *asks* for them with tool-use blocks, and the
conversation loop (``execbox.conversation``) runs the code tools and calls back.

Conversation format: ``ModelRequest.messages`` holds Anthropic message params as plain
dicts, exactly as the client sent them plus what the loop appended: server tool calls
are ``server_tool_use`` blocks and their results ``code_execution_tool_result`` /
``bash_code_execution_tool_result`` / ``text_editor_code_execution_tool_result`` blocks
in assistant messages. Each backend translates that into its upstream's format.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, Protocol, Union


@dataclass(frozen=True)
class ToolSpec:
    """A tool the model may call. ``server`` tools are executed by execbox itself."""

    name: str
    input_schema: dict[str, Any]
    description: str = ""
    server: bool = False


@dataclass
class ModelRequest:
    model: str
    messages: list[dict[str, Any]]
    max_tokens: int
    system: str | list[dict[str, Any]] | None = None
    tools: list[ToolSpec] = field(default_factory=list)
    tool_choice: dict[str, Any] | None = None
    stop_sequences: list[str] = field(default_factory=list)
    # Sampling and other passthrough parameters (temperature, top_p, top_k, metadata...).
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InputTokens:
    """The prompt's input token count, sent before the first block by backends that know it
    that early (optional; the count in TurnStop stays the authoritative one)."""

    count: int


@dataclass(frozen=True)
class BlockStart:
    """A new content block. For ``tool_use`` give the tool ``name`` (and the upstream ``id``, if any)."""

    kind: Literal["text", "tool_use"]
    name: str | None = None
    id: str | None = None


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class InputDelta:
    """A piece of the current tool_use block's JSON input; the pieces concatenate to the whole."""

    partial_json: str


@dataclass(frozen=True)
class BlockStop:
    pass


@dataclass(frozen=True)
class TurnStop:
    """The end of the model's turn. ``stop_reason``: end_turn, max_tokens, stop_sequence, tool_use."""

    stop_reason: str
    input_tokens: int
    output_tokens: int
    stop_sequence: str | None = None


ModelEvent = Union[InputTokens, BlockStart, TextDelta, InputDelta, BlockStop, TurnStop]


@dataclass(frozen=True)
class ModelInfo:
    id: str
    display_name: str
    max_input_tokens: int = 200_000
    max_tokens: int = 64_000
    created_at: datetime = datetime(2025, 1, 1, tzinfo=timezone.utc)  # release date, where known


class ModelBackend(Protocol):
    """One source of models (built-in, Anthropic, an OpenAI-compatible server)."""

    def models(self) -> list[ModelInfo]:
        """The models this backend lists in ``GET /v1/models``."""
        ...

    def serves(self, model: str) -> bool:
        """Whether requests for ``model`` go to this backend."""
        ...

    def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        """The next assistant turn. Ends with exactly one TurnStop. Upstream failures raise
        ``execbox.errors.ExecboxError`` subclasses matching the upstream status."""
        ...

    async def count_tokens(self, request: ModelRequest) -> int:
        ...

    async def aclose(self) -> None:
        ...
