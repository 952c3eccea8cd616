"""Exceptions of the sandbox layer. They say what went wrong in sandbox terms; the layers
above decide what a client is told (and with which HTTP status)."""

from __future__ import annotations


class SandboxError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ForkServerDown(SandboxError):
    """The fork server is not running (starting, restarting or failed): use the reference path."""


class SessionLost(SandboxError):
    """A live Python session that was expected to wait (for tool results) is gone."""
