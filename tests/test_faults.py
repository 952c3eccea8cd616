"""Faults injected into a real server: SIGKILL during an execution and during an upload,
sandbox processes killed from outside, SQLite locked by another writer, a full data disk.
Each gives a clear answer and leaves nothing half-done behind. (SIGKILL during a batch:
``tests/batches/test_batch_restart.py``.)"""

from __future__ import annotations

import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, StartServer

# Tests about the server rather than the sandbox start faster without the fork server.
REFERENCE_PATH = {"EXECBOX_FORK_SERVER": "false"}
API = {"anthropic-version": "2023-06-01"}  # the Anthropic API routes require it


def _exec(server: Server, container: str, code: str, timeout: float = 60) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/containers/{container}/exec", json={"code": code}, timeout=timeout)


def _in_background(call, *args):  # type: ignore[no-untyped-def]
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["response"] = call(*args)
        except httpx.TransportError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def _uid(server: Server, container: str) -> int:
    with sqlite3.connect(server.data_dir / "execbox.db") as db:
        return db.execute("SELECT uid FROM containers WHERE id = ?", (container,)).fetchone()[0]


def test_sigkill_during_an_execution_keeps_the_container_usable(start_server: StartServer) -> None:
    first = start_server()
    container = httpx.post(f"{first.url}/v1/containers").json()["id"]
    assert _exec(first, container, "open('before.txt', 'w').write('kept')").status_code == 200
    thread, outcome = _in_background(_exec, first, container, "open('during.txt', 'w').write('x')\n"
                                     "import time; time.sleep(30)")
    time.sleep(1.5)
    first.process.kill()
    first.process.wait()
    thread.join(30)
    assert "error" in outcome  # the client saw the connection drop, nothing else

    second = start_server(data_dir=first.data_dir)
    result = _exec(second, container, "import os; print(open('before.txt').read(), sorted(os.listdir('.')))").json()
    assert result["return_code"] == 0 and result["stdout"].startswith("kept"), result
    assert _exec(second, container, "print(1)").json()["stdout"] == "1\n"


def test_sigkill_during_an_upload_leaves_no_partial_file(start_server: StartServer) -> None:
    first = start_server(env=REFERENCE_PATH)
    sent, killed = threading.Event(), threading.Event()

    def body() -> Iterator[bytes]:
        yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n\r\n"
        for _ in range(8):
            yield b"x" * 1024 * 1024
        sent.set()
        killed.wait(30)
        yield b"\r\n--b--\r\n"

    thread, outcome = _in_background(
        lambda: httpx.post(f"{first.url}/v1/files", content=body(),
                           headers={"content-type": "multipart/form-data; boundary=b", **API}, timeout=60)
    )
    assert sent.wait(30)
    time.sleep(0.5)
    first.process.kill()
    first.process.wait()
    killed.set()
    thread.join(60)

    second = start_server(env=REFERENCE_PATH, data_dir=first.data_dir)
    assert httpx.get(f"{second.url}/v1/files", headers=API).json()["data"] == []
    blobs = [p for p in (second.data_dir / "files").rglob("*") if p.is_file() and ".staging" not in p.parts]
    assert blobs == [], "a half-written upload became a file"
    uploaded = httpx.post(f"{second.url}/v1/files", files={"file": ("ok.txt", b"whole")}, headers=API).json()
    assert uploaded["size_bytes"] == 5


def test_sandbox_processes_killed_from_outside_give_a_clear_result(server: Server) -> None:
    container = httpx.post(f"{server.url}/v1/containers").json()["id"]
    thread, outcome = _in_background(
        _exec, server, container, "open('started', 'w').close()\nimport time; time.sleep(20)"
    )
    uid = _uid(server, container)
    deadline = time.monotonic() + 20
    while httpx.get(f"{server.url}/v1/containers/{container}/files/started").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    subprocess.run(["pkill", "-9", "-u", str(uid)], check=True)
    thread.join(30)
    result = outcome["response"].json()  # type: ignore[union-attr]
    assert result["return_code"] == 137, result
    assert "killed by SIGKILL, not by a limit of this sandbox" in result["stderr"]
    assert _exec(server, container, "print('still usable')").json()["stdout"] == "still usable\n"


def test_a_locked_database_is_a_529_then_recovers_intact(start_server: StartServer) -> None:
    server = start_server(env=REFERENCE_PATH, args=["--database-busy-timeout", "1"])
    with ThreadPoolExecutor(8) as pool:  # concurrent writers all succeed while nobody holds the lock long
        uploads = list(pool.map(lambda i: httpx.post(f"{server.url}/v1/files", files={"file": (f"{i}.txt", b"x")}, headers=API,
                                                     timeout=30), range(16)))
    assert all(r.status_code == 200 for r in uploads)

    holder = sqlite3.connect(server.data_dir / "execbox.db", isolation_level=None, timeout=5)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        refused = httpx.post(f"{server.url}/v1/containers", timeout=30)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert refused.status_code == 529, refused.text
    assert refused.json()["error"]["details"]["error_code"] == "database_busy"
    assert refused.headers["retry-after"] == "1"
    assert httpx.post(f"{server.url}/v1/containers", timeout=30).status_code == 200
    with sqlite3.connect(server.data_dir / "execbox.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert len(httpx.get(f"{server.url}/v1/files", params={"limit": 100}, headers=API).json()["data"]) == 16


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A 48 MiB ext4 file system, loop-mounted, as a data directory's home."""
    work = Path(tempfile.mkdtemp(prefix="execbox-small-disk-"))
    work.chmod(0o711)
    image, mount = work / "disk.img", work / "mnt"
    mount.mkdir()
    subprocess.run(["truncate", "-s", "48M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
    mount.chmod(0o711)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        subprocess.run(["rm", "-rf", str(work)], check=False)


def test_a_full_data_disk_is_a_clear_error(start_server: StartServer, small_disk: Path) -> None:
    server = start_server(env=REFERENCE_PATH, data_dir=small_disk / "data")
    big = httpx.post(f"{server.url}/v1/files", files={"file": ("big.bin", b"x" * 64 * 1024 * 1024)}, timeout=60,
                     headers=API)
    assert big.status_code == 529, big.text
    assert big.json()["error"]["details"]["error_code"] == "out_of_disk_space"
    assert httpx.get(f"{server.url}/v1/files", headers=API).json()["data"] == []
    small = httpx.post(f"{server.url}/v1/files", files={"file": ("small.txt", b"fits")}, timeout=30, headers=API)
    assert small.status_code == 200
    server.stop()
