"""Sandbox benchmark: latency and throughput of executions through the containers API.

Starts its own execbox server (real sandboxes, temporary data dir) and prints a Markdown table:

    ./run.sh bench                 # or: .venv/bin/python bench/bench_sandbox.py --runs 30

Measured over HTTP on loopback, so the figures include the API layer, as a client sees them.
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
from pathlib import Path

import httpx

PRINT_1 = "print(1)"
PANDAS = "import pandas as pd; print(pd.DataFrame({'a':[1,2]}).sum())"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    execbox = Path(sys.executable).with_name("execbox")
    log = open(data_dir / "server.log", "wb")
    proc = subprocess.Popen(
        [str(execbox), "serve", "--port", str(port), "--data-dir", str(data_dir / "data"), "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
        if proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit(f"server did not start; log:\n{(data_dir / 'server.log').read_text()[-3000:]}")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def exec_ok(client: httpx.AsyncClient, cid: str, code: str) -> None:
    r = await client.post(f"/v1/containers/{cid}/exec", json={"code": code})
    r.raise_for_status()
    body = r.json()
    if body["return_code"] != 0:
        raise RuntimeError(f"exec failed: {body}")


async def new_container(client: httpx.AsyncClient) -> str:
    r = await client.post("/v1/containers")
    r.raise_for_status()
    return r.json()["id"]


async def latency(client: httpx.AsyncClient, runs: int, label: str, code: str, fresh: bool) -> tuple[str, list[float]]:
    samples: list[float] = []
    cid = None if fresh else await new_container(client)
    if cid:
        await exec_ok(client, cid, code)  # warm the page cache for this path
    for _ in range(runs):
        started = time.perf_counter()
        target = cid or await new_container(client)
        await exec_ok(client, target, code)
        samples.append((time.perf_counter() - started) * 1000)
        if fresh:
            await client.delete(f"/v1/containers/{target}")
        await asyncio.sleep(0.05)
    return label, samples


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
    return samples


async def throughput(client: httpx.AsyncClient, containers: list[str], concurrency: int, seconds: float) -> float:
    done = 0
    stop_at = time.perf_counter() + seconds

    async def worker(i: int) -> None:
        nonlocal done
        n = i
        while time.perf_counter() < stop_at:
            await exec_ok(client, containers[n % len(containers)], PRINT_1)
            done += 1
            n += concurrency

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return done / (time.perf_counter() - started)


async def run(url: str, runs: int, seconds: float) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        rows = [
            await latency(client, runs, "create container + first exec `print(1)`", PRINT_1, fresh=True),
            await latency(client, runs, "exec `print(1)` in an existing container", PRINT_1, fresh=False),
            await latency(client, max(5, runs // 3), "exec pandas snippet in an existing container", PANDAS, fresh=False),
        ]
        floors = {PRINT_1: statistics.median(bare_python(runs, PRINT_1)),
                  PANDAS: statistics.median(bare_python(max(5, runs // 3), PANDAS))}
        print("| operation | runs | median ms | p90 ms | vs bare python |\n|---|---|---|---|---|")
        for (label, samples), code in zip(rows, (PRINT_1, PRINT_1, PANDAS), strict=True):
            median = statistics.median(samples)
            print(f"| {label} | {len(samples)} | {median:.1f} | {pct(samples, 0.9):.1f} | {median / floors[code]:.2f}x |")
        for code, floor in floors.items():
            print(f"| reference: bare runtime python, `{code}`, no sandbox, no HTTP | | {floor:.1f} | | 1x |")
        containers = [await new_container(client) for _ in range(8)]
        print("\n| concurrency | sustained execs/s (`print(1)`, 8 containers) |\n|---|---|")
        for concurrency in (1, 2, 4, 8):
            rate = await throughput(client, containers, concurrency, seconds)
            print(f"| {concurrency} | {rate:.1f} |")
        for cid in containers:
            await client.delete(f"/v1/containers/{cid}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="samples per latency row")
    parser.add_argument("--seconds", type=float, default=8.0, help="duration of each throughput row")
    parser.add_argument("--url", help="benchmark a running server instead of starting one")
    args = parser.parse_args()
    print(f"# execbox sandbox benchmark ({os.cpu_count()} CPUs)\n", flush=True)
    if args.url:
        asyncio.run(run(args.url, args.runs, args.seconds))
        return
    with tempfile.TemporaryDirectory(prefix="execbox-bench-") as tmp:
        os.chmod(tmp, 0o711)  # sandboxes reach their disks as their own uid
        port = free_port()
        proc = start_server(Path(tmp), port)
        try:
            asyncio.run(run(f"http://127.0.0.1:{port}", args.runs, args.seconds))
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
