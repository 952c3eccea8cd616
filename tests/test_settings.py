"""Settings: sizes, env vars, CLI overrides, API keys."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from execbox.settings import ConfigError, Settings, format_size, load_settings, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1GiB", 1024**3), ("512MB", 512 * 1000**2), ("1048576", 1048576), ("1.5KiB", 1536), (" 5 gib ", 5 * 1024**3)],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "1 parsec", "-1GiB"])
def test_parse_size_rejects_nonsense(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_format_size_round_trips() -> None:
    for n in (1024**3, 5 * 1024**3, 64 * 1024**2, 1000):
        assert parse_size(format_size(n)) == n


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECBOX_MEMORY_LIMIT", "2GiB")
    monkeypatch.setenv("EXECBOX_CONTAINER_EXPIRY", "created")
    monkeypatch.setenv("EXECBOX_OPENAI_MODELS", "llama3, qwen2.5")
    settings = Settings()
    assert settings.memory_limit == 2 * 1024**3
    assert settings.container_expiry == "created"
    assert settings.openai_models == ["llama3", "qwen2.5"]


def test_cli_overrides_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECBOX_EXEC_TIMEOUT", "30")
    assert load_settings(exec_timeout="5").exec_timeout == 5.0
    assert load_settings(exec_timeout=None).exec_timeout == 30.0


def test_anthropic_key_falls_back_to_the_sdk_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EXECBOX_ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    assert Settings().anthropic_api_key == "sk-test"


def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECBOX_CONTAINER_EXPIRY", "sometimes")
    with pytest.raises(ValidationError):
        Settings()


def test_api_keys_map_to_workspaces() -> None:
    settings = load_settings(api_keys="team-a:key-1,team-b:key-2")
    assert settings.workspace_keys() == {"key-1": "team-a", "key-2": "team-b"}
    with pytest.raises(ConfigError, match="workspace:key") as refused:
        load_settings(api_keys="team-a:key-1,no-colon")
    assert "no-colon" not in str(refused.value) and "key-1" not in str(refused.value)
