"""Wire shapes of the Messages API: request params, content blocks, the Message, SSE events.

Content block models serve both directions: a response block can be sent back as input
unchanged (``pause_turn`` continuations, tool-result replies), so every block declares the
optional fields a client may echo (``citations: null``, ``cache_control``, ``caller``).

Requests are validated the way the Messages API validates them: a field no model declares
is a 400 ``<json.path>: Extra inputs are not permitted``, and unknown block and tool *types*
are 400s too. Fields the SDKs send that execbox does not act on (``cache_control``,
``service_tier``, ``context_management``...) are declared, accepted and ignored.

Responses carry every field the SDKs' types declare (the Python types' required fields and
the TypeScript types' non-optional ones), with ``null`` where execbox has nothing to say.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SerializerFunctionWrapHandler,
    Tag,
    field_validator,
    model_serializer,
    model_validator,
)

from execbox.errors import InvalidRequest

PYTHON_TOOL = "code_execution_20250522"
BASH_TOOLS = ("code_execution_20250825", "code_execution_20260120", "code_execution_20260521")
# Versions whose Python cells run in the container's live interpreter (REPL state).
REPL_TOOLS = ("code_execution_20260120", "code_execution_20260521")
# The version whose tool description states the cell time limit.
CELL_LIMIT_TOOL = "code_execution_20260521"
# Sent by SDK >= 2.0; it drops sampling parameters and a few legacy input forms.
STRICT_VERSION = "2026-10-21"
# Every ``anthropic-version`` the API knows (the versioning page's two, and the SDKs' newest).
API_VERSIONS = ("2023-01-01", "2023-06-01", STRICT_VERSION)


class Wire(BaseModel):
    """Base of every request model: a field it does not declare is refused.

    Blocks also appear in responses, where the fields only a request may carry are left
    out while they are null (the response types do not declare them).
    """

    model_config = ConfigDict(extra="forbid")

    @model_serializer(mode="wrap")
    def _without_request_only_nulls(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        for key in OMITTED_WHEN_NULL:
            if key in data and data[key] is None:
                del data[key]
        return data


OMITTED_WHEN_NULL = ("cache_control", "toolset_name", "transformations", "tool_id")


# Accepted wherever the SDKs allow it, and ignored (execbox has no prompt cache).
CacheControl = dict[str, Any] | None

# Who made a tool call: the model itself (``direct``), or code running in the sandbox
# (programmatic tool calling, ``tool_id`` naming the ``server_tool_use`` that runs the code).
CallerType = Literal["direct", "code_execution_20250825", "code_execution_20260120", "code_execution_20260521"]


class Caller(Wire):
    type: CallerType
    tool_id: str | None = None

    @model_validator(mode="after")
    def _tool_id_for_code(self) -> Caller:
        if self.type != "direct" and not self.tool_id:
            raise ValueError("a code execution caller needs a `tool_id`")
        return self


def _direct() -> Caller:
    return Caller(type="direct")


# --- content blocks -------------------------------------------------------------------------


class TextBlock(Wire):
    type: Literal["text"] = "text"
    text: str
    citations: list[dict[str, Any]] | None = None
    cache_control: CacheControl = None


class ImageBlock(Wire):
    type: Literal["image"] = "image"
    source: dict[str, Any]
    transformations: Any = None
    cache_control: CacheControl = None


class DocumentBlock(Wire):
    type: Literal["document"] = "document"
    source: dict[str, Any]
    title: str | None = None
    context: str | None = None
    citations: Any = None
    cache_control: CacheControl = None


class SearchResultBlock(Wire):
    type: Literal["search_result"] = "search_result"
    source: str
    title: str
    content: list[dict[str, Any]]
    citations: Any = None
    cache_control: CacheControl = None


class ThinkingBlock(Wire):
    type: Literal["thinking"] = "thinking"
    thinking: str
    signature: str


class RedactedThinkingBlock(Wire):
    type: Literal["redacted_thinking"] = "redacted_thinking"
    data: str


class ToolUseBlock(Wire):
    """A call of a client tool (``toolu_`` id); the client answers with a ``tool_result``."""

    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any]
    caller: Caller = Field(default_factory=_direct)
    toolset_name: str | None = None
    cache_control: CacheControl = None


class ToolResultBlock(Wire):
    type: Literal["tool_result"] = "tool_result"
    tool_use_id: str
    content: str | list[dict[str, Any]] | None = None
    is_error: bool | None = None
    toolset_name: str | None = None
    cache_control: CacheControl = None


class ServerToolUseBlock(Wire):
    """A call of a tool execbox runs itself (``srvtoolu_`` id)."""

    type: Literal["server_tool_use"] = "server_tool_use"
    id: str
    name: str
    input: dict[str, Any]
    caller: Caller = Field(default_factory=_direct)
    cache_control: CacheControl = None


class ContainerUploadBlock(Wire):
    """A Files API file to copy into the container before the turn runs."""

    type: Literal["container_upload"] = "container_upload"
    file_id: str
    cache_control: CacheControl = None


class OtherServerToolResultBlock(Wire):
    """Results of server tools execbox does not run (web search/fetch, tool search): accepted as history."""

    type: Literal["web_search_tool_result", "web_fetch_tool_result", "tool_search_tool_result"]
    tool_use_id: str
    content: Any
    caller: Any = None
    cache_control: CacheControl = None


# Result contents of the code execution tools.


class CodeExecutionOutput(Wire):
    type: Literal["code_execution_output"] = "code_execution_output"
    file_id: str


class CodeExecutionResult(Wire):
    type: Literal["code_execution_result"] = "code_execution_result"
    stdout: str
    stderr: str
    return_code: int
    content: list[CodeExecutionOutput] = Field(default_factory=list)


class EncryptedCodeExecutionResult(Wire):
    type: Literal["encrypted_code_execution_result"] = "encrypted_code_execution_result"
    encrypted_stdout: str
    stderr: str
    return_code: int
    content: list[CodeExecutionOutput] = Field(default_factory=list)


class CodeExecutionToolResultError(Wire):
    type: Literal["code_execution_tool_result_error"] = "code_execution_tool_result_error"
    error_code: str


class CodeExecutionToolResultBlock(Wire):
    type: Literal["code_execution_tool_result"] = "code_execution_tool_result"
    tool_use_id: str
    content: Annotated[
        CodeExecutionResult | EncryptedCodeExecutionResult | CodeExecutionToolResultError,
        Field(discriminator="type"),
    ]
    cache_control: CacheControl = None


class BashCodeExecutionOutput(Wire):
    type: Literal["bash_code_execution_output"] = "bash_code_execution_output"
    file_id: str


class BashCodeExecutionResult(Wire):
    type: Literal["bash_code_execution_result"] = "bash_code_execution_result"
    stdout: str
    stderr: str
    return_code: int
    content: list[BashCodeExecutionOutput] = Field(default_factory=list)


class BashCodeExecutionToolResultError(Wire):
    type: Literal["bash_code_execution_tool_result_error"] = "bash_code_execution_tool_result_error"
    error_code: str


class BashCodeExecutionToolResultBlock(Wire):
    type: Literal["bash_code_execution_tool_result"] = "bash_code_execution_tool_result"
    tool_use_id: str
    content: Annotated[BashCodeExecutionResult | BashCodeExecutionToolResultError, Field(discriminator="type")]
    cache_control: CacheControl = None


class TextEditorViewResult(Wire):
    type: Literal["text_editor_code_execution_view_result"] = "text_editor_code_execution_view_result"
    content: str
    file_type: Literal["text", "image", "pdf"]
    num_lines: int | None = None
    start_line: int | None = None
    total_lines: int | None = None


class TextEditorCreateResult(Wire):
    type: Literal["text_editor_code_execution_create_result"] = "text_editor_code_execution_create_result"
    is_file_update: bool


class TextEditorStrReplaceResult(Wire):
    type: Literal["text_editor_code_execution_str_replace_result"] = "text_editor_code_execution_str_replace_result"
    old_start: int | None = None
    old_lines: int | None = None
    new_start: int | None = None
    new_lines: int | None = None
    lines: list[str] | None = None


class TextEditorToolResultError(Wire):
    type: Literal["text_editor_code_execution_tool_result_error"] = "text_editor_code_execution_tool_result_error"
    error_code: str
    error_message: str | None = None


class TextEditorCodeExecutionToolResultBlock(Wire):
    type: Literal["text_editor_code_execution_tool_result"] = "text_editor_code_execution_tool_result"
    tool_use_id: str
    content: Annotated[
        TextEditorViewResult | TextEditorCreateResult | TextEditorStrReplaceResult | TextEditorToolResultError,
        Field(discriminator="type"),
    ]
    cache_control: CacheControl = None


CodeToolResultBlock = Union[
    CodeExecutionToolResultBlock, BashCodeExecutionToolResultBlock, TextEditorCodeExecutionToolResultBlock
]
SERVER_RESULT_TYPES = frozenset(
    {"code_execution_tool_result", "bash_code_execution_tool_result", "text_editor_code_execution_tool_result"}
)

# Every block a request may carry, including every response block echoed back.
InputBlock = Annotated[
    Union[
        TextBlock,
        ImageBlock,
        DocumentBlock,
        SearchResultBlock,
        ThinkingBlock,
        RedactedThinkingBlock,
        ToolUseBlock,
        ToolResultBlock,
        ServerToolUseBlock,
        CodeExecutionToolResultBlock,
        BashCodeExecutionToolResultBlock,
        TextEditorCodeExecutionToolResultBlock,
        OtherServerToolResultBlock,
        ContainerUploadBlock,
    ],
    Field(discriminator="type"),
]

# Every block execbox puts in a response.
ContentBlock = Annotated[
    Union[
        TextBlock,
        ToolUseBlock,
        ServerToolUseBlock,
        CodeExecutionToolResultBlock,
        BashCodeExecutionToolResultBlock,
        TextEditorCodeExecutionToolResultBlock,
    ],
    Field(discriminator="type"),
]


def _text_or_blocks(value: Any) -> str:
    return "text" if isinstance(value, str) else "blocks"


# ``str | list[block]``, tagged so that a bad block is reported once (as ``content.0``, the
# error envelope drops the tag) rather than once per union member.
MessageContent = Annotated[
    Annotated[str, Tag("text")] | Annotated[list[InputBlock], Tag("blocks")],
    Discriminator(_text_or_blocks),
]


# ``str | list[TextBlock]``, tagged the same way.
SystemContent = Annotated[
    Annotated[str, Tag("text")] | Annotated[list[TextBlock], Tag("blocks")],
    Discriminator(_text_or_blocks),
]


class MessageParam(Wire):
    role: Literal["user", "assistant"]
    content: MessageContent

    def blocks(self) -> list[BaseModel]:
        """The content as blocks (a string is one text block)."""
        return [TextBlock(text=self.content)] if isinstance(self.content, str) else list(self.content)


# --- tools ----------------------------------------------------------------------------------


class CodeExecutionTool(Wire):
    """The code execution tool. 20250522 runs Python; the later versions offer bash and a text editor."""

    type: Literal[
        "code_execution_20250522", "code_execution_20250825", "code_execution_20260120", "code_execution_20260521"
    ]
    name: Literal["code_execution"] = "code_execution"
    allowed_callers: list[CallerType] | None = None
    defer_loading: bool | None = None
    strict: bool | None = None
    cache_control: CacheControl = None


class CustomTool(Wire):
    """A client tool: the model calls it, the client runs it and sends back a ``tool_result``."""

    type: Literal["custom"] | None = None
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,128}$")
    input_schema: dict[str, Any]
    description: str | None = None
    # Which callers may call the tool: ``direct`` (the model, the default) and code execution
    # versions (programmatic tool calling). Accepted and checked; execbox's calls are direct.
    allowed_callers: list[CallerType] | None = None
    defer_loading: bool | None = None
    strict: bool | None = None
    input_examples: list[dict[str, Any]] | None = None
    eager_input_streaming: bool | None = None
    cache_control: CacheControl = None

    @field_validator("input_schema")
    @classmethod
    def _object_schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        # Tool input is always a JSON object, so its schema must say so (as the Messages API requires).
        if schema.get("type") != "object":
            raise ValueError('a tool\'s input schema must be a JSON schema with `"type": "object"`')
        return schema


def _tool_kind(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    if kind is None or kind == "custom":
        return "custom"
    if isinstance(kind, str) and kind.startswith("code_execution_"):
        return "code_execution"
    return None


Tool = Annotated[
    Annotated[CodeExecutionTool, Tag("code_execution")] | Annotated[CustomTool, Tag("custom")],
    Discriminator(
        _tool_kind,
        custom_error_type="unsupported_tool",
        custom_error_message="Unsupported tool type: execbox offers the code execution tool "
        "(code_execution_20250522, code_execution_20250825, code_execution_20260120, code_execution_20260521) "
        "and custom client tools.",
    ),
]


class ToolChoice(Wire):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None

    @model_validator(mode="after")
    def _tool_needs_name(self) -> ToolChoice:
        if self.type == "tool" and not self.name:
            raise ValueError("tool_choice of type `tool` needs a `name`")
        return self


class ContainerParam(Wire):
    """The object form of ``container``: ``{"id": ...}`` (skills are refused later, with a reason)."""

    id: str | None = None
    skills: list[dict[str, Any]] | None = None


# --- requests -------------------------------------------------------------------------------


class MessageInput(Wire):
    """What a model turn is computed from: shared by ``/v1/messages`` and ``/count_tokens``.

    The optional features execbox does not act on (``cache_control``, ``output_config``,
    ``context_management``, ``mcp_servers``...) are accepted and ignored, as the fields
    declared below the line; any other field is refused.
    """

    model: str = Field(min_length=1)
    messages: list[MessageParam] = Field(max_length=100_000)
    system: SystemContent | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: dict[str, Any] | None = None
    # ---- accepted, not acted on
    cache_control: CacheControl = None
    output_config: dict[str, Any] | None = None
    output_format: dict[str, Any] | None = None
    context_management: dict[str, Any] | None = None
    mcp_servers: list[dict[str, Any]] | None = None
    compaction: Any = None
    speed: str | None = None
    billing_policy: Any = None
    user_profile_id: str | None = None
    workspace_id: str | None = None

    @model_validator(mode="after")
    def _check_tools(self) -> MessageInput:
        code_tools = [tool for tool in self.tools or [] if isinstance(tool, CodeExecutionTool)]
        if len(code_tools) > 1:
            raise ValueError("tools: give at most one code execution tool")
        names = [tool.name for tool in self.tools or [] if isinstance(tool, CustomTool)]
        if len(set(names)) != len(names):
            raise ValueError("tools: tool names must be unique")
        if self.tool_choice and self.tool_choice.type == "tool":
            offered = set(names) | ({"code_execution"} if code_tools else set())
            if self.tool_choice.name not in offered:
                raise ValueError(f"tool_choice names `{self.tool_choice.name}`, which is not in `tools`")
            chosen = next((tool for tool in self.client_tools if tool.name == self.tool_choice.name), None)
            if chosen is not None and chosen.allowed_callers is not None and "direct" not in chosen.allowed_callers:
                # Only code could call it, and a forced choice is a direct call.
                raise ValueError(
                    f"tool_choice names `{chosen.name}`, whose `allowed_callers` does not include `direct`"
                )
        return self

    @property
    def code_tool(self) -> CodeExecutionTool | None:
        return next((tool for tool in self.tools or [] if isinstance(tool, CodeExecutionTool)), None)

    @property
    def client_tools(self) -> list[CustomTool]:
        return [tool for tool in self.tools or [] if isinstance(tool, CustomTool)]

    def check_version(self, version: str | None) -> None:
        """Apply the rules of the ``anthropic-version`` header (spec section 0)."""
        if version != STRICT_VERSION:
            return
        sampling = sorted({"temperature", "top_p", "top_k"} & self.model_fields_set)
        if sampling:
            raise InvalidRequest(f"{', '.join(sampling)}: not supported with anthropic-version {STRICT_VERSION}.")
        for i, message in enumerate(self.messages):
            for block in message.blocks():
                if message.role == "assistant" and isinstance(block, DocumentBlock):
                    raise InvalidRequest(f"messages.{i}: document blocks are not allowed in assistant turns.")
                if message.role == "user" and isinstance(block, TextBlock) and block.citations:
                    raise InvalidRequest(f"messages.{i}: user text blocks cannot carry citations.")


def _id_or_object(value: Any) -> str:
    return "object" if isinstance(value, (dict, BaseModel)) else "id"


# ``container``: an id, or ``{"id": ...}``; tagged so that an error is reported once.
ContainerField = Annotated[
    Annotated[str, Tag("id")] | Annotated[ContainerParam, Tag("object")],
    Discriminator(_id_or_object),
]


class Metadata(Wire):
    user_id: str | None = None


class ThreadCreate(Wire):
    """Start holding the conversation under the response's ``id``."""

    type: Literal["create"]


