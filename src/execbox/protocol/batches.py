"""Wire shapes of the Message Batches API (``/v1/messages/batches``, spec section 8)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Anthropic's limits for one batch.
MAX_BATCH_REQUESTS = 100_000
MAX_BATCH_BYTES = 256 * 1000**2
CUSTOM_ID_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    custom_id: str = Field(pattern=CUSTOM_ID_PATTERN)
    params: dict[str, Any]


class BatchCreateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests: list[BatchRequest] = Field(min_length=1, max_length=MAX_BATCH_REQUESTS)


class RequestCounts(BaseModel):
    processing: int
    succeeded: int
    errored: int
    canceled: int
    expired: int


class MessageBatch(BaseModel):
    id: str
    type: Literal["message_batch"] = "message_batch"
    processing_status: Literal["in_progress", "canceling", "ended"]
    request_counts: RequestCounts
    created_at: datetime
    expires_at: datetime
    ended_at: datetime | None = None
    cancel_initiated_at: datetime | None = None
    archived_at: datetime | None = None
    results_url: str | None = None


class MessageBatchList(BaseModel):
    data: list[MessageBatch]
    has_more: bool
    first_id: str | None
    last_id: str | None


class MessageBatchDeleted(BaseModel):
    id: str
    type: Literal["message_batch_deleted"] = "message_batch_deleted"
