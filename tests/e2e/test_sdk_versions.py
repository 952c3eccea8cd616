"""The SDK calls of ``sdk_calls/`` pass with the 1.1 release of the SDK too.

SDK 1.1 speaks an older dialect: ``X-Api-Key``, ``anthropic-version: 2023-06-01``,
``?beta=true`` on beta routes, the legacy Files list. Its environment (``.venv/sdk-1.1``)
is made by ``./run.sh setup``; the calls run there against this session's servers.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SDK1_PYTHON = ROOT / ".venv" / "sdk-1.1" / "bin" / "python"


def test_sdk_calls_pass_with_anthropic_1_1(
    e2e_url: str, expiring_url: str, keyed_url: str, short_batches_url: str
) -> None:
    assert SDK1_PYTHON.exists(), f"{SDK1_PYTHON} is missing: run ./run.sh setup"
    version = subprocess.run(
        [SDK1_PYTHON, "-c", "import anthropic; print(anthropic.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert version.stdout.strip() == "1.1.0"
    env = {**os.environ, "E2E_URL": e2e_url, "E2E_EXPIRING_URL": expiring_url, "E2E_KEYED_URL": keyed_url,
           "E2E_SHORT_BATCHES_URL": short_batches_url}
    run = subprocess.run(
        [SDK1_PYTHON, "-m", "pytest", "tests/e2e/sdk_calls", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, f"SDK 1.1 run failed:\n{run.stdout}\n{run.stderr}"
    assert " passed" in run.stdout.splitlines()[-1]
