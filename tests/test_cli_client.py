"""The client commands of the CLI (``execbox run``, ``execbox containers ls|rm``) against a real server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

EXECBOX = Path(sys.executable).with_name("execbox")


def execbox(server, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EXECBOX_URL": server.url, "EXECBOX_API_KEY": "test"}
    return subprocess.run([str(EXECBOX), *args], input=stdin, capture_output=True, text=True, env=env, timeout=120)


def test_run_a_script_and_manage_containers(server, tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text("import sys\nprint('hello from', 'execbox')\nprint('careful', file=sys.stderr)\nsys.exit(5)\n")
    ran = execbox(server, "run", str(script))
    assert ran.returncode == 5
    assert ran.stdout == "hello from execbox\n" and "careful\n" in ran.stderr

    kept = execbox(server, "run", "--keep", "-", stdin="open('state.txt', 'w').write('kept')\n")
    assert kept.returncode == 0, kept.stderr
    container = kept.stderr.split("container: ", 1)[1].split()[0]
    again = execbox(server, "run", "--bash", "--container", container, "-", stdin="cat state.txt; echo")
    assert (again.returncode, again.stdout) == (0, "kept\n")

    listed = execbox(server, "containers", "ls")
    assert listed.returncode == 0 and container in listed.stdout
    removed = execbox(server, "containers", "rm", container)
    assert (removed.returncode, removed.stdout) == (0, container + "\n")
    assert httpx.get(f"{server.url}/v1/containers/{container}").status_code == 404
    assert container not in execbox(server, "containers", "ls").stdout


def test_client_errors_are_one_line(server) -> None:
    missing = execbox(server, "containers", "rm", "container_nope")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert "not_found_error" in missing.stderr
    unreachable = subprocess.run(
        [str(EXECBOX), "containers", "ls", "--url", "http://127.0.0.1:9"], capture_output=True, text=True, timeout=60
    )
    assert unreachable.returncode == 1 and "cannot reach the server" in unreachable.stderr
