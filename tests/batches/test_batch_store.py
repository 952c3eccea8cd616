"""The batch store's bookkeeping: claims are exclusive, counts always sum, each node
recovers only its own interrupted requests."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from execbox import db
from execbox.batches.store import BatchStore
from execbox.db import utcnow
from execbox.errors import InvalidRequest, NotFound
from tests.database import database_url  # noqa: F401  (fixture)


@pytest.fixture
def store(database_url: str) -> BatchStore:  # noqa: F811
    engine = db.connect(database_url)
    db.create_tables(engine)
    return BatchStore(engine)


def _batch(store: BatchStore, n: int, workspace: str = "w", ttl_s: float = 3600) -> str:
    now = utcnow()
    batch_id = f"msgbatch_{n}_{now.timestamp()}"
    store.create(batch_id, workspace, [(f"c{i}", "{}") for i in range(n)], now, now + timedelta(seconds=ttl_s))
    return batch_id


def test_concurrent_claims_never_hand_out_a_request_twice(store: BatchStore) -> None:
    batch_id = _batch(store, 60)
    claimed: list[tuple[str, int]] = []
    lock = threading.Lock()

    def worker(node: str) -> None:
        while (c := store.claim(node, utcnow())) is not None:
            with lock:
                claimed.append((c.batch_id, c.idx))
            assert store.finish(c, node, {"type": "succeeded", "message": {}})

    threads = [threading.Thread(target=worker, args=(f"node-{i % 2}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == [(batch_id, i) for i in range(60)]
    batch = store.get("w", batch_id)
    assert batch.status == "ended" and batch.counts["succeeded"] == 60 and sum(batch.counts.values()) == 60


def test_counts_stay_processing_until_the_end_and_cancel_ends_pending_ones(store: BatchStore) -> None:
    batch_id = _batch(store, 3)
    running = store.claim("n", utcnow())
    assert running is not None
    canceling = store.cancel("w", batch_id, utcnow())
    assert canceling.status == "canceling" and canceling.counts["processing"] == 3
    assert store.claim("n", utcnow()) is None  # nothing more starts
    with pytest.raises(InvalidRequest):
        store.delete("w", batch_id)
    store.finish(running, "n", {"type": "succeeded", "message": {}})
    ended = store.get("w", batch_id)
    assert ended.status == "ended" and ended.counts == {
        "processing": 0, "succeeded": 1, "errored": 0, "canceled": 2, "expired": 0}
    lines = b"".join(store.results("w", batch_id)).decode().splitlines()
    assert [line.count('"canceled"') for line in lines] == [0, 1, 1]
    store.delete("w", batch_id)
    with pytest.raises(NotFound):
        store.get("w", batch_id)


def test_a_finish_without_the_claim_writes_nothing(store: BatchStore) -> None:
    _batch(store, 1)
    claimed = store.claim("a", utcnow())
    assert claimed is not None
    assert not store.finish(claimed, "b", {"type": "succeeded", "message": {}})


def test_each_node_recovers_only_its_own_interrupted_requests(store: BatchStore) -> None:
    batch_id = _batch(store, 2)
    mine, theirs = store.claim("mine", utcnow()), store.claim("theirs", utcnow())
    assert mine and theirs
    assert store.recover("mine", {"type": "errored", "error": {}}) == 1
    assert store.get("w", batch_id).status == "in_progress"  # theirs still runs
    assert store.finish(theirs, "theirs", {"type": "succeeded", "message": {}})
    assert not store.finish(mine, "mine", {"type": "succeeded", "message": {}})  # already recorded
    assert store.get("w", batch_id).counts == {
        "processing": 0, "succeeded": 1, "errored": 1, "canceled": 0, "expired": 0}


def test_expiry_ends_pending_requests_as_expired(store: BatchStore) -> None:
    batch_id = _batch(store, 2, ttl_s=0.001)
    later = utcnow() + timedelta(seconds=1)
    assert store.claim("n", later) is None  # past its expiry: nothing starts
    assert store.expire_due(later) == 1
    assert store.get("w", batch_id).counts["expired"] == 2
    with pytest.raises(NotFound):
        store.get("other-workspace", batch_id)
