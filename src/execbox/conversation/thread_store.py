"""Message threads in the metadata database: the ``message_threads`` table and its queries.

One row per stored response, keyed by the response's message id (a thread has no id of its
own: a ``continue`` names the response it follows). A row holds what the next turn needs:
the conversation including that response, the ``system`` and ``tools`` the thread was
created with, and the container it ran in. Its ``state`` makes each response continuable
once: ``open`` -> ``in_flight`` (a continue is running) -> ``continued`` (its successor is
stored; the conversation is dropped from the row, the successor holds it), or back to
``open`` when that continue fails. Rows past their expiry are deleted whenever a response is
stored, and by a periodic sweep (``purge``), so no conversation outlives its thread for long.

Every method does blocking database work: call it from a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa

from execbox.db import Key, UTCDateTime, metadata

OPEN: Literal["open"] = "open"
IN_FLIGHT: Literal["in_flight"] = "in_flight"
CONTINUED: Literal["continued"] = "continued"

threads_table = sa.Table(
    "message_threads",
    metadata,
    sa.Column("id", Key(64), primary_key=True),  # the stored response's message id
    sa.Column("workspace", Key(128), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("system", sa.JSON, nullable=True),
    sa.Column("tools", sa.JSON, nullable=True),
    sa.Column("messages", sa.JSON, nullable=True),  # NULL once continued
    sa.Column("stop_reason", sa.String(64), nullable=True),
    sa.Column("container_id", Key(64), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False, index=True),
)


@dataclass(frozen=True)
class StoredThread:
    """What a stored response leaves for the turn that continues it."""

    id: str
    workspace: str
    system: Any
    tools: list[dict[str, Any]] | None
    messages: list[dict[str, Any]]
    stop_reason: str | None
    container_id: str | None


Claim = StoredThread | Literal["not_found", "continued", "in_flight"]


class ThreadStore:
    """Reads and writes thread rows (SQLAlchemy Core, any backend)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def claim(self, message_id: str, workspace: str, now: datetime) -> Claim:
        """Mark the response ``message_id`` as being continued and return its state, or say why
        it cannot be: unknown, expired or another workspace's (``not_found``), ``continued``
        already, or ``in_flight``. The update is conditional, so two requests cannot both claim."""
        c = threads_table.c
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(threads_table).where(c.id == message_id)).first()
            if row is None or row.workspace != workspace or row.expires_at <= now:
                return "not_found"
            if row.state == CONTINUED:
                return "continued"
            claimed = conn.execute(
                threads_table.update().where(c.id == message_id, c.state == OPEN).values(state=IN_FLIGHT)
            ).rowcount
            if claimed != 1:
                return "in_flight"
        return StoredThread(
            row.id, row.workspace, row.system, row.tools, row.messages or [], row.stop_reason, row.container_id
        )

    def release(self, message_id: str) -> None:
        """A continue failed before storing its response: the response can be continued again."""
        c = threads_table.c
        with self.engine.begin() as conn:
            conn.execute(threads_table.update().where(c.id == message_id, c.state == IN_FLIGHT).values(state=OPEN))

    def store(
        self,
        thread: StoredThread,
        now: datetime,
        expires_at: datetime,
        continues: str | None = None,
    ) -> None:
        """Store a response's thread state; when it ``continues`` an earlier response, that one
        becomes ``continued`` (and drops its copy of the conversation) in the same transaction.
        Expired rows are deleted on the way."""
        c = threads_table.c
        with self.engine.begin() as conn:
            conn.execute(threads_table.delete().where(c.expires_at <= now))
            if continues is not None:
                conn.execute(
                    threads_table.update().where(c.id == continues).values(state=CONTINUED, messages=None)
                )
            conn.execute(
                threads_table.insert().values(
                    id=thread.id,
                    workspace=thread.workspace,
                    state=OPEN,
                    system=thread.system,
                    tools=thread.tools,
                    messages=thread.messages,
                    stop_reason=thread.stop_reason,
                    container_id=thread.container_id,
                    created_at=now,
                    expires_at=expires_at,
                )
            )

    def purge(self, now: datetime) -> int:
        """Delete every expired row; returns how many."""
        with self.engine.begin() as conn:
            return conn.execute(threads_table.delete().where(threads_table.c.expires_at <= now)).rowcount

    def state(self, message_id: str) -> str | None:
        """The row's state (None if there is none): for tests and diagnostics."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(threads_table.c.state).where(threads_table.c.id == message_id)).scalar()
