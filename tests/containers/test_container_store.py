from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from execbox import db
from execbox.containers.store import UID_BASE, ContainerStore


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
    assert {row.uid for row in rows} == set(range(UID_BASE, UID_BASE + 24))
