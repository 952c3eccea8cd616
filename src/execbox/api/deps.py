"""FastAPI dependencies shared by the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from execbox import logs
from execbox.api.auth import api_key_of, workspace_for
from execbox.errors import InvalidRequest
from execbox.protocol.messages import API_VERSIONS
from execbox.services import Services


def services(request: Request) -> Services:
    return request.app.state.services


def workspace(request: Request) -> str:
    """The caller's workspace (raises AuthenticationFailed on a bad key)."""
    found = workspace_for(request.app.state.workspace_keys, api_key_of(request))
    logs.bind(workspace=found)
    return found


def api_version(request: Request, _: Annotated[str, Depends(workspace)]) -> str:
    """The ``anthropic-version`` header, which the Anthropic API routes require (after the key
    is checked): 400 when it is missing or names no version of the API."""
    version = request.headers.get("anthropic-version")
    if version is None:
        raise InvalidRequest("anthropic-version: header is required")
    if version not in API_VERSIONS:
        raise InvalidRequest(f'anthropic-version: "{version}" is not a valid version')
    return version
