"""Which backend serves which model.

The built-in ``direct`` backend is always present and comes last: it serves every model id
no other backend claims, so requests naming e.g. ``claude-opus-4-20250514`` work offline
when no Anthropic key is configured.
"""

from __future__ import annotations

from execbox.backends.base import ModelBackend, ModelInfo
from execbox.backends.direct import DirectBackend
from execbox.errors import NotFound
from execbox.settings import Settings


class Backends:
    """The configured backends, asked in order; the first whose ``serves(model)`` is true wins."""

    def __init__(self, backends: list[ModelBackend]) -> None:
        self._backends = backends

    @classmethod
    def from_settings(cls, settings: Settings) -> Backends:
        backends: list[ModelBackend] = []
        if settings.anthropic_api_key:
            from execbox.backends.anthropic import AnthropicBackend

            backends.append(
                AnthropicBackend(
                    api_key=settings.anthropic_api_key,
                    base_url=settings.anthropic_base_url,
                    timeout=settings.upstream_timeout,
                )
            )
        if settings.openai_base_url:
            from execbox.backends.openai import OpenAIBackend

            backends.append(
                OpenAIBackend(
                    base_url=settings.openai_base_url,
                    api_key=settings.openai_api_key,
                    models=settings.openai_models,
                    timeout=settings.upstream_timeout,
                )
            )
        backends.append(DirectBackend())
        return cls(backends)

    def for_model(self, model: str) -> ModelBackend:
        """The backend serving ``model`` (NotFound if none does)."""
        for backend in self._backends:
            if backend.serves(model):
                return backend
        raise NotFound(f"Model `{model}` not found.")

    def models(self) -> list[ModelInfo]:
        """Every listed model, in backend order, without duplicates."""
        seen: dict[str, ModelInfo] = {}
        for backend in self._backends:
            for info in backend.models():
                seen.setdefault(info.id, info)
        return list(seen.values())

    def model(self, model_id: str) -> ModelInfo:
        """One listed model (NotFound if it is not listed)."""
        for info in self.models():
            if info.id == model_id:
                return info
        raise NotFound(f"Model `{model_id}` not found.")

    async def aclose(self) -> None:
        for backend in self._backends:
            await backend.aclose()
