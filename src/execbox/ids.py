"""Opaque ids with Anthropic's prefixes (``msg_``, ``srvtoolu_``, ``file_``, ``container_``...)."""

from __future__ import annotations

import secrets

_ALPHABET = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def new_id(prefix: str, length: int = 24) -> str:
    """``prefix`` + ``_`` + ``length`` random base-58 characters, e.g. ``file_011CNha8iCJcU1wXNR6q4V8w``."""
    return f"{prefix}_01" + "".join(secrets.choice(_ALPHABET) for _ in range(length - 2))
