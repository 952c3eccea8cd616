"""Boxes across restarts and their destruction; the engine's refusal to run unconfined."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from execbox.sandbox import disk
from execbox.sandbox.bwrap import BwrapEngine
from execbox.sandbox.cgroups import Cgroup
from execbox.sandbox.errors import HostExhausted, Unavailable
from execbox.sandbox.types import Box, ExecRequest
from tests.sandbox.sandbox_support import TEST_LIMITS, EngineWith, MakeBox, Run, host_pids_of


def _loop_devices_of(image: Path) -> str:
    return subprocess.run(["losetup", "-j", str(image)], capture_output=True, text=True).stdout


@pytest.mark.sandbox
async def test_box_survives_close_and_reopen(engine: BwrapEngine, engine_with: EngineWith, box: Box, run: Run) -> None:
    await run(box, "open('kept.txt', 'w').write('still here')")
    await engine.close_box(box)
    assert not os.path.ismount(box.mount)
    assert not any(d.exists() for d in Cgroup.for_box(box.id).dirs)
    restarted = await engine_with(TEST_LIMITS)  # a new server process
    await restarted.open_box(box)
    assert os.path.ismount(box.mount)
    result = await restarted.execute(box, ExecRequest("python", "print(open('kept.txt').read())"))
    assert result.stdout == "still here\n"


@pytest.mark.sandbox
async def test_execute_reopens_a_box_that_was_not_reopened(engine: BwrapEngine, box: Box, run: Run) -> None:
    await run(box, "echo x > f.txt", kind="bash")
    await engine.close_box(box)
    result = await run(box, "cat f.txt", kind="bash")
    assert result.stdout == "x\n"


@pytest.mark.sandbox
async def test_a_crashed_server_leaves_no_process_behind(engine: BwrapEngine, box: Box, run: Run) -> None:
    server = (
        "import asyncio\n"
        "from pathlib import Path\n"
        f"from {type(engine).__module__} import {type(engine).__name__} as Engine\n"
        "from execbox.sandbox.types import Box, ExecRequest, Limits\n"
        f"box = Box({box.id!r}, {box.uid}, Path({str(box.root)!r}))\n"
        f"engine = Engine(Limits(), Path({str(engine.state_dir)!r}), None)\n"
        "command = 'setsid sleep 1000 & (sleep 1000 &); sleep 1000'\n"
        "async def main():\n"
        "    await engine.start()\n"
        "    await engine.execute(box, ExecRequest('bash', command))\n"
        "asyncio.run(main())\n"
    )
    crashed = subprocess.Popen([sys.executable, "-c", server])
    cgroup = Cgroup.for_box(box.id)
    deadline = time.monotonic() + 30
    while len(cgroup.pids()) < 4 and time.monotonic() < deadline:  # bwrap, bash and the sleeps
        time.sleep(0.05)
    assert len(cgroup.pids()) >= 4
    crashed.kill()  # SIGKILL: no clean-up code runs
    crashed.wait()
    while cgroup.pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cgroup.pids() == [] and host_pids_of(box.uid) == []  # bwrap dies with its parent
    assert (await run(box, "print('usable')")).stdout == "usable\n"


@pytest.mark.sandbox
async def test_lifecycle_calls_are_idempotent(engine: BwrapEngine, box: Box, run: Run) -> None:
    await engine.create_box(box)
    await engine.open_box(box)
    await engine.open_box(box)
    await engine.close_box(box)
    await engine.close_box(box)
    await engine.open_box(box)
    assert (await run(box, "print(1)")).stdout == "1\n"


@pytest.mark.sandbox
async def test_destroy_frees_everything(engine: BwrapEngine, make_box: MakeBox, run: Run) -> None:
    box = await make_box()
    await run(box, "(sleep 1000 &); echo data > f.txt", kind="bash")
    image = box.image
    assert _loop_devices_of(image)
    await engine.destroy_box(box)
    assert not box.root.exists()
    assert not os.path.ismount(box.mount)
    assert _loop_devices_of(image) == ""
    assert not any(d.exists() for d in Cgroup.for_box(box.id).dirs)
    await engine.destroy_box(box)  # again: nothing left to do, no error


@pytest.mark.sandbox
async def test_a_host_out_of_disk_space_is_reported_as_overloaded(engine: BwrapEngine, base_dir: Path) -> None:
    full = base_dir / f"full-{uuid.uuid4().hex[:8]}"  # a host filesystem with no space left
    full.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0711", "tmpfs", str(full)], check=True)
    box = Box(f"box_{uuid.uuid4().hex[:12]}", 399_999, full / "box")
    try:
        fd = os.open(full / "filler", os.O_WRONLY | os.O_CREAT)
        os.posix_fallocate(fd, 0, 64 * 1024)
        os.close(fd)
        with pytest.raises(HostExhausted, match="not a problem with your request"):
            await engine.create_box(box)
    finally:
        await engine.destroy_box(box)
        subprocess.run(["umount", str(full)], check=True)
        full.rmdir()


@pytest.mark.sandbox
async def test_boxes_have_separate_disks(engine: BwrapEngine, make_box: MakeBox, run: Run) -> None:
    first, second = await make_box(), await make_box()
    await run(first, "open('only-here.txt', 'w').write('1')")
    assert engine.list_files(first) == [("only-here.txt", 1)]
    assert engine.list_files(second) == []


async def test_refuses_to_run_without_the_runtime(tmp_path: Path) -> None:
    engine = BwrapEngine(TEST_LIMITS, tmp_path / "state", tmp_path / "no-runtime", insecure=True)
    box = Box(f"box_{uuid.uuid4().hex[:8]}", 123_456, tmp_path / "box")
    with pytest.raises(Unavailable, match="runtime environment .* is not built"):
        await engine.create_box(box)
    assert not box.root.exists()


@pytest.mark.sandbox
async def test_insecure_mode_degrades_to_a_plain_directory_without_cgroups(engine: BwrapEngine,
                                                                           make_box: MakeBox) -> None:
    degraded = BwrapEngine(TEST_LIMITS, engine.state_dir, None, insecure=True)
    degraded.use_cgroups = degraded.use_loop = False  # as on a host without them
    box = await make_box(degraded)
    assert not os.path.ismount(box.mount)
    assert not any(d.exists() for d in Cgroup.for_box(box.id).dirs)
    result = await degraded.execute(box, ExecRequest("bash", "id -u; ls /proc | grep -c '^[0-9]'"))
    assert result.stdout.split()[0] == "1000"  # still namespaced, seccomp'd and unprivileged
    assert int(result.stdout.split()[1]) < 10


@pytest.mark.sandbox
async def test_refuses_a_system_uid(engine: BwrapEngine, tmp_path: Path) -> None:
    box = Box(f"box_{uuid.uuid4().hex[:8]}", 0, tmp_path / "box")
    with pytest.raises(Unavailable, match="uid 0"):
        await engine.execute(box, ExecRequest("bash", "id"))


@pytest.mark.sandbox
async def test_new_boxes_take_ready_made_disks(
    engine: BwrapEngine, base_dir: Path, make_box: MakeBox, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    pooled = type(engine)(TEST_LIMITS, engine.state_dir, None, boxes_dir=base_dir / "boxes", disk_pool=2)
    await pooled.start()
    try:
        assert pooled.pool is not None
        deadline = time.monotonic() + 30
        while len(pooled.pool._ready) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert len(pooled.pool._ready) == 2

        async def no_mkfs(*args: object, **kwargs: object) -> None:
            raise AssertionError("a ready disk was there: no disk may be made on the request path")

        monkeypatch.setattr(disk, "create", no_mkfs)
        box = await make_box(pooled)
        monkeypatch.undo()
        pooled.pool.refill()  # the refill that started meanwhile failed on the patch (it retries on a take)
        assert os.path.ismount(box.mount)
        assert all(os.stat(d).st_uid == box.uid for d in (box.workspace, box.tmp, box.outputs))
        result = await pooled.execute(box, ExecRequest("bash", "id -u; touch mine; ls -A /workspace; ls /tmp/.matplotlib"))
        assert result.stdout.split()[:2] == ["1000", "mine"] and result.stdout.split()[2].startswith("fontlist")
        assert os.stat(box.workspace / "mine").st_uid == box.uid
        while len(pooled.pool._ready) < 2 and time.monotonic() < deadline:  # refilled in the background
            await asyncio.sleep(0.05)
        assert len(pooled.pool._ready) == 2
    finally:
        await pooled.stop()
    assert list((base_dir / "boxes" / ".pool").iterdir()) == []  # spare disks do not outlive the engine
