"""Which backend serves which model.

Every backend serves exactly the ids it lists, so ``GET /v1/models`` and ``POST /v1/messages``
agree, and an id no backend lists is a 404. The built-in ``direct`` backend is always present
and comes last; with no Anthropic key configured it also answers for the Claude ids of the
product documents (``EXECBOX_DIRECT_MODELS``), so their examples run offline.
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
                    extra_models=settings.anthropic_models,
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
        backends.append(DirectBackend(aliases=[] if settings.anthropic_api_key else settings.direct_models))
        return cls(backends)

    def for_model(self, model: str) -> ModelBackend:
        """The backend serving ``model`` (NotFound if none does)."""
        for backend in self._backends:
            if backend.serves(model):
                return backend
        raise NotFound(f"Model `{model}` not found. `GET /v1/models` lists the models this server serves.")

    def describe(self) -> list[str]:
        """One line per backend: its name and the ids it serves (for the start-up log)."""
        lines = []
        for backend in self._backends:
            name = type(backend).__name__.removesuffix("Backend").lower()
            ids = [info.id for info in backend.models() if self.for_model(info.id) is backend]
            lines.append(f"{name} serves {', '.join(ids) if ids else 'no model'}")
        return lines

    def models(self) -> list[ModelInfo]:
        """Every model served, in backend order; an id two backends list goes to the first."""
        seen: dict[str, ModelInfo] = {}
        for backend in self._backends:
            for info in backend.models():
                seen.setdefault(info.id, info)
        return list(seen.values())

    def model(self, model_id: str) -> ModelInfo:
        """One served model (NotFound if no backend serves it)."""
        for info in self.models():
            if info.id == model_id:
                return info
        raise NotFound(f"Model `{model_id}` not found.")

    async def aclose(self) -> None:
        for backend in self._backends:
            await backend.aclose()
