"""FastAPI dependencies shared by the routes."""

from __future__ import annotations

from fastapi import Request

from execbox.api.auth import api_key_of, workspace_for
from execbox.services import Services


def services(request: Request) -> Services:
    return request.app.state.services


def workspace(request: Request) -> str:
    """The caller's workspace (raises AuthenticationFailed on a bad key)."""
    return workspace_for(request.app.state.workspace_keys, api_key_of(request))
