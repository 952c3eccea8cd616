"""``execbox doctor`` checks, tried for real on this host."""

from __future__ import annotations

from pathlib import Path

import pytest

from execbox.sandbox.doctor import blocking_problems, run_checks


@pytest.mark.sandbox
def test_every_isolation_feature_works_here() -> None:
    checks = run_checks(None)
    names = [c.name for c in checks]
    for expected in ("root", "bubblewrap", "seccomp", "cgroups", "cgroup: memory", "cgroup: pids", "disk quota",
                     "runtime", "runtime libraries"):
        assert expected in names
    assert [n for n in names if n.startswith("namespace: ")] == [
        f"namespace: {ns}" for ns in ("user", "mount", "pid", "net", "ipc", "uts", "cgroup")]
    assert [c for c in checks if c.verdict == "FAIL"] == []
    assert blocking_problems(None) == []


@pytest.mark.sandbox
def test_missing_runtime_is_blocking(tmp_path: Path) -> None:
    problems = blocking_problems(tmp_path / "missing-runtime")
    assert problems == [f"runtime: {tmp_path / 'missing-runtime'} is not built: run `execbox setup-runtime`"]


@pytest.mark.sandbox
def test_the_fork_server_is_checked_with_a_real_execution() -> None:
    checks = {c.name: c for c in run_checks(None, fork_server=True)}
    assert checks["fork server"].verdict == "ok", checks["fork server"].detail
    assert "uid 1000" in checks["fork server"].detail
    assert checks["cgroup favordynmods"].verdict == "ok"
