"""Exhaustion: memory, CPU, processes, disk, files, time and output are all bounded."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from execbox.sandbox.bwrap import BwrapEngine, read_capped
from execbox.sandbox.cgroups import Cgroup
from execbox.sandbox.errors import DiskFull
from execbox.sandbox.types import Box
from tests.sandbox.sandbox_support import FORK_BOMB, TEST_LIMITS, Run, drained, live_pids_of

pytestmark = pytest.mark.sandbox


async def _assert_nothing_left(box: Box) -> None:
    assert await drained(Cgroup.for_box(box.id)) == []
    assert await live_pids_of(box.uid) == []


async def test_memory_limit_kills_with_a_clear_message(box: Box, run: Run) -> None:
    chunks = 2 * TEST_LIMITS.memory_bytes // (32 * 1024**2)
    result = await run(box, f"chunks = [b'x' * (32 * 1024**2) for _ in range({chunks})]\nprint('survived')")
    assert result.oom_killed and not result.timed_out
    assert result.return_code == 128 + 9
    assert "survived" not in result.stdout
    assert "exceeding the container's memory limit (256MiB)" in result.stderr
    again = await run(box, "print('ok')")
    assert (again.stdout, again.oom_killed) == ("ok\n", False)


async def test_cpu_quota_holds_two_busy_processes_to_one_cpu(box: Box, run: Run) -> None:
    # Two processes spin for 1.5 s; their CPU time comes from the kernel (wait4 rusage).
    code = (
        "import os, time\n"
        "start = time.monotonic()\n"
        "pids = []\n"
        "for _ in range(2):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        end = time.monotonic() + 1.5\n"
        "        while time.monotonic() < end: pass\n"
        "        os._exit(0)\n"
        "    pids.append(pid)\n"
        "cpu = sum(r.ru_utime + r.ru_stime for _, _, r in (os.wait4(p, 0) for p in pids))\n"
        "print(cpu, time.monotonic() - start)\n"
    )
    result = await run(box, code)
    cpu, wall = map(float, result.stdout.split())
    # Unlimited, they would use about twice the wall time on two cores.
    assert cpu < 1.5 * TEST_LIMITS.cpus * wall
    assert Cgroup.for_box(box.id).cpu_seconds() >= cpu  # and the cgroup accounted for it


async def test_fork_bomb_is_contained(box: Box, run: Run) -> None:
    result = await run(box, FORK_BOMB)
    children, error = result.stdout.split()
    assert error == "EAGAIN"
    assert int(children) < TEST_LIMITS.pids
    assert not result.timed_out
    await _assert_nothing_left(box)
    bash = await run(box, ":(){ :|:& };:; echo done", kind="bash")
    assert "done" in bash.stdout and not bash.timed_out
    await _assert_nothing_left(box)


async def test_disk_full_surfaces_as_enospc(engine: BwrapEngine, box: Box, run: Run) -> None:
    code = (
        "import errno\n"
        "written = 0\n"
        "try:\n"
        "    with open('big.bin', 'wb') as f:\n"
        "        while True:\n            f.write(b'x' * 1024**2)\n            f.flush()\n            written += 1\n"
        "except OSError as e:\n    print(written, errno.errorcode[e.errno])\n"
    )
    result = await run(box, code)
    written, error = result.stdout.split()
    assert error == "ENOSPC"
    assert int(written) < TEST_LIMITS.disk_bytes // 1024**2
    assert os.stat(box.image).st_blocks * 512 <= TEST_LIMITS.disk_bytes  # the host's cost is capped too
    with pytest.raises(DiskFull, match="disk is full"):
        engine.write_file(box, "upload.bin", b"y" * 1024**2)
    # A full box stays usable, so its files can be deleted.
    freed = await run(box, "rm big.bin && echo again > small.txt && cat small.txt", kind="bash")
    assert freed.stdout == "again\n"


async def test_open_files_limit(box: Box, run: Run) -> None:
    code = (
        "import errno, os\nfds = []\n"
        "try:\n    while True:\n        fds.append(os.open('/dev/null', os.O_RDONLY))\n"
        "except OSError as e:\n    print(len(fds), errno.errorcode[e.errno])\n"
    )
    result = await run(box, code)
    count, error = result.stdout.split()
    assert error == "EMFILE"
    assert int(count) < TEST_LIMITS.nofile


async def test_open_files_are_bounded_per_container_not_only_per_process(engine: BwrapEngine, box: Box,
                                                                         run: Run) -> None:
    # The attack: many processes, each opening files up to its own limit, together holding
    # a large part of the host's open-file table.
    limits = engine.limits
    children = min(limits.pids - 8, 2 * limits.open_files // 100)
    assert children * min(limits.nofile, 125) > limits.open_files  # enough to pass it without the bound
    code = (
        "import os, sys\n"
        "counts, gate = os.pipe(), os.pipe()\n"
        "pids = []\n"
        f"for _ in range({children}):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        os.close(gate[1])\n"
        "        fds = []\n"
        "        try:\n"
        f"            while len(fds) < {limits.nofile}:\n"
        "                fds.append(os.open('/dev/null', os.O_RDONLY))\n"
        "        except OSError:\n"
        "            pass\n"
        "        os.write(counts[1], b'%d\\n' % (len(fds) + 7))  # its own: stdio, pipes, gate\n"
        "        os.read(gate[0], 1)  # hold them until every child has opened its own\n"
        "        os._exit(0)\n"
        "    pids.append(pid)\n"
        "os.close(counts[1])\n"
        "data = b''\n"
        "while data.count(b'\\n') < len(pids):\n"
        "    data += os.read(counts[0], 65536)\n"
        "print(sum(map(int, data.split())))\n"
        "os.close(gate[1])\n"
        "for pid in pids:\n"
        "    os.waitpid(pid, 0)\n"
    )
    result = await run(box, code, timeout_s=30)
    assert result.return_code == 0, result.stderr
    assert 0 < int(result.stdout) <= limits.open_files


async def test_timeout_kills_sleepers_and_daemons(box: Box, run: Run) -> None:
    script = (
        "setsid bash -c 'trap \"\" TERM HUP; (trap \"\" TERM HUP; exec sleep 1000) & exec sleep 1000' &\n"
        "(trap '' TERM; sleep 1000 &)\n"
        "echo started\n"
        "sleep 1000\n"
    )
    result = await run(box, script, kind="bash", timeout_s=1)
    assert result.timed_out and result.return_code != 0
    assert result.stdout == "started\n"
    assert "timed out after 1 seconds" in result.stderr
    await _assert_nothing_left(box)


async def test_no_process_outlives_a_normal_execution(box: Box, run: Run) -> None:
    result = await run(box, "(sleep 1000 &); setsid sh -c 'trap \"\" TERM; sleep 1000' & echo bye", kind="bash")
    assert (result.stdout, result.return_code, result.timed_out) == ("bye\n", 0, False)
    await _assert_nothing_left(box)


async def test_output_flood_is_truncated_with_a_marker(box: Box, run: Run) -> None:
    cap = TEST_LIMITS.output_bytes
    result = await run(box, "import sys\nsys.stdout.write('x' * 50_000_000)\nsys.stderr.write('e' * 50_000_000)")
    assert result.return_code == 0 and not result.timed_out
    assert result.stdout_truncated and result.stderr_truncated
    assert result.stdout == "x" * cap + f"\n[execbox: output truncated after {cap} bytes]"
    assert result.stderr.startswith("e" * cap + "\n[execbox: output truncated")


async def test_output_within_the_cap_is_untouched(box: Box, run: Run) -> None:
    result = await run(box, f"print('y' * {TEST_LIMITS.output_bytes - 1})")
    assert not result.stdout_truncated
    assert result.stdout == "y" * (TEST_LIMITS.output_bytes - 1) + "\n"



async def test_a_trickle_of_tiny_writes_is_read_in_batches() -> None:
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    writes = 200_000
    writer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", f"import os\nfor _ in range({writes}): os.write(1, b'x')", stdout=write_end
    )
    os.close(write_end)
    _, output = await read_capped(os.fdopen(read_end, "rb", buffering=0), 1000)
    kept, truncated = await output.done
    assert await writer.wait() == 0
    assert (kept, truncated) == (b"x" * 1000, True)
    assert output.reads < 500  # not one read per write: the server's work stays small
