"""Wire shapes of the Files API (``/v1/files``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

# The beta header that older SDKs send with ``beta.files``; it selects the legacy list items.
LEGACY_FILES_BETA = "files-api-2025-04-14"


class FileMetadata(BaseModel):
    id: str
    type: Literal["file"] = "file"
    filename: str
    mime_type: str
    size_bytes: int
    created_at: datetime
    downloadable: bool
    expires_at: datetime | None = None


class FileList(BaseModel):
    """Both list shapes at once: GA (``data``, ``next_page``) and legacy (``has_more``,
    ``first_id``, ``last_id``). Each SDK page class ignores the fields it does not know."""

    data: list[FileMetadata]
    has_more: bool
    first_id: str | None
    last_id: str | None
    next_page: str | None

    def wire(self, legacy: bool) -> dict[str, Any]:
        """The JSON body; legacy items carry no ``expires_at``."""
        exclude = {"data": {"__all__": {"expires_at"}}} if legacy else None
        return self.model_dump(mode="json", exclude=exclude)


class FileDeleted(BaseModel):
    id: str
    type: Literal["file_deleted"] = "file_deleted"
