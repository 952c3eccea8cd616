"""Metadata database benchmark: store latency, and how much database access stalls the event loop.

Runs the containers manager and the file store over each database given (SQLite always)
with a sandbox engine that does nothing, so only the metadata work is measured:

    .venv/bin/python bench/bench_database.py
    .venv/bin/python bench/bench_database.py --url 'postgresql+psycopg://execbox:execbox@db-host/execbox'

``--url`` must name an empty database or schema the benchmark may create tables in (they
are left behind). "loop stall" is how late a 1 ms timer fires while several clients call
the manager concurrently: while a database call runs on the event loop, nothing else
(other requests, streamed responses) makes progress.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from execbox import db
from execbox.containers.manager import ContainerManager
from execbox.files.store import FileStore
from execbox.sandbox.types import Box, ExecRequest, ExecResult, Limits

CLIENTS = 4


class IdleEngine:
    """A sandbox engine whose every call returns at once."""

    limits = Limits()

    async def create_box(self, box: Box) -> None:
        pass

    async def open_box(self, box: Box) -> None:
        pass

    async def close_box(self, box: Box) -> None:
        pass

    async def destroy_box(self, box: Box) -> None:
        pass

    async def execute(self, box: Box, request: ExecRequest) -> ExecResult:
        return ExecResult("", "", 0, 0.0)


def median_ms(call: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


async def loop_stall(manager: ContainerManager, seconds: float) -> tuple[float, float, int]:
    """(p99, max) lateness of a 1 ms timer in ms, and requests served, during concurrent executions."""
    containers = [await manager.create("ws") for _ in range(CLIENTS)]
    request = ExecRequest("python", "pass")
    deadline = time.monotonic() + seconds
    served = 0

    async def client(container_id: str) -> None:
        nonlocal served
        while time.monotonic() < deadline:
            await manager.get("ws", container_id)
            await asyncio.sleep(0)  # a request boundary: the loop may run other work here
            await manager.execute("ws", container_id, request)
            await asyncio.sleep(0)
            served += 2

    lateness: list[float] = []

    async def timer() -> None:
        while time.monotonic() < deadline:
            started = time.monotonic()
            await asyncio.sleep(0.001)
            lateness.append((time.monotonic() - started - 0.001) * 1000)

    await asyncio.gather(timer(), *(client(c.id) for c in containers))
    lateness.sort()
    return lateness[int(len(lateness) * 0.99)], lateness[-1], served


async def measure(url: str, runs: int, seconds: float) -> dict[str, str]:
    root = Path(tempfile.mkdtemp(prefix="execbox-bench-db-"))
    database = db.connect(url)
    db.create_tables(database)
    files = FileStore(database, root / "files", max_size=1024**2)
    manager = ContainerManager(
        IdleEngine(), database, files, root / "boxes",  # type: ignore[arg-type]
        ttl_s=3600, expiry="idle", reaper_interval_s=3600,
    )
    await manager.start()
    try:
        container = await manager.create("ws")
        file_id = files.create("ws", "a.txt", io.BytesIO(b"x")).id
        row = {
            "container get": median_ms(lambda: manager.store.get(container.id), runs),
            "container touch": median_ms(
                lambda: manager.store.touch(container.id, db.utcnow(), db.utcnow(), 0.1), runs
            ),
            "file get": median_ms(lambda: files.get("ws", file_id), runs),
            "file list (20)": median_ms(lambda: files.list("ws"), runs),
            "file create": median_ms(lambda: files.create("ws", "b.txt", io.BytesIO(b"y")), runs),
        }
        p99, worst, served = await loop_stall(manager, seconds)
    finally:
        await manager.stop()
        database.dispose()
        shutil.rmtree(root)
    return {
        **{name: f"{ms:.2f} ms" for name, ms in row.items()},
        f"loop stall p99 ({CLIENTS} clients)": f"{p99:.1f} ms",
        f"loop stall max ({CLIENTS} clients)": f"{worst:.1f} ms",
        "manager calls/s": f"{served / seconds:.0f}",
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", action="append", default=[], help="another database URL to measure")
    parser.add_argument("--runs", type=int, default=100, help="samples per store operation")
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of the loop-stall run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        urls = {"sqlite": f"sqlite:///{tmp}/bench.db"}
        urls.update({sa.make_url(url).render_as_string(): url for url in args.url})  # password hidden
        columns = {name: await measure(url, args.runs, args.seconds) for name, url in urls.items()}
    print("| | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for metric in next(iter(columns.values())):
        print(f"| {metric} | " + " | ".join(column[metric] for column in columns.values()) + " |")


if __name__ == "__main__":
    asyncio.run(main())
