"""Rewrite execbox's conversation for models that only know *client* tools.

An upstream model sees execbox's code tools as ordinary tools, so the history is put in
that form: each ``server_tool_use`` becomes a ``tool_use`` (same id) and each server
result block becomes a ``tool_result`` in a user message, with a text rendering of the
result. An assistant message holding ``[text, server_tool_use, result, text]`` becomes
``assistant [text, tool_use]``, ``user [tool_result]``, ``assistant [text]``.

Images an execution produced (``images`` in the result's content, put there by the tool loop
when ``tool_result_images`` is on) go into the ``tool_result`` as image blocks after the text.

Also dropped on the way: thinking blocks (they belong to another model's turn),
``container_upload`` blocks (the file is already in the container), empty text blocks
and null fields such as ``citations: null``.
"""

from __future__ import annotations

import json
from typing import Any

from execbox.protocol.messages import SERVER_RESULT_TYPES

_DROPPED_TYPES = frozenset({"thinking", "redacted_thinking", "container_upload"})


def client_tool_history(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation in client-tool form: only text, image, document, tool_use and tool_result
    blocks, roles alternating, each user message's tool_result blocks first."""
    turns: list[dict[str, Any]] = []
    for message in messages:
        for block in blocks(message.get("content")):
            role, converted = _convert_block(message["role"], block)
            if converted is None:
                continue
            if turns and turns[-1]["role"] == role:
                turns[-1]["content"].append(converted)
            else:
                turns.append({"role": role, "content": [converted]})
    for turn in turns:
        if turn["role"] == "user":
            # Upstreams want a user turn's tool results before anything else in it.
            turn["content"].sort(key=lambda block: block["type"] != "tool_result")
    return turns


def blocks(content: str | list[Any] | None) -> list[dict[str, Any]]:
    """Message content as a list of blocks without null fields (a string is one text block)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [_without_nulls(block) for block in content]


def _without_nulls(block: dict[str, Any]) -> dict[str, Any]:
    cleaned = {key: value for key, value in block.items() if value is not None}
    if cleaned.get("type") == "tool_result" and isinstance(cleaned.get("content"), list):
        cleaned["content"] = blocks(cleaned["content"])
    return cleaned


def render_result(content: dict[str, Any]) -> tuple[str, bool]:
    """A server tool result's ``content`` as the text the model reads, and whether it is an error."""
    kind = content.get("type", "")
    if kind.endswith("_tool_result_error"):
        text = f"Error: {content.get('error_code', 'unavailable')}"
        if content.get("error_message"):
            text += f"\n{content['error_message']}"
        return text, True
    if kind in ("code_execution_result", "bash_code_execution_result", "encrypted_code_execution_result"):
        parts = [f"{name}:\n{content[name]}" for name in ("stdout", "stderr") if content.get(name)]
        parts.append(f"return_code: {content.get('return_code', 0)}")
        return "\n".join(parts), False
    if kind == "text_editor_code_execution_view_result":
        return content.get("content", ""), False
    if kind == "text_editor_code_execution_create_result":
        return ("File updated." if content.get("is_file_update") else "File created."), False
    if kind == "text_editor_code_execution_str_replace_result":
        return "\n".join(["Replaced.", *content.get("lines", [])]), False
    return json.dumps(content), False


def _convert_block(role: str, block: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    kind = block.get("type")
    if kind in _DROPPED_TYPES or (kind == "text" and not block.get("text")):
        return role, None
    if kind == "server_tool_use":
        return role, {"type": "tool_use", "id": block["id"], "name": block["name"], "input": block.get("input", {})}
    if kind in SERVER_RESULT_TYPES:
        content = block.get("content") or {}
        text, is_error = render_result(content)
        result: dict[str, Any] = {"type": "tool_result", "tool_use_id": block["tool_use_id"], "content": text}
        if content.get("images"):
            result["content"] = [{"type": "text", "text": text}] + [
                {"type": "image", "source": {"type": "base64", "media_type": image["media_type"], "data": image["data"]}}
                for image in content["images"]
            ]
        if is_error:
            result["is_error"] = True
        return "user", result
    if kind == "tool_use":
        # ``caller`` describes execbox's own routing (programmatic calls), not the upstream's.
        return role, {key: value for key, value in block.items() if key != "caller"}
    return role, block

