"""Sandbox benchmark: executions through the containers API, fork server vs reference path.

Starts two execbox servers on temporary data dirs (real sandboxes): one with the fork
server (the default) and one on the reference path (``EXECBOX_FORK_SERVER=false``: a
fresh bubblewrap sandbox and interpreter per execution), and measures both in the same
run, beside the bare runtime interpreter. Prints Markdown tables:

    ./run.sh bench                 # or: .venv/bin/python bench/bench_sandbox.py --runs 40

Everything goes over HTTP on loopback, so the figures include the API layer, as a client
sees them. Latency rows run one request at a time with a 50 ms pause between requests.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

PRINT_1 = "print(1)"
PANDAS = "import pandas as pd; print(pd.DataFrame({'a':[1,2]}).sum())"
CELL = "x += 1"
CGROUP_MEMORY = Path("/sys/fs/cgroup/memory/execbox")  # cgroup v1; v2: /sys/fs/cgroup/execbox
SERVER_FLAGS = ("--disk-limit", "64MiB", "--max-containers", "5000", "--log-level", "warning",
                "--reaper-interval", "3600", "--kernel-idle-timeout", "4")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data_dir: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    execbox = Path(sys.executable).with_name("execbox")
    port = free_port()
    data_dir.mkdir()
    log = open(data_dir / "server.log", "wb")
    proc = subprocess.Popen(
        [str(execbox), "serve", "--port", str(port), "--data-dir", str(data_dir / "data"), *SERVER_FLAGS],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env},
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc, f"http://127.0.0.1:{port}"
        except httpx.HTTPError:
            time.sleep(0.2)
        if proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit(f"server did not start; log:\n{(data_dir / 'server.log').read_text()[-3000:]}")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def execute(client: httpx.AsyncClient, cid: str, code: str, session: bool = False) -> dict:
    r = await client.post(f"/v1/containers/{cid}/exec", json={"code": code, "session": session})
    r.raise_for_status()
    body = r.json()
    if body["return_code"] != 0:
        raise RuntimeError(f"exec failed: {body}")
    return body


async def new_container(client: httpx.AsyncClient) -> str:
    r = await client.post("/v1/containers")
    r.raise_for_status()
    return r.json()["id"]


async def samples_of(runs: int, once: Callable[[], Awaitable[object]]) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        await once()
        samples.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.05)
    return samples


async def exec_latency(client: httpx.AsyncClient, runs: int, code: str, session: bool = False) -> list[float]:
    cid = await new_container(client)
    await execute(client, cid, "x = 0" if session else code, session)  # warm: page cache, kernel imports
    if session:
        await execute(client, cid, "import pandas as pd, numpy as np, matplotlib.pyplot as plt", session)
    return await samples_of(runs, lambda: execute(client, cid, code, session))


async def create_latency(client: httpx.AsyncClient, runs: int) -> list[float]:
    async def once() -> None:
        cid = await new_container(client)
        await execute(client, cid, PRINT_1)
        created.append(cid)

    created: list[str] = []
    samples = await samples_of(runs, once)
    for cid in created:
        await client.delete(f"/v1/containers/{cid}")
    return samples


def bare_python(runs: int, code: str) -> list[float]:
    """The same code in the runtime's interpreter with no sandbox and no HTTP: the floor."""
    from execbox.sandbox.runtime import resolve_runtime_dir, runtime_python

    python = str(runtime_python(resolve_runtime_dir(None)))
    subprocess.run([python, "-c", code], check=True, capture_output=True)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([python, "-c", code], check=True, capture_output=True)
        samples.append((time.perf_counter() - started) * 1000)
        time.sleep(0.05)
    return samples


async def throughput(client: httpx.AsyncClient, containers: list[str], code: str, concurrency: int,
                     seconds: float) -> float:
    done = 0
    stop_at = time.perf_counter() + seconds

    async def worker(i: int) -> None:
        nonlocal done
        n = i
        while time.perf_counter() < stop_at:
            await execute(client, containers[n % len(containers)], code)
            done += 1
            n += concurrency

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return done / (time.perf_counter() - started)


async def burst(client: httpx.AsyncClient, count: int) -> tuple[int, list[float], list[str]]:
    async def one() -> tuple[float | None, str | None]:
        started = time.perf_counter()
        try:
            cid = await new_container(client)
            await execute(client, cid, PRINT_1)
            return (time.perf_counter() - started) * 1000, cid
        except (httpx.HTTPError, RuntimeError):
            return None, None

    results = await asyncio.gather(*(one() for _ in range(count)))
    times = [t for t, _ in results if t is not None]
    return count - len(times), times, [cid for _, cid in results if cid]


def kernel_memory() -> list[tuple[float, float]]:
    """(USS, RSS) MiB of every live kernel on the host (cgroup v1 layout)."""
    found = []
    for procs in CGROUP_MEMORY.glob("*/kernel/cgroup.procs"):
        for pid in procs.read_text().split():
            fields = {}
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
                key, value = line.split(":", 1)
                fields[key] = int(value.split()[0])
            uss = (fields["Private_Clean"] + fields["Private_Dirty"]) / 1024
            found.append((uss, fields["Rss"] / 1024))
    return found


def row(label: str, samples: list[float], floor: float | None = None) -> str:
    median = statistics.median(samples)
    ratio = f"{median / floor:.2f}x" if floor else ""
    return f"| {label} | {len(samples)} | {median:.1f} | {pct(samples, 0.9):.1f} | {ratio} |"


