"""The error envelope every failure is answered with (for the OpenAPI schema)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    type: str  # invalid_request_error, not_found_error, ...
    message: str


class ErrorResponse(BaseModel):
    type: Literal["error"] = "error"
    error: ErrorDetail
    request_id: str | None
