"""API keys map to workspaces; with none configured everyone is `default`."""

from __future__ import annotations

import pytest

from execbox.api.auth import DEFAULT_WORKSPACE, workspace_for
from execbox.errors import AuthenticationFailed

KEYS = {"key-a": "team-a", "key-b": "team-b"}


def test_no_keys_configured_means_default_workspace() -> None:
    assert workspace_for({}, None) == DEFAULT_WORKSPACE
    assert workspace_for({}, "anything") == DEFAULT_WORKSPACE


def test_each_key_selects_its_workspace() -> None:
    assert workspace_for(KEYS, "key-a") == "team-a"
    assert workspace_for(KEYS, "key-b") == "team-b"


@pytest.mark.parametrize("key", [None, "", "key-c", "KEY-A"])
def test_unknown_or_missing_keys_are_rejected(key: str | None) -> None:
    with pytest.raises(AuthenticationFailed):
        workspace_for(KEYS, key or None)
