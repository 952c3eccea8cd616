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


class ContainerDeleted(BaseModel):
    id: str
    type: Literal["container_deleted"] = "container_deleted"


class ExecParams(BaseModel):
    """``POST /v1/containers/{id}/exec``: exactly one of ``code`` (Python) or ``command`` (bash)."""

    model_config = ConfigDict(extra="forbid")

    code: str | None = None
    command: str | None = None
    timeout: float | None = Field(None, gt=0, description="Seconds; capped by the server's limit.")

    @model_validator(mode="after")
    def _exactly_one(self) -> "ExecParams":
        if (self.code is None) == (self.command is None):
            raise ValueError("send exactly one of `code` (Python) or `command` (bash)")
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


class ContainerFile(BaseModel):
    path: str
    size_bytes: int


class ContainerFileList(BaseModel):
    data: list[ContainerFile]
