"""``GET /metrics``: Prometheus' text format (see ``execbox.metrics`` for the names)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import Response

from execbox.api.deps import services
from execbox.metrics import CONTENT_TYPE

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    # Scrape-time gauges read the database: off the event loop.
    body = await asyncio.to_thread(services(request).metrics.exposition)
    return Response(body, media_type=CONTENT_TYPE)
