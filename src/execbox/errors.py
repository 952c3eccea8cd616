"""Every error execbox reports, in one place.

The layers above the sandbox raise these; the HTTP layer turns each into Anthropic's error
envelope (``{"type": "error", "error": {"type", "message", "details"?}, "request_id"}``)
with the status code below. Nothing else should reach a client as an error. The sandbox
raises its own exceptions (``sandbox/errors.py``), which know nothing of HTTP; the
containers layer turns them into these with ``from_sandbox``.
"""

from __future__ import annotations

from typing import Any

from execbox.sandbox import errors as sandbox_errors


class ExecboxError(Exception):
    """Base class: an error with an HTTP status and an Anthropic error type."""

    status: int = 500
    type: str = "api_error"
    should_retry: bool | None = None
    retry_after: int | None = None  # seconds, sent as the ``retry-after`` header

    def __init__(self, message: str, *, error_code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details)
        if error_code is not None:
            self.details["error_code"] = error_code


class InvalidRequest(ExecboxError):
    status, type, should_retry = 400, "invalid_request_error", False


class AuthenticationFailed(ExecboxError):
    status, type, should_retry = 401, "authentication_error", False


class PermissionDenied(ExecboxError):
    status, type, should_retry = 403, "permission_error", False


class NotFound(ExecboxError):
    status, type, should_retry = 404, "not_found_error", False


class Conflict(ExecboxError):
    status, type = 409, "conflict_error"


class RequestTooLarge(ExecboxError):
    status, type, should_retry = 413, "request_too_large", False


class RateLimited(ExecboxError):
    status, type = 429, "rate_limit_error"


class InternalError(ExecboxError):
    status, type = 500, "api_error"


class BadGateway(ExecboxError):
    """An upstream model failed (connection refused, a 5xx, a malformed answer)."""

    status, type = 502, "api_error"


class UpstreamTimeout(ExecboxError):
    status, type = 504, "timeout_error"


class Overloaded(ExecboxError):
    status, type = 529, "overloaded_error"


class ContainerNotFound(NotFound):
    """An unknown container. The message starts with "Container not found", which is how
    clients (pydantic-ai) recognise a dead container and retry without it."""

    def __init__(self, container_id: str) -> None:
        super().__init__(f"Container not found: `{container_id}`.")


class ContainerExpired(ContainerNotFound):
    """A request named a container whose TTL has passed: a 404 like an unknown one."""

    def __init__(self, container_id: str) -> None:
        NotFound.__init__(
            self,
            f"Container not found: `{container_id}` has expired. Send the request without `container` "
            "to get a new one.",
            error_code="container_expired",
        )


class LegacyContainerExpired(InvalidRequest):
    """An expired container as the older documents describe it (``EXECBOX_TOOL_ERROR_NAMES=legacy``)."""

    def __init__(self, container_id: str) -> None:
        super().__init__(
            f"Container `{container_id}` has expired. Send the request without `container` to get a new one.",
            error_code="container_expired",
        )


class ContainerDeleted(NotFound):
    """The container was deleted while the request was running in it."""

    def __init__(self, container_id: str) -> None:
        super().__init__(
            f"Container `{container_id}` was deleted while this request was running in it; "
            "its execution was stopped.",
            error_code="container_deleted",
        )


class FileNotFound(NotFound):
    def __init__(self, file_id: str) -> None:
        super().__init__(f"File `{file_id}` not found.")


class FileExpired(NotFound):
    """The file's ``expires_at`` has passed: its metadata remains, its content is gone."""

    def __init__(self, file_id: str) -> None:
        super().__init__(f"File `{file_id}` has expired.", error_code="file_expired")


class ThreadNotFound(NotFound):
    """No usable thread state for ``previous_message_id`` (unknown, expired, another workspace's)."""

    def __init__(self, message_id: str) -> None:
        super().__init__(
            f"thread: no thread state for `{message_id}` (unknown or expired). Send the full conversation "
            'with `thread: {"type": "create"}` to start a new thread.',
            error_code="thread_not_found",
        )


class ThreadAlreadyContinued(InvalidRequest):
    def __init__(self, message_id: str) -> None:
        super().__init__(
            f"thread: `{message_id}` was already continued; each response can be continued once. Continue "
            "from the thread's most recent response.",
            error_code="thread_already_continued",
        )


class ThreadContinueInFlight(InvalidRequest):
    def __init__(self, message_id: str) -> None:
        super().__init__(
            f"thread: another request is already continuing `{message_id}`.",
            error_code="thread_continue_in_flight",
        )


