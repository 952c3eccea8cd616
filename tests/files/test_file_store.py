import base64
import io
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from execbox import db
from execbox.errors import FileExpired, FileNotFound, InvalidRequest, RequestTooLarge, StorageQuotaExceeded
from execbox.files.store import FileStore, files_table, safe_filename


@pytest.fixture
def store(database_url: str, tmp_path: Path) -> Iterator[FileStore]:
    engine = db.connect(database_url)
    db.create_tables(engine)
    yield FileStore(engine, tmp_path / "files", max_size=1000)
    engine.dispose()


def upload(store: FileStore, name: str = "a.csv", data: bytes = b"x,y\n1,2\n", **kw) -> str:
    return store.create("ws", name, io.BytesIO(data), **kw).id


def cursor(seq: int, file_id: str) -> str:
    return "page_" + base64.urlsafe_b64encode(f"{seq}:{file_id}".encode()).decode()


def test_upload_round_trip(store: FileStore) -> None:
    record = store.create("ws", "data.csv", io.BytesIO(b"x,y\n1,2\n"), mime_type="text/csv")
    assert record.id.startswith("file_")
    assert (record.filename, record.mime_type, record.size_bytes) == ("data.csv", "text/csv", 8)
    assert record.downloadable is False and record.expires_at is None
    assert store.get("ws", record.id) == record
    assert store.path("ws", record.id).read_bytes() == b"x,y\n1,2\n"


def test_mime_type_is_guessed_when_not_declared(store: FileStore) -> None:
    assert store.get("ws", upload(store, "report.xlsx")).mime_type.endswith("spreadsheetml.sheet")
    octet = store.create("ws", "notes.md", io.BytesIO(b"# hi"), mime_type="application/octet-stream")
    assert octet.mime_type == "text/markdown"
    assert store.get("ws", upload(store, "blob")).mime_type == "application/octet-stream"
    control = store.create("ws", "a.txt", io.BytesIO(b"x"), mime_type="text/plain; x=\x00")
    assert control.mime_type == "text/plain"


def test_other_workspace_sees_nothing(store: FileStore) -> None:
    file_id = upload(store)
    with pytest.raises(FileNotFound):
        store.get("other", file_id)
    with pytest.raises(FileNotFound):
        store.delete("other", file_id)
    assert store.list("other").records == []


@pytest.mark.parametrize("name", ["", "a" * 256, "a/b", "a\\b", "x:y", "q?", 'quo"te', "tab\there", "<x>", "p|q", "*"])
def test_bad_filenames_are_rejected(store: FileStore, name: str) -> None:
    with pytest.raises(InvalidRequest):
        upload(store, name)


def test_safe_filename_makes_acceptable_names() -> None:
    assert safe_filename("a:b/c?.png") == "a_b_c_.png"
    assert safe_filename("") == "file"
    assert len(safe_filename("x" * 300)) == 255


def test_too_large_upload_leaves_nothing_behind(store: FileStore) -> None:
    with pytest.raises(RequestTooLarge):
        upload(store, data=b"x" * 1001)
    assert store.list("ws").records == []
    assert list(store.staging_dir.iterdir()) == []
    assert upload(store, data=b"x" * 1000)


@pytest.mark.parametrize("seconds", [0, 3599, 7776001])
def test_expiry_bounds(store: FileStore, seconds: int) -> None:
    with pytest.raises(InvalidRequest):
        upload(store, expires_in_seconds=seconds)


def test_expired_file_keeps_metadata_but_loses_content(store: FileStore) -> None:
    file_id = upload(store, expires_in_seconds=3600)
    with store.engine.begin() as conn:
        conn.execute(
            files_table.update().values(expires_at=db.utcnow() - timedelta(seconds=1))
        )
    with pytest.raises(FileExpired):
        store.path("ws", file_id)
    assert store.purge_expired() == 1
    assert store.purge_expired() == 0
    assert [r.id for r in store.list("ws").records] == [file_id]
    assert not any(p.is_file() and p.name == file_id for p in store.root.rglob("*"))


def test_generated_file_is_moved_in(store: FileStore, tmp_path: Path) -> None:
    staged = tmp_path / "plot.png"
    staged.write_bytes(b"\x89PNG")
    record = store.create("ws", "plot.png", staged, downloadable=True)
    assert not staged.exists()
    assert record.downloadable and record.mime_type == "image/png" and record.size_bytes == 4
    assert store.path("ws", record.id).read_bytes() == b"\x89PNG"


def test_delete(store: FileStore) -> None:
    file_id = upload(store)
    blob = store.path("ws", file_id)
    store.delete("ws", file_id)
    assert not blob.exists()
    with pytest.raises(FileNotFound):
        store.get("ws", file_id)
    with pytest.raises(FileNotFound):
        store.delete("ws", file_id)


def test_list_pages_newest_first_with_page_cursor(store: FileStore) -> None:
    ids = [upload(store, f"f{i}.txt") for i in range(7)]
    newest_first = ids[::-1]
    seen, page = [], None
    while True:
        result = store.list("ws", limit=3, page=page)
        seen += [r.id for r in result.records]
        if not result.next_page:
            assert result.has_more is False
            break
        assert result.next_page.startswith("page_")
        page = result.next_page
    assert seen == newest_first


