"""The Messages tool loop: model -> server tool call -> sandbox -> result -> model, within one request.

``Conversation.start`` does every check that can fail before any output (model, container,
uploads) and returns a ``Turn``. ``Turn.events()`` runs the loop and yields the response as
stream events (spec section 6); a non-streaming response is the same run, drained
(``Turn.complete()``), so both forms always agree.

``message_start`` is held back until the first block (or the first execution) is about to be
sent. Its ``usage.input_tokens`` is the first model call's prompt size when the backend reports
it before its first block (``InputTokens``: the Anthropic and direct backends do), else 0;
``message_delta`` carries the cumulative usage of all model calls.

The model is told why a call's input was invalid: the reason goes into the copy of the result
block that backends see (``error_message``), while the response keeps the wire shape, which
has no such field for the code and bash tools. A client echoing the block back on a later
request does not carry the reason, so the model sees it during the request that ran the call only.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from pydantic_core import from_json

from execbox import logs
from execbox import metrics as metrics_module
from execbox.backends.base import (
    BlockStart,
    BlockStop,
    InputDelta,
    InputTokens,
    ModelBackend,
    ModelEvent,
    ModelRequest,
    TextDelta,
    ToolSpec,
    TurnStop,
)
from execbox.backends.registry import Backends
from execbox.containers.manager import Container, ContainerManager, Execution
from execbox.conversation.history import (
    current_uploads,
    model_view,
    open_calls,
    upload_ids,
    with_response,
    with_upload_notes,
)
from execbox.conversation.ptc import ProgrammaticCalls, WaitingCode, programmatic_tools
from execbox.conversation.ptc import check_request as check_programmatic_request
from execbox.conversation.results import ERROR_CODES, edit_block, error_block, execution_block
from execbox.conversation.thread_store import ThreadStore
from execbox.conversation.threads import Threads, ThreadTurn
from execbox.conversation.tools import SERVER_TOOLS, InvalidToolInput, sandbox_request, server_tools
from execbox.errors import (
    ContainerExpired,
    ExecboxError,
    FileNotFound,
    InvalidRequest,
    LegacyContainerExpired,
    RateLimited,
)
from execbox.files.store import FileStore, safe_filename
from execbox.ids import new_id
from execbox.metrics import Metrics
from execbox.protocol.messages import (
    CodeToolResultBlock,
    ContainerInfo,
    ContainerParam,
    ContentBlockDeltaEvent,
    ContentBlockStartEvent,
    ContentBlockStopEvent,
    InputJsonDelta,
    Message,
    MessageCreateParams,
    MessageDelta,
    MessageDeltaEvent,
    MessageInput,
    MessageStartEvent,
    MessageStopEvent,
    ServerToolUseBlock,
    StreamEvent,
    TextBlock,
    ToolUseBlock,
    Usage,
)
from execbox.protocol.messages import TextDelta as TextDeltaWire
from execbox.sandbox.types import WORKSPACE, EditRequest, ExecRequest
from execbox.settings import Settings
from execbox.usage.store import UsageStore

log = logging.getLogger("execbox.messages")

# Output images shown to the model in its tool result (``tool_result_images``): the types
# both Claude and OpenAI-compatible vision models read, and Claude's per-image size cap.
MODEL_IMAGE_TYPES = ("image/png", "image/jpeg")
MAX_MODEL_IMAGE_BYTES = 5 * 1024 * 1024
MAX_MODEL_IMAGES = 4


def tool_specs(params: MessageInput, cell_limit_s: float = 90.0) -> list[ToolSpec]:
    """The tools the model is offered: the code tool's server tools, then the client tools."""
    specs = server_tools(params.code_tool.type, cell_limit_s) if params.code_tool else []
    for tool in params.client_tools:
        if tool.name in SERVER_TOOLS:
            raise InvalidRequest(f"tools: `{tool.name}` is the name of a code execution tool; rename the client tool.")
        specs.append(ToolSpec(name=tool.name, input_schema=tool.input_schema, description=tool.description or ""))
    return specs


