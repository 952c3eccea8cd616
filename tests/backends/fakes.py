"""Fake upstream model servers: real HTTP on 127.0.0.1, answering with scripted replies.

    with FakeUpstream() as upstream:
        upstream.add(anthropic_reply({"type": "text", "text": "Hello"}))
        backend = AnthropicBackend("sk-test", upstream.base_url)
        ...
        assert upstream.requests[0].body["stream"] is True

Replies are served in the order they were added, to any path; every request is recorded.
The builders speak Anthropic's Messages stream (``anthropic_*``) and the Chat Completions
stream (``openai_*``).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any  # decoded JSON, or the raw text when it is not JSON


@dataclass
class Reply:
    status: int = 200
    chunks: list[bytes] = field(default_factory=list)  # each written and flushed on its own
    content_type: str = "text/event-stream"
    hang: bool = False  # then stall (after the chunks; without chunks, before the headers)


class FakeUpstream:
    """An HTTP server in a thread; ``base_url`` to reach it, ``requests`` to see what it got."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._replies: deque[Reply] = deque()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add(self, *replies: Reply) -> None:
        self._replies.extend(replies)

    def __enter__(self) -> FakeUpstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def _next_reply(self) -> Reply:
        if self._replies:
            return self._replies.popleft()
        return json_reply(500, {"error": {"message": "the fake upstream has no reply left"}})


def _handler(upstream: FakeUpstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw
            headers = {name.lower(): value for name, value in self.headers.items()}
            upstream.requests.append(Received(self.command, self.path, headers, body))
            self._send(upstream._next_reply())

        do_GET = do_POST

        def _send(self, reply: Reply) -> None:
            if reply.hang and not reply.chunks:
                upstream._stopping.wait(60)
                return
            self.send_response(reply.status)
            self.send_header("content-type", reply.content_type)
            self.end_headers()
            for chunk in reply.chunks:
                self.wfile.write(chunk)
                self.wfile.flush()
            if reply.hang:
                upstream._stopping.wait(60)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def json_reply(status: int, body: Any) -> Reply:
    return Reply(status, [json.dumps(body).encode()], "application/json")


def hang() -> Reply:
    """A reply that never comes."""
    return Reply(hang=True)


def pieces(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


# --- Anthropic Messages ------------------------------------------------------------------------


def anthropic_stream(*events: dict[str, Any], hang_after: bool = False) -> Reply:
    """A Messages stream of exactly these events."""
    chunks = [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events]
    return Reply(chunks=chunks, hang=hang_after)


def anthropic_events(
    *blocks: dict[str, Any],
    stop_reason: str | None = None,
    stop_sequence: str | None = None,
    input_tokens: int = 10,
    output_tokens: int = 5,
    piece: int = 4,
) -> list[dict[str, Any]]:
    """The events of a whole reply with these content blocks (``text`` / ``tool_use`` / ``thinking``),
    text and tool input streamed ``piece`` characters at a time."""
    events: list[dict[str, Any]] = [{
        "type": "message_start",
        "message": {"id": "msg_fake", "type": "message", "role": "assistant", "model": "claude-fake",
                    "content": [], "stop_reason": None, "stop_sequence": None,
                    "usage": {"input_tokens": input_tokens, "output_tokens": 1}},
    }]
    for index, block in enumerate(blocks):
        if block["type"] == "text":
            start, deltas = {"type": "text", "text": ""}, [
                {"type": "text_delta", "text": p} for p in pieces(block["text"], piece)]
        elif block["type"] == "tool_use":
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": p}
                      for p in pieces(json.dumps(block["input"]), piece)]
        else:
            start = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": block["thinking"]},
                      {"type": "signature_delta", "signature": "c2ln"}]
        events.append({"type": "content_block_start", "index": index, "content_block": start})
        events += [{"type": "content_block_delta", "index": index, "delta": d} for d in deltas]
        events.append({"type": "content_block_stop", "index": index})
    if stop_reason is None:
        stop_reason = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
    events.append({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                   "usage": {"output_tokens": output_tokens}})
    events.append({"type": "message_stop"})
    return events


def anthropic_reply(*blocks: dict[str, Any], **options: Any) -> Reply:
    """A whole streamed reply; see ``anthropic_events``."""
    return anthropic_stream(*anthropic_events(*blocks, **options))


def anthropic_error(status: int, error_type: str, message: str) -> Reply:
    return json_reply(status, {"type": "error", "error": {"type": error_type, "message": message}})


# --- OpenAI Chat Completions -------------------------------------------------------------------


def openai_stream(*chunks: dict[str, Any], done: bool = True) -> Reply:
    """A Chat Completions stream of exactly these chunks (``choices`` entries or whole chunks)."""
    lines = [f"data: {json.dumps(chunk)}\n\n".encode() for chunk in chunks]
    return Reply(chunks=lines + ([b"data: [DONE]\n\n"] if done else []))


def openai_chunk(delta: dict[str, Any] | None = None, finish_reason: str | None = None, **choice: Any) -> dict:
    return {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": "fake",
            "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish_reason, **choice}]}


def openai_usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": "fake", "choices": [],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


def openai_reply(
    text: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    *,
    finish_reason: str | None = None,
    usage: tuple[int, int] | None = (10, 5),
    piece: int = 4,
) -> Reply:
    """A whole streamed reply: ``text`` in pieces, then each ``{"id", "name", "input"}`` tool call
    (id and name first, then the arguments in pieces), then the finish reason and usage."""
    chunks = [openai_chunk({"role": "assistant", "content": ""})]
    chunks += [openai_chunk({"content": p}) for p in pieces(text, piece)] if text else []
    for index, call in enumerate(tool_calls or []):
        chunks.append(openai_chunk({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                                    "function": {"name": call["name"], "arguments": ""}}]}))
        chunks += [openai_chunk({"tool_calls": [{"index": index, "function": {"arguments": p}}]})
                   for p in pieces(json.dumps(call["input"]), piece)]
    chunks.append(openai_chunk(finish_reason=finish_reason or ("tool_calls" if tool_calls else "stop")))
    if usage:
        chunks.append(openai_usage(*usage))
    return openai_stream(*chunks)


def openai_error(status: int, message: str) -> Reply:
    return json_reply(status, {"error": {"message": message, "type": "invalid_request_error", "code": None}})
