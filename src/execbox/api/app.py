"""The FastAPI application: routes, error envelope, request ids, lifecycle."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from execbox import __version__
from execbox.api.errors import install_error_handlers
from execbox.api.lifecycle import ShutdownMiddleware, ShutdownPlan
from execbox.api.middleware import RequestIdMiddleware
from execbox.api.routes import batches, containers, files, health, messages, models, usage
from execbox.services import Services
from execbox.settings import Settings

log = logging.getLogger("execbox")


def create_app(settings: Settings, services: Services | None = None) -> FastAPI:
    """Build the app. ``services`` defaults to ``Services.build(settings)``."""
    svc = services or Services.build(settings)
    plan = ShutdownPlan(settings.shutdown_grace)
    plan.on_begin.append(svc.batch_runner.stop_claiming)
    plan.on_cancel.append(svc.batch_runner.cancel_running)
    plan.describe_background = lambda: f"{svc.batch_runner.running} batch request(s)" if svc.batch_runner.running else ""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await svc.start()
        log.info("execbox listening on http://%s:%d (data in %s, node %s)",
                 settings.host, settings.port, settings.data_dir, settings.node)
        try:
            yield
        finally:
            await svc.stop(grace_s=plan.remaining())
            log.info("execbox stopped")

    app = FastAPI(title="execbox", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.services = svc
    app.state.shutdown = plan
    app.state.workspace_keys = settings.workspace_keys()
    app.add_middleware(ShutdownMiddleware, plan=plan)
    app.add_middleware(RequestIdMiddleware)  # outermost: every answer has a request id
    install_error_handlers(app)
    for module in (health, containers, files, batches, messages, models, usage):
        app.include_router(module.router)
    return app
