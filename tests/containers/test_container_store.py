from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from execbox import db
from execbox.containers.store import UID_BASE, UID_SPAN, ContainerStore


@pytest.fixture
def store(database_url: str) -> Iterator[ContainerStore]:
    engine = db.connect(database_url)
    db.create_tables(engine)
    yield ContainerStore(engine)
    engine.dispose()


def test_concurrent_inserts_get_distinct_uids(store: ContainerStore) -> None:
    now = db.utcnow()
    with ThreadPoolExecutor(8) as pool:
        rows = list(pool.map(lambda n: store.insert(f"container_{n}", "ws", now, now), range(24)))
    uids = {row.uid for row in rows}
    assert len(uids) == 24 and all(UID_BASE <= uid < UID_BASE + UID_SPAN for uid in uids)  # type: ignore[operator]


def test_a_database_from_before_node_ids_gains_the_column_and_its_rows_are_adopted(tmp_path: Path) -> None:
    engine = db.connect(f"sqlite:///{tmp_path / 'old.db'}")
    db.create_tables(engine)
    with engine.begin() as conn:  # the schema of the previous release: no `node` column
        conn.execute(sa.text("DROP INDEX ix_containers_node"))
        conn.execute(sa.text("ALTER TABLE containers DROP COLUMN node"))
        later = (db.utcnow() + timedelta(hours=1)).replace(tzinfo=None)
        conn.execute(sa.text(
            "INSERT INTO containers (id, workspace, uid, status, created_at, last_used_at, expires_at, "
            "execution_seconds) VALUES ('container_old', 'w', 200000, 'active', :t, :t, :t, 0)"
        ), {"t": later})

    db.create_tables(engine)
    mine = ContainerStore(engine, node="n1")
    assert [row.id for row in mine.active()] == []
    assert mine.adopt_orphans() == 1
    assert [row.id for row in mine.active()] == ["container_old"]
    assert ContainerStore(engine, node="n2").get("container_old") is None  # another node's