async def run(fork_url: str, ref_url: str, runs: int, seconds: float, idle: int, burst_size: int) -> None:
    fork = httpx.AsyncClient(base_url=fork_url, timeout=300, limits=httpx.Limits(max_connections=200))
    ref = httpx.AsyncClient(base_url=ref_url, timeout=300)
    few = max(5, runs // 4)
    bare = {PRINT_1: bare_python(runs, PRINT_1), PANDAS: bare_python(few, PANDAS)}
    floor = {code: statistics.median(samples) for code, samples in bare.items()}
    lines = [
        row("exec `print(1)`, existing container, **fork server**", await exec_latency(fork, runs, PRINT_1),
            floor[PRINT_1]),
        row("exec `print(1)`, existing container, reference path", await exec_latency(ref, runs, PRINT_1),
            floor[PRINT_1]),
        row("bare runtime `python -c 'print(1)'` (no sandbox, no HTTP)", bare[PRINT_1], floor[PRINT_1]),
        row("pandas snippet, stateless, **fork server**", await exec_latency(fork, runs, PANDAS), floor[PANDAS]),
        row("pandas snippet, stateless, reference path", await exec_latency(ref, few, PANDAS), floor[PANDAS]),
        row("bare runtime python, the pandas snippet", bare[PANDAS], floor[PANDAS]),
        row("cell `x += 1` in a live kernel (after pandas/numpy/pyplot imports)",
            await exec_latency(fork, runs, CELL, session=True), floor[PRINT_1]),
        row("new container + first exec `print(1)`, **fork server**", await create_latency(fork, runs),
            floor[PRINT_1]),
        row("new container + first exec `print(1)`, reference path", await create_latency(ref, few), floor[PRINT_1]),
    ]
    print("| operation | runs | median ms | p90 ms | vs bare `print(1)` / pandas |\n|---|---|---|---|---|")
    print("\n".join(lines), flush=True)

    print("\n| sustained execs/s across 8 containers | concurrency 1 | 2 | 4 | 8 |\n|---|---|---|---|---|")
    for label, client, code in (("`print(1)`, fork server", fork, PRINT_1), ("`print(1)`, reference path", ref, PRINT_1),
                                ("pandas snippet, fork server", fork, PANDAS)):
        containers = [await new_container(client) for _ in range(8)]
        rates = [await throughput(client, containers, code, c, seconds) for c in (1, 2, 4, 8)]
        print(f"| {label} | " + " | ".join(f"{r:.1f}" for r in rates) + " |", flush=True)
        for cid in containers:
            await client.delete(f"/v1/containers/{cid}")

    failures, times, made = await burst(fork, burst_size)
    print(f"\nburst: {burst_size} concurrent new-container executions (fork server): {failures} failed, "
          f"p50 {statistics.median(times):.0f} ms, p90 {pct(times, 0.9):.0f} ms, max {max(times):.0f} ms")
    for cid in made:
        await fork.delete(f"/v1/containers/{cid}")

    kernel_box = await new_container(fork)
    await execute(fork, kernel_box, "import pandas as pd, numpy as np\ndf = pd.DataFrame({'a': range(1000)})", True)
    memory = kernel_memory()
    if memory:
        uss, rss = memory[0]
        print(f"live kernel after `import pandas` and a 1,000-row DataFrame: USS {uss:.1f} MiB (RSS {rss:.1f} MiB, "
              "most of it shared copy-on-write with the fork server)")
    await asyncio.sleep(8)  # past --kernel-idle-timeout (4 s) and a sweep
    left = [p for p in CGROUP_MEMORY.glob(f"{kernel_box}/**/cgroup.procs") if p.read_text().strip()]
    print(f"after the kernel's idle timeout: {'no process' if not left else 'processes left!'} in the container")

    before = await exec_latency(fork, runs, PRINT_1)
    sem = asyncio.Semaphore(8)

    async def make() -> str:
        async with sem:
            return await new_container(fork)

    started = time.perf_counter()
    idle_ids = await asyncio.gather(*(make() for _ in range(idle)))
    made_s = time.perf_counter() - started
    after = await exec_latency(fork, runs, PRINT_1)
    print(f"\n{idle} idle containers (created in {made_s:.1f} s): `print(1)` p50 {statistics.median(before):.1f} ms "
          f"before, {statistics.median(after):.1f} ms after "
          f"({(statistics.median(after) / statistics.median(before) - 1) * 100:+.0f}%)", flush=True)
    for cid in idle_ids:
        await fork.delete(f"/v1/containers/{cid}")
    await fork.aclose()
    await ref.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40, help="samples per latency row")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each throughput point")
    parser.add_argument("--idle", type=int, default=1000, help="idle containers for the scaling row")
    parser.add_argument("--burst", type=int, default=100, help="concurrent new-container executions")
    args = parser.parse_args()
    print(f"# execbox sandbox benchmark ({os.cpu_count()} CPUs)\n", flush=True)
    with tempfile.TemporaryDirectory(prefix="execbox-bench-") as tmp:
        os.chmod(tmp, 0o711)  # sandboxes reach their disks as their own uid
        fork, fork_url = start_server(Path(tmp, "fork"), {})
        ref, ref_url = start_server(Path(tmp, "reference"), {"EXECBOX_FORK_SERVER": "false"})
        try:
            asyncio.run(run(fork_url, ref_url, args.runs, args.seconds, args.idle, args.burst))
        finally:
            for proc in (fork, ref):
                proc.terminate()
                proc.wait(timeout=120)


if __name__ == "__main__":
    main()
