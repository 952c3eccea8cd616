"""Building requests for the tool loop's tests."""

from __future__ import annotations

from typing import Any

from execbox.protocol.messages import MessageCreateParams


def request(content: Any, tool: str | None = "code_execution_20250825", **fields: Any) -> MessageCreateParams:
    """A request with one user message and (unless ``tool`` is None) the code execution tool."""
    messages = fields.pop("messages", [{"role": "user", "content": content}])
    body: dict[str, Any] = {"model": "execbox-direct", "max_tokens": 4096, "messages": messages, **fields}
    if tool:
        body["tools"] = [{"type": tool, "name": "code_execution"}, *body.get("tools", [])]
    return MessageCreateParams.model_validate(body)
