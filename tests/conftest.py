"""Shared fixtures: real execbox servers running as subprocesses.

``server``
    One server for the whole test session: workspace ``default`` (any API key works),
    test-sized limits, a short reaper interval. Use it unless you need special settings.

``start_server(env=None, args=(), data_dir=None, nofile=None)``
    Starts an extra server with more environment variables (``EXECBOX_API_KEYS=...``) and
    ``execbox serve`` flags (and, given ``nofile``, that descriptor limit). Pass the ``data_dir`` of a stopped server to restart it on
    the same state. Every server is stopped at the end of the session; ``stop()`` earlier.

A server yields a ``Server`` with ``.url``, ``.data_dir`` and ``.log_path``. When a test
fails, the tail of every running server's log is attached to the failure report.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

EXECBOX = Path(sys.executable).with_name("execbox")
STARTUP_TIMEOUT_S = 120
# Small enough to be cheap, large enough for pandas/matplotlib code.
TEST_FLAGS = (
    "--memory-limit", "768MiB",
    "--disk-limit", "256MiB",
    "--exec-timeout", "30",
    "--reaper-interval", "1",
    "--log-level", "info",
)

_running: list[Server] = []


@dataclass
class Server:
    url: str
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        """SIGTERM (graceful: boxes are closed, state kept), SIGKILL if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self in _running:
            _running.remove(self)

    def log_tail(self, lines: int = 80) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(
    base: Path, env: Mapping[str, str], args: Sequence[str], data_dir: Path | None, nofile: int | None = None
) -> Server:
    data_dir = data_dir or base / "data"
    port = _free_port()
    log_path = base / f"server-{port}.log"
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("EXECBOX_") and k != "ANTHROPIC_API_KEY"}
    command = [str(EXECBOX), "serve", "--port", str(port), "--data-dir", str(data_dir), *TEST_FLAGS, *args]
    with log_path.open("ab") as log:
        limit = None if nofile is None else (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile)))
        process = subprocess.Popen(
            command, env={**clean_env, **env}, stdout=log, stderr=subprocess.STDOUT, preexec_fn=limit
        )
    server = Server(f"http://127.0.0.1:{port}", data_dir, log_path, process)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"execbox serve exited with {process.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                _running.append(server)
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"execbox serve did not become healthy in {STARTUP_TIMEOUT_S}s:\n{server.log_tail()}")


StartServer = Callable[..., Server]


@pytest.fixture(scope="session")
def start_server() -> Iterator[StartServer]:
    """Factory for extra servers; see the module docstring."""
    # Not under pytest's private (0700) temp dir: sandboxes run as other uids and must
    # be able to traverse every directory above their disks.
    root = Path(tempfile.mkdtemp(prefix="execbox-tests-"))
    root.chmod(0o711)
    started: list[Server] = []

    def start(
        env: Mapping[str, str] | None = None, args: Sequence[str] = (), data_dir: Path | None = None,
        nofile: int | None = None,
    ) -> Server:
        base = Path(tempfile.mkdtemp(dir=root))
        base.chmod(0o711)
        server = _launch(base, env or {}, args, data_dir, nofile)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def server(start_server: StartServer) -> Server:
    """The session's shared server (workspace ``default``)."""
    return start_server()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed and report.when == "call":
        for running in _running:
            report.sections.append((f"execbox server log ({running.url})", running.log_tail()))
