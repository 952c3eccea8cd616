"""Logging set-up: plain text lines, or one JSON object per line (``EXECBOX_LOG_FORMAT=json``).

Each request carries a context (``bind``): its request id from the start, then what the
layers learn as they go (workspace, container id, model). Every log line written while the
request is handled carries that context: as fields of the JSON object, or ``[key=value ...]``
at the end of a text line. Fields passed with ``extra=`` (``duration_ms``...) are added too.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any

# One dict per request, shared by reference: worker threads (sync routes, ``to_thread``)
# get a copy of the context but the same dict, so what they bind is seen by the request.
_context: ContextVar[dict[str, Any] | None] = ContextVar("execbox_log_context", default=None)

# The attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
CONTEXT_KEYS = ("request_id", "workspace", "container_id", "model")


def start_request(request_id: str) -> None:
    """A fresh context for the request being handled by the current task."""
    _context.set({"request_id": request_id})


def bind(**fields: Any) -> None:
    """Add fields to the current request's context (ignored outside a request)."""
    context = _context.get()
    if context is not None:
        context.update({key: value for key, value in fields.items() if value is not None})


def current() -> dict[str, Any]:
    return dict(_context.get() or {})


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = current()
    fields.update({key: value for key, value in vars(record).items() if key not in _STANDARD})
    return fields


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ...context, ...extra}``, one line each."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(_fields(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """The classic line, with the request's context appended."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = _fields(record)
        if not fields:
            return text
        suffix = " ".join(f"{key}={value}" for key, value in fields.items())
        head, newline, rest = text.partition("\n")  # keep a traceback below the line
        return f"{head} [{suffix}]{newline}{rest}"


def setup(level: str, fmt: str = "text") -> None:
    """Log to stderr at ``level`` in ``fmt`` (``text`` or ``json``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
