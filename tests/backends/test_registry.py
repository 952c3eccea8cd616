"""Which backend serves which model, given the settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from execbox.backends.anthropic import AnthropicBackend
from execbox.backends.direct import DirectBackend
from execbox.backends.openai import OpenAIBackend
from execbox.backends.registry import Backends
from execbox.errors import NotFound
from execbox.settings import Settings


async def test_offline_every_model_goes_to_the_direct_model(tmp_path: Path) -> None:
    backends = Backends.from_settings(Settings(data_dir=tmp_path, anthropic_api_key=None, openai_base_url=None))
    assert isinstance(backends.for_model("claude-opus-4-20250514"), DirectBackend)
    assert isinstance(backends.for_model("anything"), DirectBackend)
    assert [m.id for m in backends.models()] == ["execbox-direct"]
    await backends.aclose()


async def test_upstreams_claim_their_models_first(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        anthropic_api_key="sk-test",
        openai_base_url="http://127.0.0.1:9/v1",
        openai_models="llama3,qwen",
    )
    backends = Backends.from_settings(settings)
    assert isinstance(backends.for_model("claude-sonnet-4-5-20250929"), AnthropicBackend)
    assert isinstance(backends.for_model("qwen"), OpenAIBackend)
    assert isinstance(backends.for_model("execbox-direct"), DirectBackend)
    ids = [m.id for m in backends.models()]
    assert ids[-3:] == ["llama3", "qwen", "execbox-direct"] and ids[0].startswith("claude-")
    assert backends.model("qwen").display_name == "qwen"
    with pytest.raises(NotFound):
        backends.model("not-listed")
    await backends.aclose()
