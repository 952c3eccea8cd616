"""Ordinary operator mistakes, each made on purpose, each with a clear outcome.

- a malformed setting: one line naming the setting and its form, no traceback, no secret;
- a second server on a running server's data directory: refused, the first unharmed;
- a port in use: one line; a data directory made by ``mktemp -d`` (0700): fixed at start;
  one below a directory sandboxes cannot pass: refused with the fix;
- two servers on one database: neither frees or reopens the other's containers.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import EXECBOX, TEST_FLAGS, Server, StartServer

REFERENCE_PATH = {"EXECBOX_FORK_SERVER": "false"}  # these tests are about the server, not the sandbox


def _serve(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EXECBOX_")}
    return subprocess.run(
        [str(EXECBOX), "serve", *args], env={**clean, **(env or {})}, capture_output=True, text=True,
        timeout=timeout,
    )


def _run(server: Server, container: str, code: str) -> dict:
    response = httpx.post(f"{server.url}/v1/containers/{container}/exec", json={"code": code}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def _one_clear_line(run: subprocess.CompletedProcess[str], *expected: str) -> str:
    output = (run.stdout + run.stderr).strip()
    assert run.returncode != 0
    assert "Traceback" not in output, output
    assert "listening" not in output, "a server that does not serve never says it listens"
    lines = [line for line in output.splitlines() if line.startswith("execbox:")]
    assert len(lines) == 1, output
    for text in expected:
        assert text in lines[0], output
    return output


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--port", "abc"], {}, ["--port", "EXECBOX_PORT", "an integer"]),
        (["--memory-limit", "lots"], {}, ["--memory-limit", "a size such as 1GiB"]),
        (["--container-expiry", "sometimes"], {}, ["--container-expiry", "one of idle, created"]),
        ([], {"EXECBOX_API_KEYS": "team-a:s3cr3t-one,t0p-s3cr3t"}, ["EXECBOX_API_KEYS", "entry 2 of 2"]),
        ([], {"EXECBOX_SHUTDOWN_GRACE": "-1"}, ["EXECBOX_SHUTDOWN_GRACE", "a number"]),
    ],
    ids=["port", "size", "choice", "api-keys", "negative"],
)
def test_a_malformed_setting_is_one_line_without_secrets(args: list[str], env: dict[str, str], expected: list[str]) -> None:
    output = _one_clear_line(_serve(*args, env=env), *expected)
    assert "s3cr3t" not in output


def test_help_shows_each_flags_form_and_default() -> None:
    run = subprocess.run([str(EXECBOX), "serve", "--help"], capture_output=True, text=True, check=True)
    text = " ".join(run.stdout.split())
    assert "[a size such as 1GiB, 512MB or 1048576; default: 1GiB]" in text
    assert "[an integer; default: 8000]" in text
    assert "[a number; default: 30.0]" in text  # --shutdown-grace


def test_a_second_server_on_a_data_dir_in_use_refuses_and_touches_nothing(server: Server) -> None:
    container = httpx.post(f"{server.url}/v1/containers", timeout=30).json()["id"]
    assert _run(server, container, "open('keep.txt', 'w').write('x'); print(1)")["return_code"] == 0
    second = _serve("--data-dir", str(server.data_dir), "--port", "0", *TEST_FLAGS)
    _one_clear_line(second, f"{server.data_dir} is in use by another execbox server (pid {server.process.pid})")
    result = _run(server, container, "print(open('keep.txt').read())")
    assert (result["return_code"], result["stdout"]) == (0, "x\n"), result


def test_a_port_in_use_is_one_line(server: Server, tmp_path: Path) -> None:
    port = server.url.rsplit(":", 1)[1]
    run = _serve("--data-dir", str(tmp_path / "data"), "--port", port)
    _one_clear_line(run, f"cannot listen on 127.0.0.1:{port}", "in use")


def test_a_mktemp_data_dir_is_fixed_at_start_and_runs_code(start_server: StartServer) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="execbox-mktemp-"))  # mode 0700, like `mktemp -d`
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    try:
        server = start_server(env=REFERENCE_PATH, data_dir=data_dir)
        container = httpx.post(f"{server.url}/v1/containers", timeout=30).json()["id"]
        assert _run(server, container, "print(6 * 7)")["stdout"] == "42\n"
        assert "searchable by sandboxes" in server.log_tail(200)
        assert stat.S_IMODE((data_dir / "execbox.db").stat().st_mode) == 0o600  # the metadata: root only
        server.stop()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def test_a_data_dir_sandboxes_cannot_reach_is_refused_with_the_fix(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    closed.chmod(0o700)
    run = _serve("--data-dir", str(closed / "data"), "--port", "0")
    _one_clear_line(run, f"chmod o+x {closed}")
    assert not (closed / "data" / "containers").exists()


def test_servers_sharing_a_database_keep_to_their_own_containers(start_server: StartServer, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o711)
    url = f"sqlite:///{shared / 'meta.db'}"
    first = start_server(env=REFERENCE_PATH, args=["--database-url", url, "--container-ttl", "600"])
    container = httpx.post(f"{first.url}/v1/containers", timeout=30).json()["id"]
    assert _run(first, container, "open('a.txt', 'w').write('a')")["return_code"] == 0
    # The second server's start-up and reaper (1 s) would free a box it cannot open; its
    # shutdown would close every active box in the database.
    second = start_server(env=REFERENCE_PATH, args=["--database-url", url, "--container-ttl", "600"])
    other = httpx.post(f"{second.url}/v1/containers", timeout=30).json()["id"]
    assert httpx.post(f"{second.url}/v1/containers/{container}/exec", json={"code": "1"}).status_code == 404
    time.sleep(2.5)
    second.stop()
    assert _run(first, container, "print(open('a.txt').read())")["stdout"] == "a\n"
    assert httpx.get(f"{first.url}/v1/containers/{other}").status_code == 404
    with sqlite3.connect(shared / "meta.db") as db:
        rows = db.execute("SELECT id, uid, node FROM containers WHERE status = 'active'").fetchall()
    assert {row[0] for row in rows} == {container, other}
    assert len({row[1] for row in rows}) == 2, "two boxes on one host never share a uid"
    assert len({row[2] for row in rows}) == 2


def test_a_server_that_cannot_run_code_does_not_start() -> None:
    home = Path(tempfile.mkdtemp(prefix="execbox-nocode-"))
    home.chmod(0o711)
    try:
        # A memory limit no interpreter fits in: every execution would fail.
        run = _serve("--data-dir", str(home / "data"), "--port", "0", "--memory-limit", "1MiB")
        _one_clear_line(run, "cannot run code: a test execution returned", "memory limit")
    finally:
        shutil.rmtree(home, ignore_errors=True)