class ThreadContinue(Wire):
    """Continue from a stored response: ``messages`` holds only what came after it."""

    type: Literal["continue"]
    previous_message_id: str = Field(min_length=1)


ThreadParam = Annotated[ThreadCreate | ThreadContinue, Field(discriminator="type")]


class MessageCreateParams(MessageInput):
    """The body of ``POST /v1/messages``."""

    max_tokens: int = Field(ge=0)
    stop_sequences: list[str] | None = None
    stream: bool = False
    container: ContainerField | None = None
    metadata: Metadata | None = None
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0)
    thread: ThreadParam | None = None
    # ---- accepted, not acted on
    service_tier: str | None = None
    inference_geo: str | None = None
    diagnostics: Any = None
    fallbacks: Any = None
    fallback_credit_token: str | None = None

    @model_validator(mode="after")
    def _some_messages(self) -> MessageCreateParams:
        # An empty list only makes sense on a thread, whose stored conversation it continues.
        if not self.messages and not isinstance(self.thread, ThreadContinue):
            raise ValueError("messages: at least one message is required")
        return self

    @property
    def container_id(self) -> str | None:
        if isinstance(self.container, ContainerParam):
            return self.container.id
        return self.container


class CountTokensParams(MessageInput):
    """The body of ``POST /v1/messages/count_tokens``."""

    messages: list[MessageParam] = Field(min_length=1, max_length=100_000)