def model_request(
    params: MessageInput, messages: list[dict[str, Any]], max_tokens: int, cell_limit_s: float = 90.0
) -> ModelRequest:
    """A backend request for ``params`` over ``messages`` (shown to the model as ``model_view``)."""
    extra: dict[str, Any] = {"thinking": params.thinking} if params.thinking else {}
    stop_sequences: list[str] = []
    if isinstance(params, MessageCreateParams):
        for name in ("temperature", "top_p", "top_k"):
            if getattr(params, name) is not None:
                extra[name] = getattr(params, name)
        if params.metadata is not None:
            extra["metadata"] = params.metadata.model_dump(exclude_none=True)
        stop_sequences = params.stop_sequences or []
    tool_choice = params.tool_choice.model_dump(exclude_none=True) if params.tool_choice else None
    if tool_choice and tool_choice.get("name") == "code_execution" and params.code_tool:
        # Forcing the code tool forces its first sub-tool, the name the model knows it by.
        tool_choice["name"] = server_tools(params.code_tool.type)[0].name
    system = params.system
    return ModelRequest(
        model=params.model,
        messages=model_view(messages),
        max_tokens=max_tokens,
        system=system
        if system is None or isinstance(system, str)
        else [b.model_dump(exclude_unset=True) for b in system],
        tools=tool_specs(params, cell_limit_s),
        tool_choice=tool_choice,
        stop_sequences=stop_sequences,
        extra=extra,
    )


def history_of(params: MessageInput) -> list[dict[str, Any]]:
    """The request's messages as plain dicts, exactly as sent."""
    return [message.model_dump(mode="json", exclude_unset=True) for message in params.messages]


class Conversation:
    """Runs Messages requests against the model backends, containers and files.

    Without a ``ThreadStore`` (``threads``), requests that carry ``thread`` are answered
    ``thread_unsupported_request``.
    """

    def __init__(
        self,
        *,
        backends: Backends,
        containers: ContainerManager,
        files: FileStore,
        settings: Settings,
        threads: ThreadStore | None = None,
        metrics: Metrics = metrics_module.NULL,
    ) -> None:
        self.backends = backends
        self.containers = containers
        self.files = files
        self.settings = settings
        self.programmatic = ProgrammaticCalls()
        self.threads = Threads(threads, enabled=settings.message_threads, ttl_s=settings.thread_ttl)
        self.metrics = metrics
        self.usage: UsageStore | None = None  # metering (set by the composition root)

    async def start(self, params: MessageCreateParams, workspace: str) -> Turn:
        """Check the request and prepare its container; raises before any output is produced.

        On a thread, the request is first completed with the thread's stored conversation.
        The container is created (or fetched, when ``container`` names one) only when the
        code execution tool is offered; the current turn's ``container_upload`` files are
        copied into it.
        """
        logs.bind(model=params.model)
        backend = self.backends.for_model(params.model)
        thread = await self.threads.begin(params, workspace)
        try:
            turn = await self._start(thread.params if thread else params, workspace, backend)
        except BaseException:
            if thread is not None:
                await thread.finish()
            raise
        turn.thread = thread
        return turn

    async def _start(self, params: MessageCreateParams, workspace: str, backend: ModelBackend) -> Turn:
        history = history_of(params)
        _check_open_calls(history, tool_specs(params))
        check_programmatic_request(params)
        self.programmatic.check_continuation(history, params, workspace)
        uploads = current_uploads(history)
        if params.code_tool is None:
            if uploads:
                raise InvalidRequest("container_upload blocks need the code execution tool in `tools`.")
            return Turn(self, params, workspace, backend, history, None, raw_history=history)
        if isinstance(params.container, ContainerParam) and params.container.skills:
            raise InvalidRequest("container.skills: skills are not supported by this server.")
        records = [await asyncio.to_thread(self.files.get, workspace, file_id) for file_id in uploads]
        created = not params.container_id
        if params.container_id:
            try:
                container = await self.containers.get(workspace, params.container_id)
            except ContainerExpired:
                if self.settings.tool_error_names == "legacy":
                    raise LegacyContainerExpired(params.container_id) from None
                raise
        else:
            container = await self.containers.create(workspace)
        logs.bind(container_id=container.id)
        try:
            paths = await asyncio.to_thread(self._earlier_upload_paths, workspace, history)
            for record in records:
                paths[record.id] = f"{WORKSPACE}/{await self.containers.upload(workspace, container.id, record)}"
        except BaseException:
            if created:
                await _release(self.containers, workspace, container.id)
            raise
        turn = Turn(self, params, workspace, backend, with_upload_notes(history, paths), container, raw_history=history)
        turn.created_container = created
        return turn

    def _earlier_upload_paths(self, workspace: str, history: list[dict[str, Any]]) -> dict[str, str]:
        """Where the files of earlier turns' uploads went (those still in the Files API)."""
        paths = {}
        for file_id in upload_ids(history[:-1]):
            try:
                paths[file_id] = f"{WORKSPACE}/{safe_filename(self.files.get(workspace, file_id).filename)}"
            except FileNotFound:
                continue
        return paths

    async def count_tokens(self, params: MessageInput) -> int:
        backend = self.backends.for_model(params.model)
        return await backend.count_tokens(
            model_request(params, history_of(params), max_tokens=1, cell_limit_s=self.settings.exec_timeout)
        )


