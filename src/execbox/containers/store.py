"""Container metadata: the ``containers`` table and its queries (SQLAlchemy Core, any backend).

A row is ``active`` while its box exists. When a container expires its box is freed and
the row stays behind as an ``expired`` tombstone, so later requests can tell "expired"
from "never existed". A tombstone has no uid: host uids are unique among live boxes only.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import sqlalchemy as sa

from execbox.db import Key, UTCDateTime, metadata

# Containers run as random host uids in [UID_BASE, UID_BASE + UID_SPAN), far above any
# regular account. Random, not the lowest free one: a sandbox sees its host uid (in the
# options of its own tmpfs mounts), and a sequential uid would tell how many containers
# the server holds.
UID_BASE = 200_000
UID_SPAN = 1 << 30
ACTIVE: Literal["active"] = "active"
EXPIRED: Literal["expired"] = "expired"

containers_table = sa.Table(
    "containers",
    metadata,
    sa.Column("id", Key(64), primary_key=True),
    sa.Column("workspace", Key(128), nullable=False, index=True),
    sa.Column("uid", sa.Integer, nullable=True, unique=True),  # NULL once the box is gone
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("last_used_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False, index=True),
    sa.Column("execution_seconds", sa.Float, nullable=False, default=0.0),  # total, for metering
    sa.Column("node", sa.String(128), nullable=True, index=True),  # the server whose disk holds the box
)


_ROW_COLUMNS = [column for column in containers_table.c if column.name != "node"]


@dataclass(frozen=True)
class ContainerRow:
    id: str
    workspace: str
    uid: int | None
    status: Literal["active", "expired"]
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    execution_seconds: float


class ContainerStore:
    """Reads and writes container rows.

    With a ``node``, the store sees only that server's containers (servers sharing one
    database each own the boxes on their disks): lookups, start-up, expiry and purges skip
    the others'. Counts per workspace and uids span every node: a workspace's quota is one,
    and two servers on one host must never give two boxes the same uid.
    """

    def __init__(self, engine: sa.Engine, node: str | None = None) -> None:
        self.engine = engine
        self.node = node
        self._insert_lock = threading.Lock()

    def adopt_orphans(self) -> int:
        """Rows written before containers had a node become this node's."""
        if self.node is None:
            return 0
        with self.engine.begin() as conn:
            return conn.execute(
                containers_table.update().where(containers_table.c.node.is_(None)).values(node=self.node)
            ).rowcount

    def _mine(self) -> list[sa.ColumnElement[bool]]:
        return [] if self.node is None else [containers_table.c.node == self.node]

    def insert(self, container_id: str, workspace: str, now: datetime, expires_at: datetime) -> ContainerRow:
        """Add an active container with a random free host uid."""
        for _ in range(5):
            try:
                # Threads of this process pick uids in turn; other processes are caught below.
                with self._insert_lock, self.engine.begin() as conn:
                    uid = _random_free_uid(conn)
                    conn.execute(
                        containers_table.insert().values(
                            id=container_id, workspace=workspace, uid=uid, status=ACTIVE,
                            created_at=now, last_used_at=now, expires_at=expires_at, execution_seconds=0.0,
                            node=self.node,
                        )
                    )
                return ContainerRow(container_id, workspace, uid, ACTIVE, now, now, expires_at, 0.0)
            except sa.exc.IntegrityError:  # another process took the same uid: pick again
                continue
        raise RuntimeError("could not allocate a uid for a new container")

    def get(self, container_id: str) -> ContainerRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(*_ROW_COLUMNS).where(containers_table.c.id == container_id, *self._mine())
            ).first()
        return None if row is None else ContainerRow(**row._mapping)

    def active(self) -> list[ContainerRow]:
        return self._select(containers_table.c.status == ACTIVE, *self._mine())

    def count_active(self, workspace: str) -> int:
        c = containers_table.c
        with self.engine.connect() as conn:
            query = sa.select(sa.func.count()).select_from(containers_table)
            return conn.execute(query.where(c.workspace == workspace, c.status == ACTIVE)).scalar_one()

    def page(
        self, workspace: str, now: datetime, limit: int, *, after_id: str | None = None, before_id: str | None = None
    ) -> tuple[list[ContainerRow], bool] | None:
        """One page of the workspace's live containers (active, not past expiry), newest first,
        and whether more follow in the paging direction: after ``after_id`` (older) or before
        ``before_id`` (newer). None when the cursor is no container of the workspace (a
        container that expired since still works as a cursor)."""
        c = containers_table.c
        query = sa.select(*_ROW_COLUMNS).where(
            c.workspace == workspace, c.status == ACTIVE, c.expires_at > now, *self._mine()
        )
        cursor_id = after_id or before_id
        with self.engine.connect() as conn:
            if cursor_id is not None:
                cursor = conn.execute(
                    sa.select(c.created_at, c.id).where(c.id == cursor_id, c.workspace == workspace)
                ).first()
                if cursor is None:
                    return None
                if before_id is not None:
                    query = query.where(sa.tuple_(c.created_at, c.id) > sa.tuple_(cursor.created_at, cursor.id))
                else:
                    query = query.where(sa.tuple_(c.created_at, c.id) < sa.tuple_(cursor.created_at, cursor.id))
            order = (c.created_at.asc(), c.id.asc()) if before_id is not None else (c.created_at.desc(), c.id.desc())
            rows = [ContainerRow(**row._mapping) for row in conn.execute(query.order_by(*order).limit(limit + 1))]
        has_more = len(rows) > limit
        rows = rows[:limit]
        return (list(reversed(rows)) if before_id is not None else rows), has_more

    def count_all_active(self) -> int:
        with self.engine.connect() as conn:
            query = sa.select(sa.func.count()).select_from(containers_table)
            return conn.execute(query.where(containers_table.c.status == ACTIVE)).scalar_one()

    def soonest_expiry(self, workspace: str) -> datetime | None:
        """When the workspace's first live container expires (any node)."""
        c = containers_table.c
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(sa.func.min(c.expires_at)).where(c.workspace == workspace, c.status == ACTIVE)
            ).scalar_one_or_none()

    def due(self, now: datetime) -> list[ContainerRow]:
        """Active containers whose expiry time has passed."""
        c = containers_table.c
        return self._select(c.status == ACTIVE, c.expires_at <= now, *self._mine())

    def touch(self, container_id: str, now: datetime, expires_at: datetime, execution_seconds: float = 0.0) -> None:
        """Record a use: last-use time, new expiry, and execution time to add."""
        c = containers_table.c
        with self.engine.begin() as conn:
            conn.execute(
                containers_table.update()
                .where(c.id == container_id)
                .values(last_used_at=now, expires_at=expires_at,
                        execution_seconds=c.execution_seconds + execution_seconds)
            )

    def expire(self, container_id: str) -> None:
        """Turn the row into a tombstone, releasing its uid."""
        with self.engine.begin() as conn:
            conn.execute(
                containers_table.update()
                .where(containers_table.c.id == container_id)
                .values(status=EXPIRED, uid=None)
            )

    def delete(self, container_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(containers_table.delete().where(containers_table.c.id == container_id))

    def purge_tombstones(self, expired_before: datetime) -> int:
        """Forget tombstones of containers that expired before ``expired_before``."""
        c = containers_table.c
        with self.engine.begin() as conn:
            return conn.execute(
                containers_table.delete().where(c.status == EXPIRED, c.expires_at < expired_before, *self._mine())
            ).rowcount

    def _select(self, *where: sa.ColumnElement[bool]) -> list[ContainerRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(*_ROW_COLUMNS).where(*where).order_by(containers_table.c.created_at))
            return [ContainerRow(**row._mapping) for row in rows]


def _random_free_uid(conn: sa.Connection) -> int:
    while True:
        uid = UID_BASE + secrets.randbelow(UID_SPAN)
        if conn.execute(sa.select(containers_table.c.id).where(containers_table.c.uid == uid)).first() is None:
            return uid
