"""Fixtures for the sandbox engine: a real engine on a temporary state dir, real boxes.

``engine``   an engine with test-sized limits (shared by the module's tests), once per
             execution path: ``bwrap`` (the reference path) and ``fork`` (the fork server).
``engine_with(limits)``  another started engine of the same kind, other limits.
``box``      a fresh box with a unique uid, destroyed after the test.
``make_box`` factory for more boxes (a neighbour to attack; ``make_box(other_engine)``).
``run``      ``await run(box, "print(1)")`` / ``await run(box, "echo", kind="bash")``.

Tests that need root, bubblewrap, cgroups, loop devices and the runtime are marked
``sandbox`` and skipped with the reason when the host lacks one of them.
"""

from __future__ import annotations

import inspect
import itertools
import os
import random
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from execbox.sandbox import cgroups
from execbox.sandbox.bwrap import BwrapEngine
from execbox.sandbox.forkengine import ForkEngine
from execbox.sandbox.runtime import is_complete, resolve_runtime_dir
from execbox.sandbox.types import Box, ExecRequest, ExecResult, Limits
from tests.sandbox.sandbox_support import TEST_LIMITS, MakeBox, Run

# Unique host uids per box; a random base keeps parallel test runs apart.
_uids = itertools.count(random.randrange(400_000, 900_000, 1000))


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("bwrap", "setpriv", "mkfs.ext4"):
        if not shutil.which(tool):
            return f"needs {tool}"
    if cgroups.version() is None:
        return "needs cgroups with memory, cpu and pids controllers"
    if not is_complete(resolve_runtime_dir(None)):
        return "needs the runtime environment (execbox setup-runtime)"
    return None


MISSING = _missing()


ENGINES = {"bwrap": BwrapEngine, "fork": ForkEngine}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    skip = pytest.mark.skip(reason=f"sandbox tests: {MISSING}")
    for item in items:
        if here not in item.path.parents:
            continue
        # One event loop for the whole sandbox suite: a fork server started by a fixture
        # keeps serving the tests of its module.
        # (first, so it is the closest asyncio marker; auto mode added a plain one)
        if inspect.iscoroutinefunction(getattr(item, "obj", None)):
            item.own_markers.insert(0, pytest.mark.asyncio(loop_scope="session").mark)
        if MISSING and "sandbox" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def base_dir() -> Iterator[Path]:
    # Not under pytest's 0700 temp dir: bwrap reaches box files as the box uid.
    root = Path(tempfile.mkdtemp(prefix="execbox-sandbox-tests-"))
    root.chmod(0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


async def _started(kind: type[BwrapEngine], limits: Limits, state_dir: Path) -> BwrapEngine:
    engine = kind(limits, state_dir, None, insecure=False)
    if not MISSING:
        await engine.start()
        if isinstance(engine, ForkEngine):
            assert engine.fork is not None and engine.fork.ready, "the fork server did not start"
    return engine


@pytest_asyncio.fixture(scope="module", loop_scope="session", params=sorted(ENGINES))
async def engine(request: pytest.FixtureRequest, base_dir: Path) -> AsyncIterator[BwrapEngine]:
    started = await _started(ENGINES[request.param], TEST_LIMITS, base_dir / f"state-{uuid.uuid4().hex[:8]}")
    yield started
    await started.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def engine_with(engine: BwrapEngine) -> AsyncIterator[Callable[[Limits], Awaitable[BwrapEngine]]]:
    made: list[BwrapEngine] = []

    async def make(limits: Limits) -> BwrapEngine:
        made.append(await _started(type(engine), limits, engine.state_dir))
        return made[-1]

    yield make
    for other in made:
        await other.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def make_box(engine: BwrapEngine, base_dir: Path) -> AsyncIterator[MakeBox]:
    made: list[tuple[BwrapEngine, Box]] = []

    async def make(on: BwrapEngine | None = None) -> Box:
        box_id = f"box_{uuid.uuid4().hex[:12]}"
        box = Box(box_id, next(_uids), base_dir / "boxes" / box_id)
        await (on or engine).create_box(box)
        made.append((on or engine, box))
        return box

    yield make
    for owner, box in made:
        await owner.destroy_box(box)


@pytest_asyncio.fixture(loop_scope="session")
async def box(make_box: MakeBox) -> Box:
    return await make_box()


@pytest.fixture
def run(engine: BwrapEngine) -> Run:
    async def run(
        box: Box, source: str, kind: str = "python", timeout_s: float | None = None, session: bool = False
    ) -> ExecResult:
        return await engine.execute(box, ExecRequest(kind, source, timeout_s, session))  # type: ignore[arg-type]

    return run
