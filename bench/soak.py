"""Soak test: many concurrent clients mixing every kind of work against one server, for a while.

Each client loops over a mix of: a Messages request that runs code in a new container, one
that reuses its container, an upload attached with ``container_upload`` and read by code, and
a small batch (created, polled until it ends, results read). At the end it prints the count
and latency of each operation, every unexpected error, and the server's memory (RSS) over
time, so a leak shows as a rising line:

    .venv/bin/python bench/soak.py                          # 10 minutes, 50 clients
    .venv/bin/python bench/soak.py --duration 30 --clients 4 # a quick check

By default it starts its own server (real sandboxes, a fresh data directory); ``--url``
uses a running one instead (memory is then not sampled). Expected errors, such as 429 when
``--max-concurrent-executions`` is low, are counted separately from unexpected ones. The
exit status is 1 if any unexpected error happened.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import anthropic
import httpx

EXECBOX = Path(sys.executable).with_name("execbox")
TOOLS: Any = [{"type": "code_execution_20250825", "name": "code_execution"}]
EXPECTED = (anthropic.RateLimitError,)


def _code(snippet: str) -> str:
    return f"```python\n{snippet}\n```"


class Soak:
    def __init__(self, url: str, deadline: float) -> None:
        self.url = url
        self.deadline = deadline
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.expected: Counter[str] = Counter()
        self.unexpected: Counter[str] = Counter()
        self.lock = threading.Lock()

    def timed(self, name: str, call: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            result = call(**kwargs)
        except EXPECTED as exc:
            with self.lock:
                self.expected[f"{name}: {type(exc).__name__}"] += 1
            return None
        except Exception as exc:  # noqa: BLE001 - every failure is reported
            with self.lock:
                self.unexpected[f"{name}: {type(exc).__name__}: {str(exc)[:120]}"] += 1
            return None
        with self.lock:
            self.latency[name].append(time.perf_counter() - started)
        return result

    def client(self, n: int) -> None:
        client = anthropic.Anthropic(base_url=self.url, api_key=f"soak-{n}", max_retries=0, timeout=120)
        create = client.messages.create
        rng = random.Random(n)
        container: str | None = None
        while time.monotonic() < self.deadline:
            kind = rng.choice(["new", "reuse", "reuse", "upload", "batch"])
            if kind == "new" or (kind == "reuse" and container is None):
                response = self.timed(
                    "message, new container", create, model="execbox-direct", max_tokens=256, tools=TOOLS,
                    messages=[{"role": "user", "content": _code(f"x = {n}\nprint(x * 2)")}])
                if response is not None and response.container:
                    container = response.container.id
            elif kind == "reuse":
                self.timed(
                    "message, reused container", create, model="execbox-direct", max_tokens=256, tools=TOOLS,
                    container=container,
                    messages=[{"role": "user", "content": _code("import os; print(len(os.listdir('.')))")}])
            elif kind == "upload":
                data = os.urandom(rng.randint(1, 256) * 1024)
                uploaded = self.timed("file upload", client.beta.files.upload, file=("blob.bin", data))
                if uploaded is not None:
                    self.timed(
                        "message with container_upload", create, model="execbox-direct", max_tokens=256,
                        tools=TOOLS, messages=[{"role": "user", "content": [
                            {"type": "container_upload", "file_id": uploaded.id},
                            {"type": "text", "text": _code("import os; print(os.path.getsize('blob.bin'))")}]}])
                    self.timed("file delete", client.beta.files.delete, file_id=uploaded.id)
            else:
                self.timed("batch (create to results)", self.batch, client=client)

    def batch(self, client: anthropic.Anthropic) -> None:
        requests: Any = [
            {"custom_id": f"c{i}", "params": {"model": "execbox-direct", "max_tokens": 128, "tools": TOOLS,
                                              "messages": [{"role": "user", "content": _code(f"print({i})")}]}}
            for i in range(3)
        ]
        batch = client.messages.batches.create(requests=requests)
        while client.messages.batches.retrieve(batch.id).processing_status != "ended":
            time.sleep(0.5)
        results = list(client.messages.batches.results(batch.id))
        if sorted(r.custom_id for r in results) != ["c0", "c1", "c2"]:
            raise RuntimeError(f"batch {batch.id} returned {len(results)} results")
        if any(r.result.type != "succeeded" for r in results):
            raise RuntimeError(f"batch {batch.id}: {[r.result.type for r in results]}")
        client.messages.batches.delete(batch.id)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_server(extra: list[str]) -> tuple[subprocess.Popen[bytes], str, Path]:
    root = Path(tempfile.mkdtemp(prefix="execbox-soak-"))
    root.chmod(0o711)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = (root / "server.log").open("wb")
    process = subprocess.Popen(
        [str(EXECBOX), "serve", "--port", str(port), "--data-dir", str(root / "data"), "--log-level", "warning",
         *extra],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url, root
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"the server did not start; see {root / 'server.log'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600, help="seconds to run (default 600)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    parser.add_argument("--url", help="a running server to use instead of starting one")
    parser.add_argument("--sample-every", type=float, default=10, help="seconds between memory samples")
    parser.add_argument("server_args", nargs="*", help="extra `execbox serve` flags (after --)")
    args = parser.parse_args()

    process, url, root = (None, args.url, None) if args.url else start_server(args.server_args)
    soak = Soak(url, time.monotonic() + args.duration)
    memory: list[tuple[float, float]] = []
    started = time.monotonic()
    threads = [threading.Thread(target=soak.client, args=(n,), daemon=True) for n in range(args.clients)]
    for thread in threads:
        thread.start()
    try:
        while any(t.is_alive() for t in threads):
            if process is not None:
                memory.append((time.monotonic() - started, rss_mib(process.pid)))
            time.sleep(min(args.sample_every, max(0.5, soak.deadline - time.monotonic())))
        for thread in threads:
            thread.join()
    finally:
        if process is not None:
            memory.append((time.monotonic() - started, rss_mib(process.pid)))
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=120)
    elapsed = time.monotonic() - started

    print(f"\n{args.clients} clients for {elapsed:.0f} s against {url}\n")
    print("| operation | count | median ms | p95 ms |\n|---|---|---|---|")
    for name, samples in sorted(soak.latency.items()):
        samples.sort()
        p95 = samples[min(len(samples) - 1, int(len(samples) * 0.95))]
        print(f"| {name} | {len(samples)} | {statistics.median(samples) * 1000:.0f} | {p95 * 1000:.0f} |")
    print(f"\nexpected errors (rate limits): {sum(soak.expected.values())}")
    for what, n in soak.expected.most_common():
        print(f"  {n} x {what}")
    print(f"unexpected errors: {sum(soak.unexpected.values())}")
    for what, n in soak.unexpected.most_common():
        print(f"  {n} x {what}")
    if memory:
        print("\nserver RSS (MiB) over time: " + ", ".join(f"{t:.0f}s {m:.0f}" for t, m in memory))
        print(f"first {memory[0][1]:.0f} MiB, last {memory[-1][1]:.0f} MiB, max {max(m for _, m in memory):.0f} MiB")
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)
    raise SystemExit(1 if soak.unexpected else 0)


if __name__ == "__main__":
    main()
