"""HTTP plumbing shared by the upstream model backends: streamed POSTs, SSE parsing, error mapping.

Upstream failures become execbox errors with the caller-facing status: the upstream's own
4xx/5xx where it is meaningful to the caller, but a rejected upstream key is the operator's
problem, so it is reported as a 500 rather than as the caller's authentication failure.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from execbox.errors import (
    ERROR_TYPES,
    BadGateway,
    ExecboxError,
    InternalError,
    Overloaded,
    UpstreamTimeout,
    error_for_status,
)

_ERRORS_BY_TYPE = {cls.type: cls for cls in ERROR_TYPES.values()}


@asynccontextmanager
async def post_stream(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str]
) -> AsyncIterator[httpx.Response]:
    """POST ``body`` and yield the (successful) streamed response.

    Error statuses and transport failures, also those raised while the caller reads the
    body inside the ``async with``, are raised as execbox errors.
    """
    try:
        async with client.stream("POST", url, json=body, headers=headers) as response:
            if response.status_code >= 400:
                await response.aread()
                raise upstream_error(response.status_code, error_message(response), url)
            yield response
    except httpx.TimeoutException as exc:
        raise UpstreamTimeout(f"The upstream model at {url} did not answer in time.") from exc
    except httpx.ConnectError as exc:
        raise BadGateway(f"Cannot connect to the upstream model at {url}: {exc}.") from exc
    except httpx.HTTPError as exc:
        raise BadGateway(f"The connection to the upstream model at {url} failed: {exc!r}.") from exc


async def post_json(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str]
) -> Any:
    """POST ``body`` and return the decoded JSON answer (errors as in ``post_stream``)."""
    async with post_stream(client, url, body, headers) as response:
        content = await response.aread()
    try:
        return json.loads(content)
    except ValueError as exc:
        raise BadGateway(f"The upstream model at {url} answered with invalid JSON.") from exc


async def sse_json(response: httpx.Response) -> AsyncIterator[Any]:
    """The decoded ``data`` of each server-sent event, up to the end or an OpenAI-style ``[DONE]``."""
    data: list[str] = []
    async for line in response.aiter_lines():
        if line.startswith("data:"):
            data.append(line[6:] if line.startswith("data: ") else line[5:])
        elif not line and data:
            text, data = "\n".join(data), []
            if text == "[DONE]":
                return
            try:
                yield json.loads(text)
            except ValueError as exc:
                raise BadGateway(f"The upstream model at {response.url} sent a bad event: {text[:200]}") from exc


def upstream_error(status: int, message: str, url: str) -> ExecboxError:
    """The execbox error for an upstream HTTP error status."""
    if status in (401, 403):
        return InternalError(
            f"The upstream model at {url} rejected the server's API key ({status}: {message}). "
            "The execbox operator must fix the upstream key."
        )
    if status >= 500:
        message = f"The upstream model at {url} failed ({status}): {message}"
    if status in (503, 529):
        return Overloaded(message)
    if status in (408, 504):
        return UpstreamTimeout(message)
    if status >= 500:
        return BadGateway(message)
    return error_for_status(status, message)


def error_for_type(error_type: str | None, message: str) -> ExecboxError:
    """The execbox error for an Anthropic error ``type`` (``overloaded_error``...); unknown ones are 500s."""
    return _ERRORS_BY_TYPE.get(error_type or "", InternalError)(message)


def error_message(response: httpx.Response) -> str:
    """The human message of an upstream error response, whatever its dialect."""
    try:
        payload = response.json()
    except ValueError:
        return response.text.strip()[:500] or f"HTTP {response.status_code}"
    return message_of(payload) or f"HTTP {response.status_code}"


def message_of(payload: Any) -> str:
    """The message in ``{"error": {"message"}}`` (Anthropic, OpenAI), ``{"error": "..."}`` (Ollama),
    ``{"message"}`` or ``{"detail"}``."""
    if isinstance(payload, dict):
        for key in ("error", "message", "detail"):
            if key in payload:
                found = message_of(payload[key])
                if found:
                    return found
        return ""
    return payload if isinstance(payload, str) else ""
