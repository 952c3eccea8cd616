"""The built-in ``direct`` model: offline, deterministic, runs the code it is given.

It serves ``execbox-direct`` and the ids it is given as aliases: with no Anthropic key
configured, the Claude ids of the product documents (``claude-opus-4-20250514``...), so
their examples work offline (``EXECBOX_DIRECT_MODELS``). It executes the fenced blocks of
the last user message, in order, one tool call per turn; the info string selects the action:

- ```` ```python ````, ```` ```py ```` or no language: Python.
- ```` ```bash ```` or ```` ```sh ````: a bash command.
- ```` ```create PATH ````, ```` ```view PATH ````, ```` ```str_replace PATH ````: a text editor
  call (``str_replace`` body: the old text, a line ``=====``, the new text).
- ```` ```tool NAME ````: a call of the client tool NAME with the JSON body as input.
- ```` ```error STATUS ````: the model itself fails with that HTTP status (body: the message),
  as an upstream model would; handy for testing failures in the middle of a turn.

Python runs as is through ``code_execution`` where it is offered: 20250522 (bash then
through ``subprocess.run``; text editor blocks are skipped), and 20260120/20260521, where the
cells share the container's live interpreter (REPL state). With 20250825 Python runs as
``python3`` fed by a heredoc through ``bash_code_execution``. Blocks whose tool is not offered are skipped. Which blocks
already ran is read from the conversation (the tool calls after the last user text), so
``pause_turn`` continuations and client tool replies resume where the turn left off.
After the last block it answers with the last result's output (stdout, or stderr if the
code failed); without any runnable block it says it only runs fenced code blocks.

Tokens are counted as ``ceil(characters / 4)`` of the JSON-serialized input or output.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any

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
from execbox.errors import InvalidRequest, error_for_status

MODEL_ID = "execbox-direct"
NO_CODE = "I run the fenced code blocks (```python or ```bash) of your message, and there were none to run."
_TEXT_CHUNK = 16
_JSON_CHUNK = 32
_FENCE = re.compile(r"^```[ \t]*([^\n`]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_RESULT_TYPES = (
    "code_execution_tool_result",
    "bash_code_execution_tool_result",
    "text_editor_code_execution_tool_result",
    "tool_result",
)


def approximate_tokens(value: Any) -> int:
    """The direct model's token count: a quarter of the JSON-serialized characters, rounded up."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return math.ceil(len(text) / 4)


@dataclass(frozen=True)
class _Call:
    """One action of the script: a tool call, or a failure (``error`` holds the HTTP status)."""

    name: str
    input: dict[str, Any]
    error: int | None = None


class DirectBackend:
    """The offline model (see the module docstring)."""

    def __init__(self, aliases: list[str] | tuple[str, ...] = ()) -> None:
        self._ids = [MODEL_ID, *(alias for alias in dict.fromkeys(aliases) if alias != MODEL_ID)]

    def models(self) -> list[ModelInfo]:
        name = "execbox direct (runs fenced code blocks)"
        return [ModelInfo(id=MODEL_ID, display_name=name)] + [
            ModelInfo(id=alias, display_name=f"{alias}, served by {name}") for alias in self._ids[1:]
        ]

    def serves(self, model: str) -> bool:
        return model in self._ids

    async def count_tokens(self, request: ModelRequest) -> int:
        return approximate_tokens(
            {"system": request.system, "messages": request.messages, "tools": [asdict(t) for t in request.tools]}
        )

    async def aclose(self) -> None:
        return None

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        input_tokens = await self.count_tokens(request)
        yield InputTokens(input_tokens)
        prompt_index = _last_prompt(request.messages)
        later = request.messages[prompt_index + 1 :] if prompt_index is not None else []
        script = _script(request, _prompt_text(request.messages[prompt_index]) if prompt_index is not None else "")
        done = sum(1 for block in _blocks_of(later) if block.get("type") in ("tool_use", "server_tool_use"))
        if done < len(script):
            call = script[done]
            if call.error is not None:
                raise error_for_status(call.error, call.input["message"])
            arguments = json.dumps(call.input, ensure_ascii=False)
            yield BlockStart(kind="tool_use", name=call.name)
            for piece in _pieces(arguments, max(2, math.ceil(len(arguments) / _JSON_CHUNK))):
                yield InputDelta(piece)
            yield BlockStop()
            yield TurnStop("tool_use", input_tokens, approximate_tokens(arguments))
            return
        answer = _describe(_last_result(later)) if done else NO_CODE
        text, stop_reason, stop_sequence = _limit(answer, request.max_tokens, request.stop_sequences)
        yield BlockStart(kind="text")
        for i in range(0, len(text), _TEXT_CHUNK):
            yield TextDelta(text[i : i + _TEXT_CHUNK])
        yield BlockStop()
        yield TurnStop(stop_reason, input_tokens, max(1, approximate_tokens(text)), stop_sequence)


