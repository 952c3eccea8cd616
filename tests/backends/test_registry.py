"""Which backend serves which model, given the settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from execbox.backends.anthropic import AnthropicBackend
from execbox.backends.direct import DirectBackend
from execbox.backends.openai import OpenAIBackend
from execbox.backends.registry import Backends
from execbox.errors import NotFound
from execbox.settings import DOCUMENT_MODELS, Settings


async def test_offline_the_documents_models_go_to_the_direct_model(tmp_path: Path) -> None:
    backends = Backends.from_settings(Settings(data_dir=tmp_path, anthropic_api_key=None, openai_base_url=None))
    for model in ("execbox-direct", "claude-opus-4-20250514", "claude-3-5-haiku-latest", "claude-sonnet-4-5"):
        assert isinstance(backends.for_model(model), DirectBackend)
        assert backends.model(model).id == model  # listed as served
    for unserved in ("gpt-4o", "claude-opus-4-2025051", "anything"):
        with pytest.raises(NotFound, match="not found"):
            backends.for_model(unserved)
        with pytest.raises(NotFound):
            backends.model(unserved)
    assert [m.id for m in backends.models()] == ["execbox-direct", *DOCUMENT_MODELS]
    assert backends.describe() == [f"direct serves {', '.join(['execbox-direct', *DOCUMENT_MODELS])}"]
    await backends.aclose()


async def test_every_listed_model_is_served_and_nothing_else(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        anthropic_api_key="sk-test",
        openai_base_url="http://127.0.0.1:9/v1",
        openai_models="llama3,claude-sonnet-4-5",
        direct_models="claude-3-7-sonnet-20250219",
    )
    backends = Backends.from_settings(settings)
    listed = [m.id for m in backends.models()]
    assert len(listed) == len(set(listed))
    for model in listed:
        assert backends.model(model).id == model and backends.for_model(model)
    # With a key, Claude ids go to Anthropic (the first to list one wins); the direct model
    # keeps only its own id.
    assert isinstance(backends.for_model("claude-sonnet-4-5"), AnthropicBackend)
    assert "claude-3-7-sonnet-20250219" not in listed
    with pytest.raises(NotFound):
        backends.for_model("claude-3-7-sonnet-20250219")
    assert backends.describe()[-1] == "direct serves execbox-direct"
    assert backends.describe()[1] == "openai serves llama3"  # its claude-sonnet-4-5 goes to Anthropic
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
