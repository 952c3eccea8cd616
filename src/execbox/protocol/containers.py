"""Wire shapes of the direct containers API (``/v1/containers``)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ContainerObject(BaseModel):
    id: str
    type: Literal["container"] = "container"
    created_at: datetime
    expires_at: datetime


class ContainerListItem(ContainerObject):
    """A container in ``GET /v1/containers``, with what its disk holds and whether its live
    Python kernel is running (None where unknown)."""

    last_used_at: datetime
    disk_used_bytes: int | None = None
    kernel_live: bool | None = None  # None: this server runs no kernels


class ContainerList(BaseModel):
    """A page of containers, newest first; page on with ``after_id=last_id``."""

    data: list[ContainerListItem]
    has_more: bool
    first_id: str | None
    last_id: str | None


class ContainerDeleted(BaseModel):
    id: str
    type: Literal["container_deleted"] = "container_deleted"


class ExecParams(BaseModel):
    """``POST /v1/containers/{id}/exec``: exactly one of ``code`` (Python) or ``command`` (bash)."""

    model_config = ConfigDict(extra="forbid")

    code: str | None = None
    command: str | None = None
    timeout: float | None = Field(None, gt=0, description="Seconds; capped by the server's limit.")
    session: bool = Field(
        False, description="Python only: run in the container's live interpreter, whose variables, imports and "
        "functions persist between session calls (otherwise every call starts a fresh interpreter)."
    )
    stream: bool = Field(
        False, description="Answer with NDJSON: `stdout`/`stderr` events as output is produced, then `result`."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> "ExecParams":
        if (self.code is None) == (self.command is None):
            raise ValueError("send exactly one of `code` (Python) or `command` (bash)")
        if self.session and self.code is None:
            raise ValueError("`session` applies to Python `code` only")
        return self


class ExecFile(BaseModel):
    """An output file: stored (``file_id``) or refused (``error_code``)."""

    filename: str
    size_bytes: int
    file_id: str | None = None
    error_code: str | None = None


class ExecOutput(BaseModel):
    stdout: str
    stderr: str
    return_code: int
    error_code: str | None  # "execution_time_exceeded" on timeout
    duration_ms: int
    files: list[ExecFile]
    stdout_truncated: bool
    stderr_truncated: bool
    oom_killed: bool
    runtime: Literal["fork", "bwrap"]  # which execution path ran it: the fork server, or the reference path


class ExecOutputEvent(BaseModel):
    """A line of a streamed exec: output as it is produced (within the output caps)."""

    type: Literal["stdout", "stderr"]
    text: str


class ExecResultEvent(ExecOutput):
    """The last line of a streamed exec: the whole result, as the non-streamed call returns it."""

    type: Literal["result"] = "result"


class ExecErrorEvent(BaseModel):
    """The last line of a streamed exec that failed after it started (e.g. the container was deleted)."""

    type: Literal["error"] = "error"
    error: dict[str, str]


class ContainerFile(BaseModel):
    path: str
    size_bytes: int


class ContainerFileList(BaseModel):
    data: list[ContainerFile]
