"""``GET /v1/models`` and ``GET /v1/models/{id}``: the models the configured backends list."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from execbox.api.deps import api_version, services
from execbox.backends import base
from execbox.errors import InvalidRequest
from execbox.protocol.models import ModelInfo, ModelList
from execbox.services import Services

router = APIRouter(tags=["models"], dependencies=[Depends(api_version)])

Svc = Annotated[Services, Depends(services)]


def _wire(info: base.ModelInfo) -> ModelInfo:
    return ModelInfo(
        id=info.id,
        display_name=info.display_name,
        created_at=info.created_at,
        max_input_tokens=info.max_input_tokens,
        max_tokens=info.max_tokens,
    )


@router.get("/v1/models")
async def list_models(
    svc: Svc,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    before_id: str | None = None,
    after_id: str | None = None,
) -> ModelList:
    """One page of models; ``after_id`` pages forward, ``before_id`` backward."""
    models = svc.backends.models()
    ids = [info.id for info in models]
    for name, cursor in (("before_id", before_id), ("after_id", after_id)):
        if cursor is not None and cursor not in ids:
            raise InvalidRequest(f"{name}: unknown model `{cursor}`.")
    if before_id is not None:
        end = ids.index(before_id)
        start = max(0, end - limit)
        has_more = start > 0
    else:
        start = ids.index(after_id) + 1 if after_id is not None else 0
        end = start + limit
        has_more = end < len(ids)
    page = [_wire(info) for info in models[start:end]]
    return ModelList(
        data=page,
        has_more=has_more,
        first_id=page[0].id if page else None,
        last_id=page[-1].id if page else None,
    )


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(model_id: str, svc: Svc) -> ModelInfo:
    return _wire(svc.backends.model(model_id))
