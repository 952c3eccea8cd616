"""Choosing a file's MIME type: the uploader's, or a guess from its name."""

from __future__ import annotations

import mimetypes
import re

DEFAULT = "application/octet-stream"

# Types the model commonly reads or writes that the platform's table may lack.
_EXTRA = {
    ".csv": "text/csv",
    ".md": "text/markdown",
    ".py": "text/x-python",
    ".json": "application/json",
    ".jsonl": "application/jsonl",
    ".ipynb": "application/x-ipynb+json",
    ".parquet": "application/vnd.apache.parquet",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
}

_VALID = re.compile(r"[\w.+-]+/[\w.+-]+(\s*;[^\x00-\x1f\x7f]*)?")


def guess(filename: str) -> str:
    """The MIME type for ``filename``'s extension, or ``application/octet-stream``."""
    suffix = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    return _EXTRA.get(suffix) or mimetypes.guess_type(filename, strict=False)[0] or DEFAULT


def choose(declared: str | None, filename: str) -> str:
    """The declared type when it says something, else a guess from the filename."""
    declared = (declared or "").strip()
    if declared and declared.lower() != DEFAULT and len(declared) <= 255 and _VALID.fullmatch(declared):
        return declared
    return guess(filename)
