"""Reading a conversation: open tool calls, uploads of the current turn, the model's view.

Messages are plain dicts in the Messages API format. A *turn* starts at the last user
message that is not only ``tool_result`` blocks; the calls of the assistant messages after
it that have no result yet are *open*: open server calls are run before the model is asked
again, an open client call ends the response with ``stop_reason: tool_use``.
"""

from __future__ import annotations

from typing import Any

from execbox.protocol.messages import SERVER_RESULT_TYPES

Block = dict[str, Any]
MessageDict = dict[str, Any]


def blocks(message: MessageDict) -> list[Block]:
    """A message's content as blocks (a string is one text block)."""
    content = message["content"]
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def with_response(messages: list[MessageDict], response: list[Block]) -> list[MessageDict]:
    """The conversation including the response built so far: appended to a trailing
    assistant message (a continuation), else as a new assistant message."""
    if not response:
        return list(messages)
    if messages and messages[-1]["role"] == "assistant":
        return [*messages[:-1], {"role": "assistant", "content": blocks(messages[-1]) + response}]
    return [*messages, {"role": "assistant", "content": list(response)}]


def _is_tool_reply(message: MessageDict) -> bool:
    content = blocks(message)
    return bool(content) and all(block.get("type") == "tool_result" for block in content)


def turn_start(messages: list[MessageDict]) -> int:
    """Index of the message that opened the current turn (the last user prompt), or -1."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i]["role"] == "user" and not _is_tool_reply(messages[i]):
            return i
    return -1


def _answered_ids(messages: list[MessageDict]) -> set[str]:
    # Any result block answers its call, including those of server tools execbox does not run
    # (``web_search_tool_result``...), which a client may echo from another service's responses.
    return {
        block["tool_use_id"]
        for message in messages
        for block in blocks(message)
        if block["type"].endswith("tool_result")
    }


def open_calls(messages: list[MessageDict]) -> list[Block]:
    """The ``server_tool_use`` and ``tool_use`` blocks of the current turn without a result, in order."""
    answered = _answered_ids(messages)
    return [
        block
        for message in messages[turn_start(messages) + 1 :]
        if message["role"] == "assistant"
        for block in blocks(message)
        if block.get("type") in ("server_tool_use", "tool_use") and block["id"] not in answered
    ]


def upload_ids(messages: list[MessageDict]) -> list[str]:
    """File ids of the ``container_upload`` blocks of ``messages``."""
    return [
        block["file_id"] for message in messages for block in blocks(message) if block.get("type") == "container_upload"
    ]


def current_uploads(messages: list[MessageDict]) -> list[str]:
    """File ids of the ``container_upload`` blocks of the last message, if it is the user's:
    only those are copied into the container (earlier ones already were)."""
    if not messages or messages[-1]["role"] != "user":
        return []
    return upload_ids(messages[-1:])


def with_upload_notes(messages: list[MessageDict], paths: dict[str, str]) -> list[MessageDict]:
    """Follow each ``container_upload`` block whose file's place is known with a text block
    saying where the file is, for the model (backends do not see the block's file)."""
    noted: list[MessageDict] = []
    for message in messages:
        if isinstance(message["content"], str):
            noted.append(message)
            continue
        content: list[Block] = []
        for block in message["content"]:
            content.append(block)
            if block.get("type") == "container_upload" and block["file_id"] in paths:
                path = paths[block["file_id"]]
                content.append(
                    {"type": "text", "text": f"(The file {block['file_id']} is in the container at {path}.)"}
                )
        noted.append({**message, "content": content})
    return noted


def model_view(messages: list[MessageDict]) -> list[MessageDict]:
    """The conversation as handed to a model backend.

    Each server result is placed right after the run of tool calls its ``server_tool_use``
    belongs to, so calls the model made together stay together, as the model produced them (a
    result sent in a later message, after a client tool reply, moves back to its calls); server
    calls without a result (abandoned by a new prompt) and results without a call are dropped;
    messages left empty disappear and consecutive messages of one role merge.
    """
    results = {
        block["tool_use_id"]: block
        for message in messages
        for block in blocks(message)
        if block.get("type") in SERVER_RESULT_TYPES
    }
    view: list[MessageDict] = []
    for message in messages:
        content: list[Block] | str
        if isinstance(message["content"], str):
            content = message["content"]
        else:
            content = []
            pending: list[Block] = []  # results of the current run of calls
            for block in message["content"]:
                kind = block.get("type")
                if kind == "server_tool_use":
                    if block["id"] in results:
                        content.append(block)
                        pending.append(results[block["id"]])
                    continue
                if kind != "tool_use":
                    content += pending
                    pending = []
                if kind not in SERVER_RESULT_TYPES:
                    content.append(block)
            content += pending
            if not content:
                continue
        if view and view[-1]["role"] == message["role"]:
            view[-1] = {"role": message["role"], "content": blocks(view[-1]) + blocks({"content": content})}
        else:
            view.append({**message, "content": content})
    return view
