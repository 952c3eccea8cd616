"""Message Batches metadata: the ``message_batches`` and ``message_batch_requests`` tables.

A batch row holds its status; each request row holds its ``custom_id``, its params (JSON, as
sent), its state and, once finished, its result (JSON). Request states:

``pending`` -> ``running`` (claimed by one node, in a transaction) -> ``succeeded`` | ``errored``;
``pending`` -> ``canceled`` (the batch was canceled) | ``expired`` (the batch ran out of time).

A request is claimed before it runs and its result is written in one statement that also
requires the claim, so no request runs twice: a request found ``running`` by its own node at
start-up was interrupted by a crash and becomes ``errored`` instead of running again. A
batch ends, in the same transaction as its last request's result, once no request is
``pending`` or ``running``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa

from execbox.db import Key, UTCDateTime, metadata, utcnow
from execbox.errors import InvalidRequest, NotFound

IN_PROGRESS, CANCELING, ENDED = "in_progress", "canceling", "ended"
PENDING, RUNNING = "pending", "running"
FINAL_STATES = ("succeeded", "errored", "canceled", "expired")
_INSERT_CHUNK = 1000

batches_table = sa.Table(
    "message_batches",
    metadata,
    sa.Column("id", Key(64), primary_key=True),
    sa.Column("workspace", Key(128), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("request_count", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("ended_at", UTCDateTime, nullable=True),
    sa.Column("cancel_initiated_at", UTCDateTime, nullable=True),
    sa.Column("seq", sa.BigInteger, nullable=False, index=True),  # creation order, for lists and claims
)

requests_table = sa.Table(
    "message_batch_requests",
    metadata,
    sa.Column("batch_id", Key(64), primary_key=True),
    sa.Column("idx", sa.Integer, primary_key=True),
    sa.Column("custom_id", sa.String(64), nullable=False),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("node", sa.String(128), nullable=True),  # who claimed it
    sa.Column("result", sa.Text, nullable=True),
    sa.Column("started_at", UTCDateTime, nullable=True),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.UniqueConstraint("batch_id", "custom_id", name="uq_batch_custom_id"),
    sa.Index("ix_batch_requests_state", "state", "batch_id", "idx"),
)


@dataclass(frozen=True)
class BatchRow:
    id: str
    workspace: str
    status: Literal["in_progress", "canceling", "ended"]
    request_count: int
    created_at: datetime
    expires_at: datetime
    ended_at: datetime | None
    cancel_initiated_at: datetime | None
    counts: dict[str, int]  # final states (all 0 until the batch ends) and ``processing``


@dataclass(frozen=True)
class Claimed:
    """A request this node now owns and must run exactly once."""

    batch_id: str
    idx: int
    custom_id: str
    workspace: str
    params: str


@dataclass(frozen=True)
class BatchPage:
    batches: list[BatchRow]
    has_more: bool


class BatchStore:
    """Reads and writes batches. Every public read is scoped to a workspace."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._seq_lock = threading.Lock()
        self._last_seq = 0

    # --- the API's side ---------------------------------------------------------------------

    def create(
        self, batch_id: str, workspace: str, requests: list[tuple[str, str]], now: datetime, expires_at: datetime
    ) -> BatchRow:
        """A new batch of ``(custom_id, params JSON)`` requests, all ``pending``."""
        with self.engine.begin() as conn:
            conn.execute(batches_table.insert().values(
                id=batch_id, workspace=workspace, status=IN_PROGRESS, request_count=len(requests),
                created_at=now, expires_at=expires_at, seq=self._next_seq(),
            ))
            for start in range(0, len(requests), _INSERT_CHUNK):
                conn.execute(requests_table.insert(), [
                    {"batch_id": batch_id, "idx": start + i, "custom_id": custom_id, "params": params,
                     "state": PENDING}
                    for i, (custom_id, params) in enumerate(requests[start:start + _INSERT_CHUNK])
                ])
        return self.get(workspace, batch_id)

    def get(self, workspace: str, batch_id: str) -> BatchRow:
        with self.engine.connect() as conn:
            return self._get(conn, workspace, batch_id)

    def list(self, workspace: str, limit: int, before_id: str | None, after_id: str | None) -> BatchPage:
        """Newest first. ``after_id``: the page after (older than) that batch; ``before_id``:
        the page before (newer than) it."""
        c = batches_table.c
        with self.engine.connect() as conn:
            query = sa.select(batches_table).where(c.workspace == workspace)
            backward = before_id is not None
            cursor_id = before_id if backward else after_id
            if cursor_id is not None:
                seq = conn.execute(
                    sa.select(c.seq).where(c.workspace == workspace, c.id == cursor_id)
                ).scalar_one_or_none()
                if seq is None:
                    raise InvalidRequest(f"{'before_id' if backward else 'after_id'}: no batch `{cursor_id}`.")
                query = query.where(c.seq > seq if backward else c.seq < seq)
            query = query.order_by(c.seq.asc() if backward else c.seq.desc()).limit(limit + 1)
            rows = conn.execute(query).all()
            has_more = len(rows) > limit
            rows = rows[:limit]
            if backward:
                rows.reverse()
            return BatchPage([self._row(conn, row) for row in rows], has_more)

    def cancel(self, workspace: str, batch_id: str, now: datetime) -> BatchRow:
        """Mark an unfinished batch ``canceling``: requests not yet started are canceled at once;
        a request running now finishes with its own result. An ended batch is left as it is."""
        c, r = batches_table.c, requests_table.c
        with self.engine.begin() as conn:
            batch = self._get(conn, workspace, batch_id)
            if batch.status == IN_PROGRESS:
                conn.execute(batches_table.update().where(c.id == batch_id, c.status == IN_PROGRESS)
                             .values(status=CANCELING, cancel_initiated_at=now))
                conn.execute(requests_table.update().where(r.batch_id == batch_id, r.state == PENDING)
                             .values(state="canceled", finished_at=now))
                _end_if_done(conn, batch_id, now)
            return self._get(conn, workspace, batch_id)

    def delete(self, workspace: str, batch_id: str) -> None:
        with self.engine.begin() as conn:
            batch = self._get(conn, workspace, batch_id)
            if batch.status != ENDED:
                raise InvalidRequest(
                    f"Message batch `{batch_id}` is still {batch.status.replace('_', ' ')}; it can be deleted "
                    "only once it has ended. Cancel it first."
                )
            conn.execute(requests_table.delete().where(requests_table.c.batch_id == batch_id))
            conn.execute(batches_table.delete().where(batches_table.c.id == batch_id))

    def results(self, workspace: str, batch_id: str, page: int = 500) -> Iterator[bytes]:
        """The batch's results, one JSON line per request in request order (the batch must have ended)."""
        batch = self.get(workspace, batch_id)
        if batch.status != ENDED:
            raise InvalidRequest(f"Message batch `{batch_id}` has not ended yet; its results are not ready.")
        return self._result_lines(batch_id, page)

    def _result_lines(self, batch_id: str, page: int) -> Iterator[bytes]:
        r = requests_table.c
        last = -1
        while True:
            with self.engine.connect() as conn:
                rows = conn.execute(
                    sa.select(r.idx, r.custom_id, r.state, r.result)
                    .where(r.batch_id == batch_id, r.idx > last).order_by(r.idx).limit(page)
                ).all()
            if not rows:
                return
            lines = []
            for row in rows:
                result = row.result or json.dumps({"type": row.state})
                lines.append(f'{{"custom_id":{json.dumps(row.custom_id)},"result":{result}}}\n')
            yield "".join(lines).encode()
            last = rows[-1].idx

    # --- the workers' side -----------------------------------------------------------------

    def claim(self, node: str, now: datetime) -> Claimed | None:
        """Take the oldest pending request of a batch still in progress and not past its expiry."""
        b, r = batches_table.c, requests_table.c
        for _ in range(20):
            with self.engine.begin() as conn:
                row = conn.execute(
                    sa.select(r.batch_id, r.idx, r.custom_id, r.params, b.workspace)
                    .join(batches_table, b.id == r.batch_id)
                    .where(r.state == PENDING, b.status == IN_PROGRESS, b.expires_at > now)
                    .order_by(b.seq, r.idx).limit(1)
                ).first()
                if row is None:
                    return None
                taken = conn.execute(
                    requests_table.update()
                    .where(r.batch_id == row.batch_id, r.idx == row.idx, r.state == PENDING)
                    .values(state=RUNNING, node=node, started_at=now)
                ).rowcount
                if taken == 1:
                    return Claimed(row.batch_id, row.idx, row.custom_id, row.workspace, row.params)
        return None  # lost every race: another node is busy claiming; try again later

    def finish(self, claimed: Claimed, node: str, result: dict[str, Any]) -> bool:
        """Record a claimed request's result; ends the batch if it was the last. False if the
        claim was no longer this node's (nothing is written then)."""
        r = requests_table.c
        now = utcnow()
        with self.engine.begin() as conn:
            written = conn.execute(
                requests_table.update()
                .where(r.batch_id == claimed.batch_id, r.idx == claimed.idx, r.state == RUNNING, r.node == node)
                .values(state=result["type"], result=json.dumps(result, separators=(",", ":")), finished_at=now)
            ).rowcount
            if written:
                _end_if_done(conn, claimed.batch_id, now)
        return bool(written)

    def release(self, claimed: Claimed, node: str) -> None:
        """Give back a claimed request that did nothing yet (the server is stopping)."""
        r = requests_table.c
        with self.engine.begin() as conn:
            conn.execute(
                requests_table.update()
                .where(r.batch_id == claimed.batch_id, r.idx == claimed.idx, r.state == RUNNING, r.node == node)
                .values(state=PENDING, node=None, started_at=None)
            )

    def recover(self, node: str, result: dict[str, Any]) -> int:
        """Requests this node was running when it last stopped without recording their
        result: they get ``result`` (errored), never a second run. Returns how many."""
        r = requests_table.c
        now = utcnow()
        with self.engine.begin() as conn:
            batch_ids = conn.execute(
                sa.select(r.batch_id).distinct().where(r.state == RUNNING, r.node == node)
            ).scalars().all()
            count = conn.execute(
                requests_table.update().where(r.state == RUNNING, r.node == node)
                .values(state=result["type"], result=json.dumps(result), finished_at=now)
            ).rowcount
            for batch_id in batch_ids:
                _end_if_done(conn, batch_id, now)
        return count

    def expire_due(self, now: datetime) -> int:
        """Pending requests of batches past their expiry become ``expired``; returns how many batches ended."""
        b, r = batches_table.c, requests_table.c
        ended = 0
        with self.engine.begin() as conn:
            due = conn.execute(
                sa.select(b.id).where(b.status != ENDED, b.expires_at <= now)
            ).scalars().all()
            for batch_id in due:
                conn.execute(requests_table.update().where(r.batch_id == batch_id, r.state == PENDING)
                             .values(state="expired", finished_at=now))
                ended += _end_if_done(conn, batch_id, now)
        return ended

    def purge_ended(self, ended_before: datetime) -> int:
        """Forget batches (and their results) that ended before ``ended_before``."""
        b = batches_table.c
        with self.engine.begin() as conn:
            old = conn.execute(sa.select(b.id).where(b.status == ENDED, b.ended_at < ended_before)).scalars().all()
            for batch_id in old:
                conn.execute(requests_table.delete().where(requests_table.c.batch_id == batch_id))
                conn.execute(batches_table.delete().where(b.id == batch_id))
        return len(old)

    # --- internals --------------------------------------------------------------------------

    def _get(self, conn: sa.Connection, workspace: str, batch_id: str) -> BatchRow:
        c = batches_table.c
        row = conn.execute(sa.select(batches_table).where(c.id == batch_id, c.workspace == workspace)).first()
        if row is None:
            raise NotFound(f"Message batch `{batch_id}` not found.")
        return self._row(conn, row)

    def _row(self, conn: sa.Connection, row: sa.Row) -> BatchRow:
        counts = {"processing": row.request_count, **dict.fromkeys(FINAL_STATES, 0)}
        if row.status == ENDED:
            r = requests_table.c
            by_state = dict(conn.execute(
                sa.select(r.state, sa.func.count()).where(r.batch_id == row.id).group_by(r.state)
            ).all())
            counts = {"processing": 0, **{state: int(by_state.get(state, 0)) for state in FINAL_STATES}}
        m = row._mapping
        return BatchRow(
            m["id"], m["workspace"], m["status"], m["request_count"], m["created_at"], m["expires_at"],
            m["ended_at"], m["cancel_initiated_at"], counts,
        )

    def _next_seq(self) -> int:
        with self._seq_lock:
            self._last_seq = max(time.time_ns(), self._last_seq + 1)
            return self._last_seq


def _end_if_done(conn: sa.Connection, batch_id: str, now: datetime) -> int:
    """End the batch if no request is left to run; 1 if it ended now."""
    r, b = requests_table.c, batches_table.c
    open_requests = conn.execute(
        sa.select(sa.func.count()).select_from(requests_table)
        .where(r.batch_id == batch_id, r.state.in_((PENDING, RUNNING)))
    ).scalar_one()
    if open_requests:
        return 0
    return conn.execute(
        batches_table.update().where(b.id == batch_id, b.status != ENDED).values(status=ENDED, ended_at=now)
    ).rowcount