def _blocks_of(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for message in messages:
        content = message.get("content")
        blocks.extend([{"type": "text", "text": content}] if isinstance(content, str) else content or [])
    return blocks


def _last_prompt(messages: list[dict[str, Any]]) -> int | None:
    """Index of the last user message with text (tool-result replies are not prompts)."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i]["role"] == "user" and any(b.get("type") == "text" for b in _blocks_of([messages[i]])):
            return i
    return None


def _prompt_text(message: dict[str, Any]) -> str:
    return "\n".join(b["text"] for b in _blocks_of([message]) if b.get("type") == "text")


def _script(request: ModelRequest, text: str) -> list[_Call]:
    """The calls the fenced blocks of ``text`` ask for, given the tools on offer."""
    offered = {} if (request.tool_choice or {}).get("type") == "none" else {t.name: t for t in request.tools}
    calls: list[_Call] = []
    for info, body in _FENCE.findall(text):
        words = info.split(maxsplit=1)
        kind = words[0].lower() if words else "python"
        argument = words[1].strip() if len(words) > 1 else ""
        call = _call_for(kind, argument, body, offered)
        if call is not None:
            calls.append(call)
    return calls


def _call_for(kind: str, argument: str, body: str, offered: dict[str, Any]) -> _Call | None:
    if kind == "error":
        if not argument.isdigit():
            raise InvalidRequest(f"An ```error block needs an HTTP status, not {argument!r}.")
        return _Call("", {"message": body.strip() or "The model failed."}, error=int(argument))
    if kind == "tool":
        if argument not in offered:
            return None
        try:
            tool_input = json.loads(body or "{}")
        except ValueError:
            tool_input = None
        if not isinstance(tool_input, dict):
            raise InvalidRequest(f"The input of the ```tool {argument} block is not a JSON object.")
        return _Call(argument, tool_input)
    if kind in ("python", "py") and "code_execution" in offered:  # 20250522, and the REPL versions
        return _Call("code_execution", {"code": body})
    if "bash_code_execution" in offered:
        if kind in ("python", "py"):
            return _Call("bash_code_execution", {"command": _python_heredoc(body)})
        if kind in ("bash", "sh"):
            return _Call("bash_code_execution", {"command": body})
    if "code_execution" in offered:
        if kind in ("bash", "sh"):
            run = f"subprocess.run({body!r}, shell=True, executable='/bin/bash')"
            return _Call("code_execution", {"code": f"import subprocess\nraise SystemExit({run}.returncode)\n"})
    if "text_editor_code_execution" in offered and argument:
        if kind == "create":
            return _Call("text_editor_code_execution", {"command": "create", "path": argument, "file_text": body})
        if kind == "view":
            return _Call("text_editor_code_execution", {"command": "view", "path": argument})
        if kind == "str_replace":
            old, _, new = body.partition("\n=====\n")
            return _Call(
                "text_editor_code_execution",
                {"command": "str_replace", "path": argument, "old_str": old, "new_str": new.rstrip("\n")},
            )
    return None


def _python_heredoc(code: str) -> str:
    delimiter = "EXECBOX_PY"
    while delimiter in code.splitlines():
        delimiter += "_"
    return f"python3 - <<'{delimiter}'\n{code}{'' if code.endswith(chr(10)) else chr(10)}{delimiter}\n"


def _pieces(text: str, count: int) -> list[str]:
    size = max(1, math.ceil(len(text) / count))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _last_result(messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    results = [b for b in _blocks_of(messages) if b.get("type") in _RESULT_TYPES]
    return results[-1] if results else None


def _describe(result: dict[str, Any] | None) -> str:
    """The text the direct model answers with: what the last call produced."""
    if result is None:
        return "(no output)"
    content = result.get("content")
    if result["type"] == "tool_result":
        if isinstance(content, list):
            content = "".join(b.get("text", "") for b in content)
        return content or "(no output)"
    kind = content.get("type", "")
    if kind.endswith("_tool_result_error"):
        return f"The tool failed: {content['error_code']}" + (
            f" ({content['error_message']})" if content.get("error_message") else ""
        )
    if kind.endswith("view_result"):
        text = content["content"]
    elif kind.endswith("create_result"):
        text = "File updated." if content["is_file_update"] else "File created."
    elif kind.endswith("str_replace_result"):
        text = "\n".join(content.get("lines") or []) or "Replaced."
    else:
        text = content["stdout"] if content.get("return_code") == 0 else content["stderr"] or content["stdout"]
    return text or "(no output)"


def _limit(text: str, max_tokens: int, stop_sequences: list[str]) -> tuple[str, str, str | None]:
    """Cut ``text`` at the first stop sequence or at ``max_tokens``; returns (text, stop_reason, sequence)."""
    found = [(text.find(s), s) for s in stop_sequences if s and s in text]
    if found:
        position, sequence = min(found)
        text, stop_reason, stop_sequence = text[:position], "stop_sequence", sequence
    else:
        stop_reason, stop_sequence = "end_turn", None
    if approximate_tokens(text) > max_tokens:
        return text[: max_tokens * 4], "max_tokens", None
    return text, stop_reason, stop_sequence
