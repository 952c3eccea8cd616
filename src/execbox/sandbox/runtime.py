"""The sandbox runtime environment: the Python that untrusted code runs on.

A virtual environment built from the host's system interpreter (``/usr/bin/python3``,
so that binding ``/usr`` read-only into the sandbox is all it needs) with the pinned
libraries of ``runtime-requirements.txt``. It is never the server's environment.

Built once per pin set into ``/var/cache/execbox/runtime-<hash>`` and reused: a second
``execbox setup-runtime`` (or CI run on the same machine) finds it complete and returns
at once. A build goes to a temporary directory first and is renamed into place only
after an import check passes, so an interrupted build never looks complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REQUIREMENTS = Path(__file__).with_name("runtime-requirements.txt")
BASE_PYTHON = Path("/usr/bin/python3")
CACHE_ROOT = Path("/var/cache/execbox")
MARKER = ".execbox-runtime"
# Where the prebuilt matplotlib font cache lives inside the runtime.
MPL_CACHE = "share/matplotlib-cache"
# Imported after a build as a smoke test (module names, not distribution names).
SMOKE_IMPORTS = (
    "pandas numpy scipy sklearn statsmodels matplotlib seaborn pyarrow openpyxl xlrd PIL "
    "sympy mpmath tqdm dateutil pytz joblib"
).split()


def requirements_hash() -> str:
    digest = hashlib.sha256(REQUIREMENTS.read_bytes())
    digest.update(str(BASE_PYTHON.resolve()).encode())
    return digest.hexdigest()[:12]


def resolve_runtime_dir(configured: Path | None) -> Path:
    """The configured runtime directory, or the cache path for the current pins."""
    return configured or CACHE_ROOT / f"runtime-{requirements_hash()}"


def runtime_python(runtime_dir: Path) -> Path:
    return runtime_dir / "bin" / "python"


def is_complete(runtime_dir: Path) -> bool:
    marker = runtime_dir / MARKER
    return marker.is_file() and runtime_python(runtime_dir).exists()


def library_versions(runtime_dir: Path) -> dict[str, str]:
    """Installed distributions of the runtime, by reading its metadata (no code is run)."""
    versions: dict[str, str] = {}
    for site in runtime_dir.glob("lib/python3*/site-packages"):
        for dist in site.glob("*.dist-info"):
            name, _, version = dist.name[: -len(".dist-info")].partition("-")
            versions[name.lower().replace("_", "-")] = version
    return versions


def _uv() -> str:
    beside = Path(sys.executable).with_name("uv")
    found = str(beside) if beside.exists() else shutil.which("uv")
    if not found:
        raise RuntimeError("uv is needed to build the runtime: pip install uv")
    return found


def _run(cmd: list[str], echo: Callable[[str], None], env: dict[str, str] | None = None) -> None:
    """Run a build step, streaming its output lines as progress."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    for line in proc.stdout:
        echo("    " + line.rstrip())
    if proc.wait() != 0:
        raise RuntimeError(f"runtime build step failed ({proc.returncode}): {' '.join(cmd)}")


def build_runtime(
    configured: Path | None = None, *, force: bool = False, echo: Callable[[str], None] = print
) -> Path:
    """Build the runtime environment unless a complete one exists; return its path."""
    target = resolve_runtime_dir(configured)
    if is_complete(target) and not force:
        echo(f"[runtime] reusing {target}")
        return target
    if not BASE_PYTHON.exists():
        raise RuntimeError(f"{BASE_PYTHON} is missing: apt-get install python3")
    started = time.monotonic()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(target.name + f".building-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    uv = _uv()
    n = sum(1 for line in REQUIREMENTS.read_text().splitlines() if line and not line.startswith("#"))
    echo(f"[runtime 1/4] creating a virtual environment on {BASE_PYTHON} in {staging}")
    _run([uv, "venv", "--quiet", "--python", str(BASE_PYTHON), str(staging)], echo)
    echo(f"[runtime 2/4] installing {n} pinned packages (downloads are cached by uv)")
    env = {"UV_SYSTEM_CERTS": "1", **os.environ, "UV_NO_PROGRESS": "0"}
    _run([uv, "pip", "install", "--python", str(runtime_python(staging)), "--compile-bytecode",
          "-r", str(REQUIREMENTS)], echo, env)
    echo("[runtime 3/4] making it read-only for the sandbox")
    subprocess.run(["chmod", "-R", "a+rX,go-w", str(staging)], check=True)
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    # After the rename: the font cache records absolute paths, and the sandbox binds the
    # runtime at this same path.
    echo("[runtime 4/4] checking imports and prebuilding the matplotlib font cache")
    check = (
        "import importlib, matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot\n"
        f"for m in {SMOKE_IMPORTS!r}: importlib.import_module(m)\n"
    )
    mpl_env = {"PATH": "/usr/bin:/bin", "MPLCONFIGDIR": str(target / MPL_CACHE)}
    _run([str(runtime_python(target)), "-c", check], echo, mpl_env)
    subprocess.run(["chmod", "-R", "a+rX,go-w", str(target / MPL_CACHE)], check=True)
    (target / MARKER).write_text(requirements_hash() + "\n")
    echo(f"[runtime] built {target} in {time.monotonic() - started:.0f} s")
    return target