class Turn:
    """One request's run of the tool loop; ``message`` is the response, complete once the events end."""

    def __init__(
        self,
        conversation: Conversation,
        params: MessageCreateParams,
        workspace: str,
        backend: ModelBackend,
        history: list[dict[str, Any]],
        container: Container | None,
        raw_history: list[dict[str, Any]] | None = None,
    ) -> None:
        self._settings = conversation.settings
        self.thread: ThreadTurn | None = None
        self._raw_history = history if raw_history is None else raw_history  # as sent: what a thread keeps
        self._containers = conversation.containers
        self._metrics = conversation.metrics
        # Metric labels name listed models only: callers choose the model id, and a label per
        # made-up id would grow the server's memory without bound.
        listed = {info.id for info in conversation.backends.models()}
        self._model_label = params.model if params.model in listed else "other"
        self._usage = conversation.usage
        self.params = params
        self.workspace = workspace
        self.backend = backend
        self.history = history
        self.container = container
        self.message = Message(
            id=new_id("msg"),
            model=params.model,
            container=ContainerInfo(id=container.id, expires_at=container.expires_at) if container else None,
        )
        self.created_container = False  # this request created ``container``
        self.model_calls = 0
        self.executions = 0
        self.prompt_tokens = 0  # the first model call's input tokens, when known early
        self._programmatic = conversation.programmatic
        self._waiting_code: set[str] = set()  # server calls of this response that wait for client tools
        self._invalid_inputs: dict[str, str] = {}  # tool_use_id -> why its input was refused
        self._files = conversation.files
        self._images: dict[str, list[dict[str, str]]] = {}  # tool_use_id -> images the model is shown

    async def complete(self) -> Message:
        """Run the whole loop and return the response."""
        async for _ in self.events():
            pass
        return self.message

    async def events(self) -> AsyncIterator[StreamEvent]:
        """The response as stream events. ``message_start`` is held back until there is
        something to say, so failures that happen before (an upstream rejecting the
        request) surface as plain errors."""
        message = self.message
        started = False
        try:
            async for event in self._run():
                if not started:
                    started = True
                    yield self._message_start()
                if event is not None:
                    yield event
            await self._refresh_container()
            if self.thread is not None:
                await self.thread.store(message, self._raw_history)
            if not started:
                yield self._message_start()
            yield MessageDeltaEvent(
                delta=MessageDelta(
                    stop_reason=message.stop_reason, stop_sequence=message.stop_sequence, container=message.container
                ),
                usage=message.usage,
            )
            yield MessageStopEvent()
        except BaseException:
            # A turn that failed (an upstream model down, a cancelled request) before any code
            # ran leaves nothing in the container it created: free it now, not at its TTL.
            if self.created_container and self.executions == 0 and self.container is not None:
                await asyncio.shield(_release(self._containers, self.workspace, self.container.id))
            raise
        finally:
            self._meter_tokens()
            if self.thread is not None:
                await self.thread.finish()
            self._metrics.messages.labels(self._model_label, message.stop_reason or "error").inc()
            log.info(
                "message %s model=%s stream=%s model_calls=%d executions=%d stop_reason=%s container=%s",
                message.id,
                message.model,
                self.params.stream,
                self.model_calls,
                self.executions,
                message.stop_reason or "error",
                self.container.id if self.container else None,
            )

    def _meter_tokens(self) -> None:
        """Record the tokens of every model call made, even if the turn then failed (in a worker
        thread, without waiting: this runs while the turn's generator closes)."""
        usage = self.message.usage
        if self._usage is None or not self.model_calls or not (usage.input_tokens or usage.output_tokens):
            return
        record = functools.partial(
            self._usage.record, self.workspace, "tokens", model=self.params.model,
            input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
        )
        future = asyncio.get_running_loop().run_in_executor(None, record)
        future.add_done_callback(
            lambda f: f.cancelled() or f.exception() is None or log.error("could not record tokens: %s", f.exception())
        )

    def _message_start(self) -> MessageStartEvent:
        usage = Usage(input_tokens=self.prompt_tokens)
        return MessageStartEvent(message=Message(id=self.message.id, model=self.message.model, usage=usage))

    def _stop(self, reason: str, sequence: str | None = None) -> None:
        self.message.stop_reason = reason  # type: ignore[assignment]
        self.message.stop_sequence = sequence

    def _conversation_so_far(self) -> list[dict[str, Any]]:
        response = [block.model_dump(mode="json", exclude_none=True) for block in self.message.content]
        for block in response:
            reason = self._invalid_inputs.get(block.get("tool_use_id", ""))
            if reason and "error_message" not in block["content"]:
                block["content"]["error_message"] = reason
            images = self._images.get(block.get("tool_use_id", ""))
            if images:
                block["content"]["images"] = images
        return with_response(self.history, response)

    async def _run(self) -> AsyncIterator[StreamEvent | None]:
        """The loop. It yields None where it is about to do slow work, so the message can start."""
        params, usage = self.params, self.message.usage
        limit = max(1, self._settings.max_tool_iterations)
        if params.max_tokens == 0:
            # Cache pre-warming: nothing is generated.
            request = model_request(params, self.history, max_tokens=0, cell_limit_s=self._settings.exec_timeout)
            usage.input_tokens = self.prompt_tokens = await self.backend.count_tokens(request)
            self._stop("max_tokens")
            return
        while True:
            for call in open_calls(self._conversation_so_far()):
                if call["type"] == "tool_use":
                    self._stop("tool_use")
                    return
                async for event in self._execute(call):
                    yield event
                if call["id"] in self._waiting_code:  # its code awaits client tools
                    self._stop("tool_use")
                    return
            if self.executions >= limit:
                # Right after a result block, with no server call left pending: every client
                # can continue from here, whatever the tool version.
                self._stop("pause_turn")
                return
            remaining = params.max_tokens - usage.output_tokens
            if remaining <= 0:
                self._stop("max_tokens")
                return
            request = model_request(
                params, self._conversation_so_far(), remaining, cell_limit_s=self._settings.exec_timeout
            )
            if self.model_calls and request.tool_choice and request.tool_choice["type"] in ("any", "tool"):
                # A forced tool choice applies to the first step only, or the loop would never end.
                request.tool_choice = {**request.tool_choice, "type": "auto"}
                request.tool_choice.pop("name", None)
            stop: TurnStop | None = None
            async for event in self._model_turn(request):
                if isinstance(event, TurnStop):
                    stop = event
                else:
                    yield event
            assert stop is not None, "a model turn ends with TurnStop"
            if stop.stop_reason not in ("tool_use", "end_turn") or not open_calls(self._conversation_so_far()):
                self._stop(stop.stop_reason, stop.stop_sequence)
                return

    async def _model_turn(self, request: ModelRequest) -> AsyncIterator[StreamEvent | TurnStop]:
        """One model call: its blocks become response blocks, streamed as they come."""
        server_names = {spec.name for spec in request.tools if spec.server}
        content, usage = self.message.content, self.message.usage
        self.model_calls += 1
        block: TextBlock | ServerToolUseBlock | ToolUseBlock | None = None
        arguments = ""
        async for event in self._timed(self.backend.stream(request), request.model):
            index = len(content) - 1
            if isinstance(event, InputTokens):
                if self.model_calls == 1:
                    self.prompt_tokens = event.count
            elif isinstance(event, BlockStart):
                if event.kind == "text":
                    block = TextBlock(text="")
                elif event.name in server_names:
                    block = ServerToolUseBlock(id=new_id("srvtoolu"), name=event.name or "", input={})
                else:
                    block = ToolUseBlock(id=new_id("toolu"), name=event.name or "", input={})
                arguments = ""
                content.append(block)
                yield ContentBlockStartEvent(index=len(content) - 1, content_block=block.model_copy())
            elif isinstance(event, TextDelta) and isinstance(block, TextBlock):
                block.text += event.text
                yield ContentBlockDeltaEvent(index=index, delta=TextDeltaWire(text=event.text))
            elif isinstance(event, InputDelta) and isinstance(block, (ServerToolUseBlock, ToolUseBlock)):
                arguments += event.partial_json
                yield ContentBlockDeltaEvent(index=index, delta=InputJsonDelta(partial_json=event.partial_json))
            elif isinstance(event, BlockStop) and block is not None:
                if not isinstance(block, TextBlock):
                    block.input = _parse_input(arguments)
                block = None
                yield ContentBlockStopEvent(index=index)
            elif isinstance(event, TurnStop):
                usage.input_tokens += event.input_tokens
                usage.output_tokens += event.output_tokens
                yield event

    async def _timed(self, events: AsyncIterator[ModelEvent], model: str) -> AsyncIterator[ModelEvent]:
        """A model call's events, counted and timed to the end of its stream."""
        backend = type(self.backend).__name__.removesuffix("Backend").lower() or "model"
        started = time.perf_counter()
        outcome = "cancelled"
        try:
            async for event in events:
                yield event
            outcome = "ok"
        except ExecboxError as exc:
            outcome = exc.type
            raise
        except Exception:
            outcome = "api_error"
            raise
        finally:
            seconds = time.perf_counter() - started
            self._metrics.model_requests.labels(backend, self._model_label, outcome).inc()
            self._metrics.model_duration.labels(backend, self._model_label).observe(seconds)
            log.info(
                "model call %s via %s: %s in %.0f ms", model, backend, outcome, seconds * 1000,
                extra={"backend": backend, "outcome": outcome, "duration_ms": round(seconds * 1000, 1)},
            )

    async def _execute(self, call: dict[str, Any]) -> AsyncIterator[StreamEvent | None]:
        """Run one server tool call (or go on with one whose code awaited client tools) and
        emit its result block, or the ``tool_use`` blocks of the calls its code now awaits."""
        name, tool_use_id = call["name"], call["id"]
        waiting = self._programmatic.waiting(tool_use_id, self.workspace)
        if waiting is None:
            self.executions += 1
        yield None
        try:
            version = self.params.code_tool.type if self.params.code_tool else None
            request = sandbox_request(name, call.get("input") or {}, version)
        except InvalidToolInput as exc:
            self._invalid_inputs[tool_use_id] = str(exc)
            outcome: CodeToolResultBlock | list[ToolUseBlock] = error_block(
                name, tool_use_id, "invalid_tool_input", str(exc)
            )
        else:
            if isinstance(request, ExecRequest) and request.session:
                request = replace(
                    request, tools=programmatic_tools(self.params), tool_wait_s=self._settings.tool_wait
                )
            outcome = await self._sandbox(name, tool_use_id, request, waiting)
        if isinstance(outcome, list):  # the code awaits client tools: the client runs them
            self._waiting_code.add(tool_use_id)
            for block in outcome:
                self.message.content.append(block)
                index = len(self.message.content) - 1
                yield ContentBlockStartEvent(index=index, content_block=block.model_copy(update={"input": {}}))
                yield ContentBlockDeltaEvent(index=index, delta=InputJsonDelta(partial_json=json.dumps(block.input)))
                yield ContentBlockStopEvent(index=index)
            return
        self.message.content.append(outcome)
        index = len(self.message.content) - 1
        yield ContentBlockStartEvent(index=index, content_block=outcome)
        yield ContentBlockStopEvent(index=index)

    async def _sandbox(
        self, name: str, tool_use_id: str, request: ExecRequest | EditRequest, waiting: WaitingCode | None = None
    ) -> CodeToolResultBlock | list[ToolUseBlock]:
        assert self.container is not None, "server tools are only offered with a container"
        names = self._settings.tool_error_names
        server_usage = self.message.usage.server_tool_use
        try:
            if isinstance(request, EditRequest):
                server_usage.code_execution_requests += 1
                return edit_block(tool_use_id, await self._containers.edit(self.workspace, self.container.id, request))
            if waiting is not None:
                self._programmatic.done(tool_use_id)
                results = self._programmatic.results(waiting, self.history)
                execution = await self._containers.resume(self.workspace, self.container.id, results)
            else:
                execution = await self._containers.execute(self.workspace, self.container.id, request)
        except ContainerExpired:
            return error_block(name, tool_use_id, ERROR_CODES[names]["expired"])
        except RateLimited:
            raise  # over the workspace's execution quota: the caller gets 429 and retry-after
        except ExecboxError as exc:
            log.warning("%s in %s failed: %s", name, self.container.id, exc.message)
            return error_block(name, tool_use_id, "unavailable")
        except Exception:
            log.exception("%s in %s failed", name, self.container.id)
            return error_block(name, tool_use_id, "unavailable")
        if execution.result.tool_calls:
            return self._programmatic.wait(tool_use_id, self.workspace, self.container.id, execution.result.tool_calls)
        # Counted once the code has finished (calls made by code are not counted: the contract's A2).
        server_usage.code_execution_requests += 1
        server_usage.execution_time_seconds = round(
            server_usage.execution_time_seconds + execution.result.duration_s, 3
        )
        if self._settings.tool_result_images and not execution.result.timed_out:
            images = await asyncio.to_thread(self._images_of, execution)
            if images:
                self._images[tool_use_id] = images
        cell_limit_s = self._settings.exec_timeout if request.session else None
        return execution_block(name, tool_use_id, execution, names, cell_limit_s=cell_limit_s)

    def _images_of(self, execution: Execution) -> list[dict[str, str]]:
        """The execution's PNG and JPEG output files, base64-encoded for the model (runs in a
        worker thread): the first ``MAX_MODEL_IMAGES``, each at most ``MAX_MODEL_IMAGE_BYTES``."""
        images = []
        for generated in execution.files:
            record = generated.file
            if record is None or record.mime_type not in MODEL_IMAGE_TYPES or record.size_bytes > MAX_MODEL_IMAGE_BYTES:
                continue
            try:
                data = self._files.path(self.workspace, record.id).read_bytes()
            except (ExecboxError, OSError):
                continue
            images.append({"media_type": record.mime_type, "data": base64.b64encode(data).decode("ascii")})
            if len(images) == MAX_MODEL_IMAGES:
                break
        return images

    async def _refresh_container(self) -> None:
        """Executions push the container's expiry back: report the latest."""
        if self.container is None or not self.executions:
            return
        try:
            container = await self._containers.get(self.workspace, self.container.id)
        except ExecboxError:
            return
        self.message.container = ContainerInfo(id=container.id, expires_at=container.expires_at)