def test_list_with_legacy_cursors(store: FileStore) -> None:
    ids = [upload(store, f"f{i}.txt") for i in range(5)][::-1]
    first = store.list("ws", limit=2)
    assert [r.id for r in first.records] == ids[:2] and first.has_more
    after = store.list("ws", limit=2, after_id=ids[1])
    assert [r.id for r in after.records] == ids[2:4] and after.has_more
    before = store.list("ws", limit=2, before_id=ids[4])
    assert [r.id for r in before.records] == ids[2:4] and before.has_more
    last = store.list("ws", limit=2, before_id=ids[2])
    assert [r.id for r in last.records] == ids[:2] and not last.has_more


def test_list_by_ids(store: FileStore) -> None:
    ids = [upload(store, f"f{i}.txt") for i in range(4)]
    result = store.list("ws", ids=[ids[0], ids[2], ids[0], "file_unknown"])
    assert [r.id for r in result.records] == [ids[2], ids[0]]
    assert result.has_more is False and result.next_page is None
    with pytest.raises(InvalidRequest):
        store.list("ws", ids=[f"file_{i}" for i in range(101)])


@pytest.mark.parametrize(
    "kwargs",
    [{"limit": 0}, {"limit": 1001}, {"page": "bogus"}, {"page": "page_!!"}, {"after_id": "file_nope"},
     {"before_id": "file_a", "after_id": "file_b"}, {"page": cursor(2**63, "file_a")},
     {"page": cursor(-1, "file_a")}],
)
def test_list_rejects_bad_parameters(store: FileStore, kwargs: dict) -> None:
    with pytest.raises(InvalidRequest):
        store.list("ws", **kwargs)


def test_ids_with_a_nul_character_are_unknown(store: FileStore) -> None:
    file_id = upload(store)
    with pytest.raises(FileNotFound):
        store.get("ws", "file_\x00")
    with pytest.raises(FileNotFound):
        store.delete("ws", "file_\x00")
    with pytest.raises(InvalidRequest):
        store.list("ws", after_id="file_\x00")
    assert store.list("ws", ids=["file_\x00", file_id]).records == [store.get("ws", file_id)]
    assert store.list("ws", page=cursor(2**62, "file_\x00")).records == [store.get("ws", file_id)]
    assert store.list("ws\x00").records == []


def test_metadata_survives_a_new_store(store: FileStore) -> None:
    file_id = upload(store, data=b"kept")
    again = FileStore(store.engine, store.root, max_size=1000)
    assert again.path("ws", file_id).read_bytes() == b"kept"


@pytest.fixture
def quota_store(database_url: str, tmp_path: Path) -> Iterator[FileStore]:
    engine = db.connect(database_url)
    db.create_tables(engine)
    yield FileStore(engine, tmp_path / "files", max_size=1000, quota_bytes=2500, generated_ttl_s=3600)
    engine.dispose()


def test_a_workspace_cannot_store_past_its_quota(quota_store: FileStore, tmp_path: Path) -> None:
    first = upload(quota_store, data=b"x" * 1000)
    upload(quota_store, data=b"x" * 1000)
    with pytest.raises(StorageQuotaExceeded) as refused:
        upload(quota_store, data=b"x" * 1000)
    assert refused.value.status == 400 and "2000 of 2500 bytes" in refused.value.message
    # A generated file counts at its apparent size: a sparse one in full.
    sparse = tmp_path / "sparse.bin"
    with sparse.open("wb") as f:
        f.truncate(900)
    with pytest.raises(StorageQuotaExceeded):
        quota_store.create("ws", "out.bin", sparse, downloadable=True)
    assert quota_store.used_bytes("ws") == 2000
    assert len(list((tmp_path / "files").glob("??/*"))) == 2  # nothing left behind by a refusal
    quota_store.create("other", "a.csv", io.BytesIO(b"x" * 1000))  # another workspace's own quota
    quota_store.delete("ws", first)
    upload(quota_store, data=b"x" * 1000)  # deleting made room


def test_generated_files_expire_and_are_purged(quota_store: FileStore, tmp_path: Path) -> None:
    staged = tmp_path / "out.txt"
    staged.write_bytes(b"result")
    generated = quota_store.create("ws", "out.txt", staged, downloadable=True)
    uploaded = quota_store.get("ws", upload(quota_store))
    assert uploaded.expires_at is None
    assert generated.expires_at is not None
    assert timedelta(minutes=59) < generated.expires_at - generated.created_at <= timedelta(hours=1)
    with quota_store.engine.begin() as conn:  # an hour later
        conn.execute(files_table.update().where(files_table.c.id == generated.id)
                     .values(expires_at=generated.created_at))
    assert quota_store.purge_expired() == 1
    with pytest.raises(FileExpired):
        quota_store.path("ws", generated.id)
    assert quota_store.used_bytes("ws") == uploaded.size_bytes  # purged content no longer counts
