"""API keys and workspaces: ``x-api-key`` or ``Authorization: Bearer``, mapped to a workspace."""

from __future__ import annotations

from fastapi import Request

from execbox.errors import AuthenticationFailed

DEFAULT_WORKSPACE = "default"


def api_key_of(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def workspace_for(keys: dict[str, str], api_key: str | None) -> str:
    """The workspace of ``api_key``. With no keys configured every caller is ``default``."""
    if not keys:
        return DEFAULT_WORKSPACE
    if api_key is None:
        raise AuthenticationFailed("Missing API key: send `x-api-key` or `Authorization: Bearer`.")
    workspace = keys.get(api_key)
    if workspace is None:
        raise AuthenticationFailed("Invalid API key.")
    return workspace