class TokenCount(BaseModel):
    input_tokens: int


# --- responses ------------------------------------------------------------------------------


class ServerToolUsage(BaseModel):
    # Both web counters are required by the SDKs even though execbox never searches.
    web_search_requests: int = 0
    web_fetch_requests: int = 0
    code_execution_requests: int = 0
    execution_time_seconds: float = 0.0


class CacheCreation(BaseModel):
    ephemeral_1h_input_tokens: int = 0
    ephemeral_5m_input_tokens: int = 0


class Usage(BaseModel):
    """Every field of the SDKs' ``Usage`` and ``BetaUsage`` (so also of ``MessageDeltaUsage``)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation: CacheCreation = Field(default_factory=CacheCreation)
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    server_tool_use: ServerToolUsage = Field(default_factory=ServerToolUsage)
    service_tier: Literal["standard"] = "standard"
    inference_geo: str | None = None
    output_tokens_details: dict[str, Any] | None = None
    speed: str | None = None
    fallback_credit: dict[str, Any] | None = None
    iterations: list[dict[str, Any]] | None = None


class ContainerInfo(BaseModel):
    id: str
    expires_at: datetime
    skills: list[dict[str, Any]] | None = None


StopReason = Literal[
    "end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal", "model_context_window_exceeded"
]


class Message(BaseModel):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[ContentBlock] = Field(default_factory=list)
    stop_reason: StopReason | None = None
    stop_sequence: str | None = None
    stop_details: dict[str, Any] | None = None
    usage: Usage = Field(default_factory=Usage)
    container: ContainerInfo | None = None
    diagnostics: dict[str, Any] | None = None
    context_management: dict[str, Any] | None = None


# --- server-sent events (spec section 6) ----------------------------------------------------


class MessageStartEvent(BaseModel):
    type: Literal["message_start"] = "message_start"
    message: Message


class ContentBlockStartEvent(BaseModel):
    type: Literal["content_block_start"] = "content_block_start"
    index: int
    content_block: ContentBlock


class TextDelta(BaseModel):
    type: Literal["text_delta"] = "text_delta"
    text: str


class InputJsonDelta(BaseModel):
    type: Literal["input_json_delta"] = "input_json_delta"
    partial_json: str


class ContentBlockDeltaEvent(BaseModel):
    type: Literal["content_block_delta"] = "content_block_delta"
    index: int
    delta: Annotated[TextDelta | InputJsonDelta, Field(discriminator="type")]


class ContentBlockStopEvent(BaseModel):
    type: Literal["content_block_stop"] = "content_block_stop"
    index: int


class MessageDelta(BaseModel):
    stop_reason: StopReason | None
    stop_sequence: str | None
    stop_details: dict[str, Any] | None = None
    container: ContainerInfo | None


class MessageDeltaEvent(BaseModel):
    """The end of the message. ``usage`` is cumulative over the whole request."""

    type: Literal["message_delta"] = "message_delta"
    delta: MessageDelta
    usage: Usage
    context_management: dict[str, Any] | None = None


class MessageStopEvent(BaseModel):
    type: Literal["message_stop"] = "message_stop"


class PingEvent(BaseModel):
    type: Literal["ping"] = "ping"


StreamEvent = Union[
    MessageStartEvent,
    ContentBlockStartEvent,
    ContentBlockDeltaEvent,
    ContentBlockStopEvent,
    MessageDeltaEvent,
    MessageStopEvent,
    PingEvent,
]