async def _release(containers: ContainerManager, workspace: str, container_id: str) -> None:
    try:
        await containers.destroy(workspace, container_id)
        log.info("released container %s: its request failed before any code ran", container_id)
    except Exception:
        log.exception("could not release container %s", container_id)


def _check_open_calls(history: list[dict[str, Any]], tools: list[ToolSpec]) -> None:
    """Refuse a conversation whose unanswered calls cannot be resumed: a server call of a tool
    this request does not offer, or a client call the client did not answer first."""
    runnable = {spec.name for spec in tools if spec.server}
    calls = open_calls(history)
    for call in calls:
        if call["type"] == "server_tool_use" and call["name"] not in runnable:
            raise InvalidRequest(
                f"messages: `server_tool_use` `{call['id']}` has no result, and the `tools` of this request "
                f"do not offer `{call['name']}`, so it cannot be run."
            )
    if calls and calls[0]["type"] == "tool_use":
        raise InvalidRequest(
            f"messages: `tool_use` `{calls[0]['id']}` has no `tool_result`. Answer it with a user message "
            f"of `tool_result` blocks."
        )


def _parse_input(arguments: str) -> dict[str, Any]:
    """A tool call's JSON input; malformed input becomes ``{}`` (and fails schema checks later).

    Input cut short (the model hit ``max_tokens``) is read the way the SDKs read it from the
    stream, so a plain response and a streamed one end with the same input.
    """
    try:
        value = from_json(arguments, allow_partial=True) if arguments.strip() else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
