"""The FastAPI application: routes, error envelope, request ids, lifecycle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from execbox import __version__
from execbox.api.errors import install_error_handlers
from execbox.api.middleware import RequestIdMiddleware
from execbox.api.routes import batches, containers, files, health, messages, models
from execbox.services import Services
from execbox.settings import Settings


def create_app(settings: Settings, services: Services | None = None) -> FastAPI:
    """Build the app. ``services`` defaults to ``Services.build(settings)``."""
    svc = services or Services.build(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await svc.start()
        try:
            yield
        finally:
            await svc.stop()

    app = FastAPI(title="execbox", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.services = svc
    app.state.workspace_keys = settings.workspace_keys()
    app.add_middleware(RequestIdMiddleware)
    install_error_handlers(app)
    for module in (health, containers, files, batches, messages, models):
        app.include_router(module.router)
    return app
