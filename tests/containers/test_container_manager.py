import asyncio
import io
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest

from execbox.containers.manager import ContainerManager
from execbox.containers.store import EXPIRED, UID_BASE, UID_SPAN, containers_table
from execbox.db import utcnow
from execbox.errors import ContainerDeleted, ContainerExpired, ContainerNotFound, TooManyContainers
from execbox.sandbox.types import EditRequest, ExecRequest

MakeManager = Callable[..., Awaitable[ContainerManager]]


def py(code: str) -> ExecRequest:
    return ExecRequest("python", code)


def sh(command: str) -> ExecRequest:
    return ExecRequest("bash", command)


def force_expiry(manager: ContainerManager, container_id: str) -> None:
    with manager.store.engine.begin() as conn:
        conn.execute(
            containers_table.update()
            .where(containers_table.c.id == container_id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )


async def test_create_and_get(make_manager: MakeManager) -> None:
    manager = await make_manager(ttl_s=600)
    container = await manager.create("ws")
    assert container.id.startswith("container_")
    assert container.expires_at - container.created_at == timedelta(seconds=600)
    assert await manager.get("ws", container.id) == container
    row = manager.store.get(container.id)
    assert row is not None and UID_BASE <= row.uid < UID_BASE + UID_SPAN and row.status == "active"
    assert (manager.boxes_dir / container.id / "mnt" / "workspace").is_dir()


async def test_uids_are_unique_and_reused_only_after_the_box_is_gone(make_manager: MakeManager) -> None:
    manager = await make_manager()
    a, b, c = [await manager.create("ws") for _ in range(3)]
    uids = [manager.store.get(x.id).uid for x in (a, b, c)]  # type: ignore[union-attr]
    assert len(set(uids)) == 3
    # A sandbox sees its host uid: it must not tell how many containers exist.
    assert sorted(uids) != list(range(min(uids), min(uids) + 3))  # type: ignore[type-var]
    force_expiry(manager, b.id)
    assert await manager.reap() == 1
    assert manager.store.get(b.id).uid is None  # type: ignore[union-attr]
    d = await manager.create("ws")
    assert manager.store.get(d.id).uid not in (uids[0], uids[2])  # type: ignore[union-attr]


async def test_live_containers_per_workspace_are_capped(make_manager: MakeManager) -> None:
    manager = await make_manager(max_containers=2)
    first, _ = await manager.create("ws"), await manager.create("ws")
    with pytest.raises(TooManyContainers) as refused:
        await manager.create("ws")
    assert (refused.value.status, refused.value.details) == (429, {"error_code": "too_many_containers"})
    ttl = (first.expires_at - first.created_at).total_seconds()
    assert refused.value.retry_after is not None and 0 < refused.value.retry_after <= ttl + 1  # the first expiry
    assert len(manager.store.active()) == 2  # nothing was made for the refused one
    await manager.create("other")  # another workspace has its own allowance
    await manager.destroy("ws", first.id)
    await manager.create("ws")
    await asyncio.gather(*(manager.create("burst") for _ in range(5)), return_exceptions=True)
    assert manager.store.count_active("burst") == 2  # concurrent creates cannot overshoot


async def test_waiting_for_the_database_does_not_block_the_event_loop(make_manager: MakeManager) -> None:
    manager = await make_manager()
    container = await manager.create("ws")
    with manager.store.engine.begin() as conn:  # holds a write lock on the row until the block ends
        conn.execute(
            containers_table.update().where(containers_table.c.id == container.id).values(last_used_at=utcnow())
        )
        use = asyncio.create_task(manager.put_file("ws", container.id, "x.txt", b"x"))
        await asyncio.sleep(0.2)  # the loop runs on while the manager waits for the lock
        assert not use.done()
    assert await use == "x.txt"


async def test_files_persist_between_executions(make_manager: MakeManager) -> None:
    manager = await make_manager()
    container = await manager.create("ws")
    first = await manager.execute("ws", container.id, py("open('n.txt', 'w').write('42')"))
    assert first.result.return_code == 0
    second = await manager.execute("ws", container.id, sh("cat n.txt; echo oops >&2; exit 3"))
    assert (second.result.stdout, second.result.stderr, second.result.return_code) == ("42", "oops\n", 3)
    assert await manager.list_files("ws", container.id) == [("n.txt", 2)]
    with await manager.open_file("ws", container.id, "n.txt") as file:
        assert file.read() == b"42"
    assert manager.store.get(container.id).execution_seconds > 0  # type: ignore[union-attr]


async def test_output_files_become_downloadable_files(make_manager: MakeManager) -> None:
    manager = await make_manager()
    container = await manager.create("ws")
    execution = await manager.execute(
        "ws", container.id,
        sh('printf a,b > "$OUTPUT_DIR/t.csv"; head -c 5000 /dev/zero > "$OUTPUT_DIR/big.bin"; '
           'printf x > "$OUTPUT_DIR/odd:name?.txt"'),
    )
    by_name = {f.filename: f for f in execution.files}
    assert set(by_name) == {"t.csv", "big.bin", "odd_name_.txt"}
    csv = by_name["t.csv"].file
    assert csv is not None and csv.downloadable and csv.mime_type == "text/csv"
    assert manager.files.path("ws", csv.id).read_bytes() == b"a,b"
    assert by_name["big.bin"].file is None and by_name["big.bin"].error_code == "output_file_too_large"
    assert by_name["big.bin"].size_bytes == 5000
    assert list(manager.engine.staging.iterdir()) == []  # type: ignore[attr-defined]


async def test_other_workspaces_and_unknown_ids_are_not_found(make_manager: MakeManager) -> None:
    manager = await make_manager()
    container = await manager.create("ws")
    for call in (
        manager.get("other", container.id),
        manager.execute("other", container.id, py("pass")),
        manager.put_file("other", container.id, "x", b""),
        manager.list_files("other", container.id),
        manager.destroy("other", container.id),
        manager.get("ws", "container_unknown"),
        manager.get("ws", "container_\x00"),
    ):
        with pytest.raises(ContainerNotFound):
            await call
    assert await manager.get("ws", container.id)


async def test_idle_expiry_is_refreshed_by_use(make_manager: MakeManager) -> None:
    manager = await make_manager(ttl_s=600, expiry="idle")
    container = await manager.create("ws")
    await manager.execute("ws", container.id, py("pass"))
    after = await manager.get("ws", container.id)
    assert after.last_used_at > container.last_used_at
    assert after.expires_at == after.last_used_at + timedelta(seconds=600)


async def test_created_expiry_is_not_refreshed_by_use(make_manager: MakeManager) -> None:
    manager = await make_manager(ttl_s=600, expiry="created")
    container = await manager.create("ws")
    await manager.execute("ws", container.id, py("pass"))
    after = await manager.get("ws", container.id)
    assert after.last_used_at > container.last_used_at
    assert after.expires_at == container.created_at + timedelta(seconds=600)


async def test_expired_container_is_freed_on_use_and_leaves_a_tombstone(make_manager: MakeManager) -> None:
    manager = await make_manager()
    container = await manager.create("ws")
    force_expiry(manager, container.id)
    with pytest.raises(ContainerExpired):
        await manager.get("ws", container.id)
    with pytest.raises(ContainerExpired):
        await manager.execute("ws", container.id, py("pass"))
    assert not (manager.boxes_dir / container.id).exists()
    assert manager.store.get(container.id).status == EXPIRED  # type: ignore[union-attr]
    with pytest.raises(ContainerExpired):
        await manager.list_files("ws", container.id)
    with pytest.raises(ContainerNotFound):
        await manager.get("other", container.id)


async def test_reaper_frees_expired_containers_in_the_background(make_manager: MakeManager) -> None:
    manager = await make_manager(ttl_s=0.2, reaper_interval_s=0.05)
    container = await manager.create("ws")
    kept = await manager.create("ws")
    for _ in range(100):
        await manager.put_file("ws", kept.id, "touch", b"")
        if manager.store.get(container.id).status == EXPIRED:  # type: ignore[union-attr]
            break
        await asyncio.sleep(0.05)
    assert manager.store.get(container.id).status == EXPIRED  # type: ignore[union-attr]
    assert not (manager.boxes_dir / container.id).exists()
    assert manager.store.get(kept.id).status == "active"  # type: ignore[union-attr]


async def test_containers_survive_a_restart(make_manager: MakeManager) -> None:
    first = await make_manager()
    container = await first.create("ws")
    assert await first.put_file("ws", container.id, "../../data/x.txt", b"kept") == "data/x.txt"
    await first.stop()
    assert container.id not in first.engine.open  # type: ignore[attr-defined]

    second = await make_manager()
    assert container.id in second.engine.open  # type: ignore[attr-defined]
    assert await second.get("ws", container.id) == await first.get("ws", container.id)
    execution = await second.execute("ws", container.id, sh("cat data/x.txt"))
    assert execution.result.stdout == "kept"


async def test_containers_that_expired_while_down_are_freed_at_start(make_manager: MakeManager) -> None:
    first = await make_manager()
    container = await first.create("ws")
    await first.stop()
    force_expiry(first, container.id)

    second = await make_manager()
    assert container.id not in second.engine.open  # type: ignore[attr-defined]
    assert not (second.boxes_dir / container.id).exists()
    with pytest.raises(ContainerExpired):
        await second.get("ws", container.id)


async def test_executions_are_serialised_per_container_only(make_manager: MakeManager) -> None:
    manager = await make_manager()
    a, b = await manager.create("ws"), await manager.create("ws")
    nap = py("import time; time.sleep(0.3)")
    await asyncio.gather(*(manager.execute("ws", a.id, nap) for _ in range(3)))
    assert manager.engine.max_running_per_box == 1  # type: ignore[attr-defined]
    await asyncio.gather(manager.execute("ws", a.id, nap), manager.execute("ws", b.id, nap))
    assert manager.engine.max_running_total == 2  # type: ignore[attr-defined]


async def test_destroy(make_manager: MakeManager) -> None:
    manager = await make_manager()
    container = await manager.create("ws")
    await manager.destroy("ws", container.id)
    assert not (manager.boxes_dir / container.id).exists()
    with pytest.raises(ContainerNotFound):
        await manager.get("ws", container.id)
    expired = await manager.create("ws")
    force_expiry(manager, expired.id)
    await manager.reap()
    await manager.destroy("ws", expired.id)
    assert manager.store.get(expired.id) is None


@pytest.mark.timeout(30)  # without the stop, destroy would wait for the whole execution
async def test_destroy_stops_a_running_execution(make_manager: MakeManager) -> None:
    manager = await make_manager()
    container = await manager.create("ws")
    running = asyncio.create_task(manager.execute("ws", container.id, py("import time; time.sleep(600)")))
    while not manager.engine.running.get(container.id):  # type: ignore[attr-defined]
        await asyncio.sleep(0.01)
    await manager.destroy("ws", container.id)
    with pytest.raises(ContainerDeleted):
        await running
    assert not (manager.boxes_dir / container.id).exists()
    with pytest.raises(ContainerNotFound):
        await manager.execute("ws", container.id, py("print(1)"))


async def test_reaper_skips_a_container_in_use(make_manager: MakeManager) -> None:
    manager = await make_manager(ttl_s=3600)
    container = await manager.create("ws")
    running = asyncio.create_task(manager.execute("ws", container.id, py("import time; time.sleep(0.5); print('done')")))
    while not manager.engine.running.get(container.id):  # type: ignore[attr-defined]
        await asyncio.sleep(0.01)
    force_expiry(manager, container.id)
    assert await manager.reap() == 0
    assert (await running).result.stdout == "done\n"


async def test_upload_copies_a_file_into_the_workspace(make_manager: MakeManager) -> None:
    manager = await make_manager()
    container = await manager.create("ws")
    record = manager.files.create("ws", "data.csv", io.BytesIO(b"x,y\n1,2\n"))
    assert await manager.upload("ws", container.id, record) == "data.csv"
    execution = await manager.execute("ws", container.id, py("print(open('data.csv').read().split()[1])"))
    assert execution.result.stdout == "1,2\n"


async def test_edit_runs_in_the_container(make_manager: MakeManager) -> None:
    manager = await make_manager()
    container = await manager.create("ws")
    created = await manager.edit("ws", container.id, EditRequest("create", "notes.md", file_text="hi"))
    assert created.is_file_update is False
    viewed = await manager.edit("ws", container.id, EditRequest("view", "notes.md"))
    assert viewed.content == "hi"
