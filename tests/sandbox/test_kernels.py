"""Live Python kernels (fork-server path): REPL state, its lifecycle, and attacks on it.

Session cells (``session=True``) of one box run in one long-lived interpreter; these
tests make that state persist, lose it (timeout, OOM, crash), save and restore it (idle
stop, server restart) and try to break out of it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from execbox.sandbox.cgroups import Cgroup
from execbox.sandbox.forkengine import SESSION_RESTARTED, SESSION_UNAVAILABLE, ForkEngine
from execbox.sandbox.types import Box, ExecRequest
from tests.sandbox.conftest import MISSING
from tests.sandbox.sandbox_support import FORK_BOMB, TEST_LIMITS, MakeBox, Run, drained, live_pids_of

pytestmark = pytest.mark.sandbox


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def engine(base_dir: Path) -> AsyncIterator[ForkEngine]:
    """Only the fork server has kernels (overrides the two-path fixture of conftest)."""
    started = ForkEngine(TEST_LIMITS, base_dir / f"state-{uuid.uuid4().hex[:8]}", None)
    if not MISSING:
        await started.start()
    yield started
    await started.stop()


async def cell(run: Run, box: Box, code: str, timeout_s: float | None = None):  # noqa: ANN201
    return await run(box, code, timeout_s=timeout_s, session=True)


async def test_variables_imports_and_functions_persist(box: Box, run: Run) -> None:
    first = await cell(run, box, "import math\nx = 41\ndef bump(v):\n    return v + 1\n")
    assert (first.return_code, first.stderr, first.path) == (0, "", "fork")
    second = await cell(run, box, "print(bump(x), math.pi > 3)")
    assert (second.stdout, second.return_code) == ("42 True\n", 0)


async def test_one_shot_executions_stay_stateless_beside_a_session(box: Box, run: Run) -> None:
    await cell(run, box, "x = 1")
    one_shot = await run(box, "print(x)")
    assert one_shot.return_code == 1 and "NameError: name 'x' is not defined" in one_shot.stderr
    assert (await cell(run, box, "print(x)")).stdout == "1\n"  # the session did not notice


async def test_an_exception_ends_only_its_cell(box: Box, run: Run) -> None:
    failed = await cell(run, box, "y = 2\nraise ValueError('boom')")
    assert failed.return_code == 1
    assert failed.stderr.startswith("Traceback (most recent call last):") and "ValueError: boom" in failed.stderr
    assert 'File "/run/execbox/cell' in failed.stderr and "zygote" not in failed.stderr  # no frames of ours
    assert (await cell(run, box, "print(y)")).stdout == "2\n"
    exited = await cell(run, box, "raise SystemExit(3)")
    assert exited.return_code == 3
    assert (await cell(run, box, "print(y)")).stdout == "2\n"


async def test_top_level_await_works(box: Box, run: Run) -> None:
    result = await cell(run, box, "import asyncio\nawait asyncio.sleep(0)\nprint('awaited')")
    assert result.stdout == "awaited\n"


async def test_a_timeout_restarts_the_session_and_says_so(box: Box, run: Run) -> None:
    await cell(run, box, "z = 5")
    slow = await cell(run, box, "import time\nprint('started', flush=True)\ntime.sleep(60)", timeout_s=1)
    assert slow.timed_out and slow.stdout == "started\n"
    after = await cell(run, box, "print(z)")
    assert after.stderr.startswith(SESSION_RESTARTED + "\n")
    assert "NameError: name 'z' is not defined" in after.stderr
    assert not (await cell(run, box, "z = 1")).stderr  # said once, not on every later cell


async def test_a_crashed_kernel_is_reported_by_the_next_cell(box: Box, run: Run) -> None:
    await cell(run, box, "w = 1")
    crashed = await cell(run, box, "import os\nos._exit(7)")
    assert crashed.return_code == 7
    after = await cell(run, box, "print('fresh')")
    assert after.stdout == "fresh\n" and after.stderr.startswith(SESSION_RESTARTED)


async def test_a_memory_bomb_in_a_kernel_is_contained(engine: ForkEngine, box: Box, run: Run) -> None:
    await cell(run, box, "kept = 'no'")
    chunks = 2 * TEST_LIMITS.memory_bytes // (32 * 1024**2)
    bomb = await cell(run, box, f"chunks = [b'x' * (32 * 1024**2) for _ in range({chunks})]")
    assert bomb.oom_killed and "exceeding the container's memory limit" in bomb.stderr
    after = await cell(run, box, "print('fresh')")
    assert after.stdout == "fresh\n" and after.stderr.startswith(SESSION_RESTARTED)


async def test_a_fork_bomb_in_a_kernel_is_contained(engine: ForkEngine, box: Box, run: Run) -> None:
    bomb = await cell(run, box, FORK_BOMB)
    children, error = bomb.stdout.split()
    assert error == "EAGAIN" and int(children) < TEST_LIMITS.pids
    # The cell's processes ended with it; only the kernel itself is left in the box.
    kernel = engine.kernel_pid(box.id)
    assert kernel is not None and await drained(Cgroup.for_box(box.id), leaving=(kernel,)) == [kernel]
    assert await live_pids_of(box.uid, leaving=(kernel,)) == [kernel]
    assert (await cell(run, box, "print(children > 0)")).stdout == "True\n"


async def test_processes_started_by_a_cell_end_with_it(engine: ForkEngine, box: Box, run: Run) -> None:
    await cell(run, box, "import subprocess\np = subprocess.Popen(['sleep', '1000'])")
    kernel = engine.kernel_pid(box.id)
    assert kernel is not None and await live_pids_of(box.uid, leaving=(kernel,)) == [kernel]
    listing = await cell(run, box, "import os\nprint(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))")
    assert listing.stdout == "[1]\n"


async def test_a_kernel_survives_cells_that_break_their_output(box: Box, run: Run) -> None:
    await cell(run, box, "import os, sys\nkept = 1\nsys.stdout = open(os.devnull, 'w')\nos.close(1)")
    assert (await cell(run, box, "print('still talking', kept)")).stdout == "still talking 1\n"
    await cell(run, box, "import sys\nsys.stderr.close()\nsys.__stdout__ = None")
    result = await cell(run, box, "import sys\nprint('err', file=sys.stderr)\nprint('out')")
    assert (result.stdout, result.stderr) == ("out\n", "err\n")


async def test_same_names_in_two_containers_never_meet(make_box: MakeBox, run: Run) -> None:
    first, second = await make_box(), await make_box()
    await cell(run, first, "secret = 'first'")
    await cell(run, second, "secret = 'second'")
    assert (await cell(run, first, "print(secret)")).stdout == "first\n"
    assert (await cell(run, second, "print(secret)")).stdout == "second\n"


async def test_a_kernel_cannot_see_or_signal_another(engine: ForkEngine, make_box: MakeBox, run: Run) -> None:
    attacker, victim = await make_box(), await make_box()
    await cell(run, victim, "alive = True")
    victim_pid = engine.kernel_pid(victim.id)
    assert victim_pid is not None
    code = (
        "import os, signal\n"
        "print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n"
        f"for pid in ({victim_pid}, -1):\n"
        "    try:\n        os.kill(pid, signal.SIGKILL)\n        print('sent')\n"
        "    except OSError as e:\n        print(type(e).__name__)\n"
    )
    attack = await cell(run, attacker, code)
    assert attack.stdout.splitlines()[0] == "[1]"
    assert "sent" not in attack.stdout.splitlines()[1]  # the victim's host pid does not exist here
    assert engine.kernel_pid(victim.id) == victim_pid
    after = await cell(run, victim, "print(alive)")
    assert (after.stdout, after.stderr) == ("True\n", "")


async def test_a_kernel_cannot_reach_the_fork_server(engine: ForkEngine, box: Box, run: Run) -> None:
    assert engine.fork is not None and engine.fork._zygote is not None
    zygote = engine.fork._zygote.process.pid
    code = (
        "import os, socket\n"
        f"print(os.path.exists('/proc/{zygote}'), os.getppid())\n"
        "fds = sorted(int(fd) for fd in os.listdir('/proc/self/fd'))\n"
        "kinds = [os.readlink(f'/proc/self/fd/{fd}').split(':')[0] for fd in fds if fd > 2 and os.path.exists(f'/proc/self/fd/{fd}')]\n"
        "print(kinds.count('socket'))\n"
    )
    result = await cell(run, box, code)
    # No zygote in sight, no parent (pid 1 of its namespace), and one socket: its own control channel.
    assert result.stdout.split() == ["False", "0", "1"]


async def test_a_crafted_checkpoint_only_affects_its_own_container(
    engine: ForkEngine, make_box: MakeBox, run: Run
) -> None:
    attacker, neighbour = await make_box(), await make_box()
    await cell(run, neighbour, "mine = 'intact'")
    target = neighbour.workspace / "pwned"
    crafted = (
        "import os, pickle\n"
        "class Evil:\n"
        "    def __reduce__(self):\n"
        "        cmd = 'id -u > /workspace/ran-as; touch /workspace/pwned ' + "
        f"{str(target)!r} + ' ' + {str(engine.state_dir / 'pwned')!r}\n"
        "        return (os.system, (cmd,))\n"
        "os.makedirs('/tmp/.execbox', exist_ok=True)\n"
        "pickle.dump(Evil(), open('/tmp/.execbox/session.pkl', 'wb'))\n"
    )
    assert (await run(attacker, crafted)).return_code == 0
    restored = await cell(run, attacker, "print('after restore')")
    assert restored.stdout == "after restore\n"
    assert "checkpoint unreadable" in restored.stderr  # it ran, inside the sandbox, and was not a state dict
    assert (attacker.workspace / "pwned").exists() and (attacker.workspace / "ran-as").read_text() == "1000\n"
    assert not target.exists() and not (engine.state_dir / "pwned").exists()
    assert (await cell(run, neighbour, "print(mine)")).stdout == "intact\n"


async def test_idle_kernels_are_checkpointed_stopped_and_restored(base_dir: Path, make_box: MakeBox) -> None:
    idle = ForkEngine(TEST_LIMITS, base_dir / f"state-{uuid.uuid4().hex[:8]}", None, kernel_idle_s=1.0)
    await idle.start()
    try:
        box = await make_box(idle)
        setup = (
            "import numpy as np\n"
            "data = [1, 2, 3]\n"
            "def double(v):\n    return 2 * v\n"
            "numbers = (i for i in range(3))\n"  # a generator cannot be pickled
        )
        assert (await idle.execute(box, ExecRequest("python", setup, session=True))).return_code == 0
        deadline = time.monotonic() + 20
        while idle.kernel_pid(box.id) is not None and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert idle.kernel_pid(box.id) is None
        assert await drained(Cgroup.for_box(box.id)) == [] and await live_pids_of(box.uid) == []  # no process left
        after = await idle.execute(box, ExecRequest("python", "print(double(sum(data)), np.arange(3).sum())",
                                                    session=True))
        assert after.stdout == "12 3\n"
        assert after.stderr.startswith("[execbox] Python session restored; these names could not be restored: numbers")
    finally:
        await idle.stop()


async def test_a_server_restart_keeps_picklable_state(engine: ForkEngine, engine_with, box: Box, run: Run) -> None:  # noqa: ANN001
    await cell(run, box, "total = sum(range(10))")
    await engine.close_box(box)  # what a stopping server does: checkpoint, stop, unmount
    restarted = await engine_with(TEST_LIMITS)
    await restarted.open_box(box)
    result = await restarted.execute(box, ExecRequest("python", "print(total)", session=True))
    assert (result.stdout, result.stderr) == ("45\n", "")


async def test_executions_fall_back_to_the_reference_path_while_the_fork_server_is_down(
    engine: ForkEngine, box: Box, run: Run
) -> None:
    assert engine.fork is not None and engine.fork._zygote is not None
    await cell(run, box, "before = 1")
    engine.fork._zygote.process.kill()
    await engine.fork._zygote.dead
    one_shot = await run(box, "print('still served')")
    assert (one_shot.stdout, one_shot.path) == ("still served\n", "bwrap")
    session = await cell(run, box, "print('no session')")
    assert session.path == "bwrap" and session.stderr.startswith(SESSION_UNAVAILABLE)
    deadline = time.monotonic() + 60  # a fresh fork server starts in the background
    while not engine.fork.ready and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert (await run(box, "print('fast again')")).path == "fork"
    revived = await cell(run, box, "print('session')")
    assert revived.path == "fork" and revived.stderr.startswith(SESSION_RESTARTED)


async def test_sandboxes_never_copy_the_hosts_container_mounts(base_dir: Path, make_box: MakeBox) -> None:
    """The fork server's mount namespace (the one every sandbox starts from) has no
    container disk, however many the host mounts: so a sandbox's cost does not grow with them."""
    boxes = base_dir / "boxes"
    early = await make_box()  # mounted on the host before the fork server starts
    hiding = ForkEngine(TEST_LIMITS, base_dir / f"state-{uuid.uuid4().hex[:8]}", None, boxes_dir=boxes)
    await hiding.start()
    try:
        late = await make_box(hiding)
        assert hiding.fork is not None and hiding.fork._zygote is not None
        zygote_mounts = Path(f"/proc/{hiding.fork._zygote.process.pid}/mountinfo").read_text()
        host_mounts = Path("/proc/self/mountinfo").read_text()
        for box in (early, late):
            assert str(box.mount) in host_mounts and str(box.mount) not in zygote_mounts
        result = await hiding.execute(late, ExecRequest("bash", "echo ok > f; cat f"))
        assert (result.stdout, result.path) == ("ok\n", "fork")
    finally:
        await hiding.stop()


async def test_code_cannot_forge_calls_of_tools_it_was_not_given(engine: ForkEngine, box: Box) -> None:
    # The code shares its process with the control channel: it can write to it directly.
    forge = (
        "import json, os, socket\n"
        "ctl = socket.socket(fileno=os.dup(3))\n"
        "ctl.send(json.dumps({'op': 'tool_call', 'call': 99, 'name': 'delete_everything', 'input': {}}).encode())\n"
        "ctl.send(json.dumps({'op': 'waiting'}).encode())\n"
        "print(await allowed({'x': 1}))\n"
    )
    paused = await engine.execute(box, ExecRequest("python", forge, session=True, tools=("allowed",)))
    assert [(call.name, call.input) for call in paused.tool_calls] == [("allowed", {"x": 1})]
    done = await engine.resume(box, {paused.tool_calls[0].call: "fine"})
    assert (done.stdout, done.return_code) == ("fine\n", 0)