class ThreadFingerprintMismatch(InvalidRequest):
    def __init__(self, fields: list[str]) -> None:
        names = " and ".join(f"`{field}`" for field in fields)
        super().__init__(
            f"thread: {names} cannot be sent when continuing a thread; it keeps the values it was created "
            'with. Send the full conversation with `thread: {"type": "create"}` to change them.',
            error_code="thread_fingerprint_mismatch",
        )


class ThreadUnsupportedRequest(InvalidRequest):
    """A ``thread`` this server will not serve: the SDKs then send the full conversation without one."""

    def __init__(self, reason: str, unsupported: list[str] | None = None) -> None:
        details = {"unsupported": unsupported} if unsupported else {}
        super().__init__(f"thread: {reason}", error_code="thread_unsupported_request", **details)


class TooManyContainers(RateLimited):
    """The workspace has as many live containers as the server allows (``max_containers``)."""

    should_retry = False  # not before a container is deleted or expires

    def __init__(self, limit: int, retry_after: int | None = None) -> None:
        super().__init__(
            f"This workspace already has {limit} live containers, the most allowed. "
            "Reuse one (pass its id as `container`), delete one, or wait for one to expire.",
            error_code="too_many_containers",
        )
        self.retry_after = retry_after  # seconds until the workspace's first container expires


class TooManyExecutions(RateLimited):
    """The workspace runs as many executions as it may and its queue of waiting ones is full."""

    should_retry, retry_after = True, 1

    def __init__(self, running: int, queued: int) -> None:
        super().__init__(
            f"This workspace is running {running} executions, the most allowed at once, and {queued} more are "
            "waiting. Retry after the time in the retry-after header.",
            error_code="too_many_executions",
        )


class DatabaseBusy(Overloaded):
    """The metadata database stayed locked (or unreachable) past the busy timeout."""

    should_retry, retry_after = True, 1

    def __init__(self) -> None:
        super().__init__("The server's metadata database is busy; retry shortly.", error_code="database_busy")


class OutOfDiskSpace(Overloaded):
    """The server's data directory is full."""

    should_retry = True

    def __init__(self) -> None:
        super().__init__("The server is out of disk space; nothing was stored. Retry later.",
                         error_code="out_of_disk_space")


class StorageQuotaExceeded(InvalidRequest):
    """The workspace's files would exceed its storage quota (``workspace_storage_quota``)."""

    def __init__(self, used: int, size: int, quota: int) -> None:
        super().__init__(
            f"This workspace's files would exceed its storage quota: {used} of {quota} bytes are in use "
            f"and this file has {size}. Delete files to make room.",
        )


class SandboxUnavailable(ExecboxError):
    """The host cannot run sandboxes as configured (missing isolation feature, runtime not built)."""

    status, type = 500, "api_error"


# Status code -> (error type) for errors that arrive as bare statuses, e.g. from an upstream model.
ERROR_TYPES: dict[int, type[ExecboxError]] = {
    cls.status: cls
    for cls in (
        InvalidRequest, AuthenticationFailed, PermissionDenied, NotFound, Conflict,
        RequestTooLarge, RateLimited, InternalError, UpstreamTimeout, Overloaded,
    )
}


def error_for_status(status: int, message: str) -> ExecboxError:
    """The execbox error matching an HTTP status (unknown 4xx -> 400, unknown 5xx -> 500)."""
    cls = ERROR_TYPES.get(status) or (InvalidRequest if 400 <= status < 500 else InternalError)
    return cls(message)


# What a client is told of each of the sandbox layer's own exceptions (by the containers layer).
_FROM_SANDBOX: dict[type[sandbox_errors.SandboxError], type[ExecboxError]] = {
    sandbox_errors.Unavailable: SandboxUnavailable,
    sandbox_errors.HostExhausted: Overloaded,
    sandbox_errors.BadPath: InvalidRequest,
    sandbox_errors.DiskFull: InvalidRequest,
    sandbox_errors.NoSuchFile: NotFound,
    sandbox_errors.FileBusy: Conflict,
    sandbox_errors.FileTooLarge: RequestTooLarge,
    sandbox_errors.SessionLost: SandboxUnavailable,
    sandbox_errors.ForkServerDown: SandboxUnavailable,
}


def from_sandbox(exc: sandbox_errors.SandboxError) -> ExecboxError:
    """The API error for a sandbox exception (its message kept: the API masks the operator's)."""
    return _FROM_SANDBOX.get(type(exc), InternalError)(exc.message)
