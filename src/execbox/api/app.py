"""The FastAPI application: routes, error envelope, request ids, metrics, docs, playground."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files as package_files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from execbox import __version__
from execbox.api import openapi
from execbox.api.errors import install_error_handlers
from execbox.api.lifecycle import ShutdownMiddleware, ShutdownPlan
from execbox.api.middleware import RequestIdMiddleware
from execbox.api.routes import batches, containers, files, health, messages, metrics, models, usage
from execbox.protocol.errors import ErrorResponse
from execbox.services import Services
from execbox.settings import Settings

log = logging.getLogger("execbox")

PLAYGROUND = Path(__file__).with_name("playground")
DESCRIPTION = (
    "A self-hosted implementation of Anthropic's code execution tool: the Messages API with "
    "`code_execution` tools, the Files API, and a direct containers API. Authenticate with "
    "`x-api-key` or `Authorization: Bearer`."
)
ERRORS = {status: {"model": ErrorResponse, "description": "Anthropic's error envelope."}
          for status in (400, 401, 404, 413, 429, 500, 529)}


def _swagger_static() -> Path:
    """Swagger UI's files, shipped in a Python package: /docs needs no CDN."""
    return Path(str(package_files("fastapi_offline") / "static"))


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

    app = FastAPI(
        title="execbox", version=__version__, description=DESCRIPTION, lifespan=lifespan,
        docs_url=None, redoc_url=None, responses=ERRORS,  # type: ignore[arg-type]
    )
    app.state.services = svc
    app.state.shutdown = plan
    app.state.workspace_keys = settings.workspace_keys()
    app.add_middleware(ShutdownMiddleware, plan=plan)
    app.add_middleware(RequestIdMiddleware, metrics=svc.metrics)  # outermost: every answer has a request id
    install_error_handlers(app)
    for module in (health, containers, files, batches, messages, models, usage, metrics):
        app.include_router(module.router)
    openapi.install(app)

    app.mount("/static/docs", StaticFiles(directory=_swagger_static()), name="docs-static")
    app.mount("/static/playground", StaticFiles(directory=PLAYGROUND), name="playground-static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title="execbox API",
            swagger_js_url="/static/docs/swagger-ui-bundle.js", swagger_css_url="/static/docs/swagger-ui.css",
            swagger_favicon_url="/static/docs/favicon.png",
        )

    @app.get("/", include_in_schema=False)
    async def playground() -> FileResponse:
        return FileResponse(PLAYGROUND / "index.html", headers={"cache-control": "no-cache"})

    return app
