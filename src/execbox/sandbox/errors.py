"""Exceptions of the sandbox layer. They say what went wrong in sandbox terms; the layers
above decide what a client is told (and with which HTTP status)."""

from __future__ import annotations


class SandboxError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unavailable(SandboxError):
    """This host cannot run sandboxes as configured (a missing isolation feature, the
    runtime not built, a box whose disk is gone). Written for the operator."""


class HostExhausted(SandboxError):
    """The host is out of capacity for a new box (disk space, loop devices, memory)."""


class BadPath(SandboxError):
    """A path into a box that cannot be used: malformed, through a link, not a regular file."""


class NoSuchFile(SandboxError):
    """No such regular file in the box."""


class FileBusy(SandboxError):
    """The file is held by a running execution."""


class FileTooLarge(SandboxError):
    """The file is larger than the caller allows."""


class DiskFull(SandboxError):
    """The box's disk is full."""


class ForkServerDown(SandboxError):
    """The fork server is not running (starting, restarting or failed): use the reference path."""


class SessionLost(SandboxError):
    """A live Python session that was expected to wait (for tool results) is gone."""
