"""Wire shapes of the Models API: ``GET /v1/models`` and ``GET /v1/models/{id}``."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel


class ModelInfo(BaseModel):
    type: Literal["model"] = "model"
    id: str
    display_name: str
    created_at: datetime
    lifecycle: Literal["active", "deprecated", "retired"] = "active"
    max_input_tokens: int
    max_tokens: int


class ModelList(BaseModel):
    data: list[ModelInfo]
    has_more: bool
    first_id: str | None
    last_id: str | None
