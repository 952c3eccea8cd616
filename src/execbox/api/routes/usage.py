"""``GET /v1/usage``: what the caller's workspace used (metering), with its cost.

Query: ``starting_at`` and ``ending_at`` (RFC 3339; default: everything up to now),
``group_by`` (``workspace``, ``day`` or ``model``), ``workspace`` (the caller's own; other
workspaces are the operator's, through ``execbox usage``).
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends

from execbox.api.deps import services, workspace
from execbox.db import utcnow
from execbox.errors import InvalidRequest, NotFound
from execbox.services import Services

router = APIRouter()

Workspace = Annotated[str, Depends(workspace)]
Svc = Annotated[Services, Depends(services)]


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


@router.get("/v1/usage")
async def usage(
    caller: Workspace,
    svc: Svc,
    starting_at: datetime | None = None,
    ending_at: datetime | None = None,
    group_by: Literal["workspace", "day", "model"] = "workspace",
    workspace: str | None = None,
) -> dict[str, Any]:
    if workspace is not None and workspace != caller:
        raise NotFound(f"Workspace `{workspace}` not found.")
    starting_at, ending_at = _aware(starting_at), _aware(ending_at) or utcnow()
    if starting_at is not None and starting_at >= ending_at:
        raise InvalidRequest("starting_at must be before ending_at.")
    assert svc.usage is not None
    price = svc.settings.price_container_hour
    rows = await asyncio.to_thread(
        svc.usage.report, workspace=caller, starting_at=starting_at, ending_at=ending_at, group_by=group_by,
        price_container_hour=price,
    )
    data = []
    for row in rows:
        item = {k: v for k, v in asdict(row).items() if not k.startswith("_")}
        if group_by != "day":
            item.pop("day")
        if group_by != "model":
            item.pop("model")
        data.append(item)
    return {
        "type": "usage_report",
        "data": data,
        "starting_at": starting_at.isoformat() if starting_at else None,
        "ending_at": ending_at.isoformat(),
        "group_by": group_by,
        "price_container_hour_usd": price,
    }
