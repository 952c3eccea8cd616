"""Metering: what each workspace used, in the ``usage_events`` table, and reports over it.

One row per billable event:

- ``execution``: one execution (code, command or file edit run in a sandbox) and its seconds;
- ``container``: a container's billed seconds, written when it ends (deleted, or expired at
  its ``expires_at``), from creation, at least ``MIN_CONTAINER_SECONDS``; a container a
  request created only to hold attached files counts like any other;
- ``tokens``: one model response's input and output tokens, by model;
- ``batch_request``: one batch request that ran (succeeded or errored).

Live containers are billed in reports up to the report's end (at least the minimum), so a
report never misses a container that has not ended yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

import sqlalchemy as sa

from execbox.db import Key, UTCDateTime, metadata, utcnow

MIN_CONTAINER_SECONDS = 300.0
Kind = Literal["execution", "container", "tokens", "batch_request"]

usage_table = sa.Table(
    "usage_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("workspace", Key(128), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("model", sa.String(256), nullable=True),
    sa.Column("count", sa.Integer, nullable=False, default=1),
    sa.Column("seconds", sa.Float, nullable=False, default=0.0),
    sa.Column("input_tokens", sa.BigInteger, nullable=False, default=0),
    sa.Column("output_tokens", sa.BigInteger, nullable=False, default=0),
    sa.Index("ix_usage_workspace_at", "workspace", "at"),
)

# Read-only view of the containers table (declared by containers/store.py) for live containers.
_containers = sa.table(
    "containers", sa.column("workspace"), sa.column("created_at", UTCDateTime), sa.column("status")
)


@dataclass
class UsageRow:
    """Totals of one group: a workspace, optionally one day or one model of it."""

    workspace: str
    day: str | None = None
    model: str | None = None
    executions: int = 0
    execution_seconds: float = 0.0
    container_hours: float = 0.0
    containers: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    batch_requests: int = 0
    cost_usd: float = 0.0
    _key: tuple[str, ...] = field(default=(), repr=False)


def container_seconds(created_at: datetime, ended_at: datetime) -> float:
    return max(MIN_CONTAINER_SECONDS, (ended_at - created_at).total_seconds())


class UsageStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def record(
        self,
        workspace: str,
        kind: Kind,
        *,
        model: str | None = None,
        count: int = 1,
        seconds: float = 0.0,
        input_tokens: int = 0,
        output_tokens: int = 0,
        at: datetime | None = None,
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(usage_table.insert().values(
                workspace=workspace, at=at or utcnow(), kind=kind, model=model, count=count, seconds=seconds,
                input_tokens=input_tokens, output_tokens=output_tokens,
            ))

    def report(
        self,
        *,
        workspace: str | None = None,
        starting_at: datetime | None = None,
        ending_at: datetime | None = None,
        group_by: Literal["workspace", "day", "model"] = "workspace",
        price_container_hour: float = 0.05,
    ) -> list[UsageRow]:
        """Totals per workspace (and per day or model), events in [starting_at, ending_at)."""
        end = ending_at or utcnow()
        u = usage_table.c
        where = [u.at < end]
        if starting_at is not None:
            where.append(u.at >= starting_at)
        if workspace is not None:
            where.append(u.workspace == workspace)
        rows: dict[tuple[str, ...], UsageRow] = {}

        def row_for(ws: str, at: datetime, model: str | None) -> UsageRow:
            day = at.date().isoformat() if group_by == "day" else None
            model_key = (model or "") if group_by == "model" else None
            key = (ws, day or "", model_key or "")
            if key not in rows:
                rows[key] = UsageRow(ws, day=day, model=model if group_by == "model" else None, _key=key)
            return rows[key]

        with self.engine.connect() as conn:
            for event in conn.execute(sa.select(usage_table).where(*where).order_by(u.at)):
                row = row_for(event.workspace, event.at, event.model)
                if event.kind == "execution":
                    row.executions += event.count
                    row.execution_seconds += event.seconds
                elif event.kind == "container":
                    row.containers += event.count
                    row.container_hours += event.seconds / 3600
                elif event.kind == "tokens":
                    row.input_tokens += event.input_tokens
                    row.output_tokens += event.output_tokens
                elif event.kind == "batch_request":
                    row.batch_requests += event.count
            live = sa.select(_containers.c.workspace, _containers.c.created_at).where(
                _containers.c.status == "active", _containers.c.created_at < end
            )
            if workspace is not None:
                live = live.where(_containers.c.workspace == workspace)
            for container in conn.execute(live):
                if starting_at is not None and end <= starting_at:
                    continue
                row = row_for(container.workspace, end - timedelta(microseconds=1), None)
                row.containers += 1
                row.container_hours += container_seconds(container.created_at, end) / 3600
        result = sorted(rows.values(), key=lambda r: r._key)
        for row in result:
            row.execution_seconds = round(row.execution_seconds, 3)
            row.container_hours = round(row.container_hours, 6)
            row.cost_usd = round(row.container_hours * price_container_hour, 6)
        return result
