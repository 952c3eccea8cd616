"""Containers watching each other or the host: every channel is closed, one test each.

The attacks run in one box while a neighbour box writes to its disk (or the host reads
shared files); each assertion fails if the mask or rule in ``policy.py`` / ``seccomp.py``
that closes the channel is removed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from execbox.sandbox.types import Box
from tests.sandbox.sandbox_support import MakeBox, Run

pytestmark = pytest.mark.sandbox

READ_ALL = (
    "import json, os\n"
    "out = {}\n"
    "for path in PATHS:\n"
    "    try:\n"
    "        out[path] = sorted(os.listdir(path)) if os.path.isdir(path) else open(path, 'rb').read(4096).decode(errors='replace')\n"
    "    except OSError as e:\n"
    "        out[path] = 'error: ' + e.strerror\n"
    "print(json.dumps(out))\n"
)


def _read_all(paths: list[str]) -> str:
    return f"PATHS = {paths!r}\n" + READ_ALL


async def test_other_containers_disks_are_invisible(box: Box, make_box: MakeBox, run: Run) -> None:
    neighbour = await make_box()
    busy = await run(neighbour, "head -c 4000000 /dev/urandom > /workspace/busy.bin && sync", kind="bash")
    assert busy.return_code == 0
    result = await run(box, _read_all(["/proc/fs/ext4", "/proc/fs", "/proc/diskstats", "/proc/partitions"]))
    seen = json.loads(result.stdout)
    assert "loop" not in result.stdout, seen  # no loop device of any container, this one's included
    assert seen["/proc/fs"] in ([], "error: No such file or directory")


async def test_host_identity_is_hidden(box: Box, run: Run) -> None:
    paths = ["/proc/cmdline", "/proc/sys/kernel/random/boot_id", "/proc/config.gz"]
    result = await run(box, _read_all(paths))
    seen = json.loads(result.stdout)
    for path in paths:
        host = Path(path)
        if host.exists():
            assert seen[path] in ("", "error: Permission denied"), (path, seen[path][:200])
    assert Path("/proc/sys/kernel/random/boot_id").read_text().strip() not in result.stdout


async def test_inotify_is_absent(engine, box: Box, run: Run) -> None:
    # A watch on the shared runtime would report another box's imports as they happen.
    code = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "fd = libc.inotify_init1(0)\n"
        "print(fd, ctypes.get_errno())\n"
        "if fd >= 0:\n"
        f"    print(libc.inotify_add_watch(fd, b'{engine.runtime_dir}/bin', 0xfff), ctypes.get_errno())\n"
    )
    result = await run(box, code)
    assert result.stdout.split() == ["-1", "38"]  # ENOSYS
    fallback = await run(box, "echo hi > f; timeout 1 tail -f f; true", kind="bash")  # tail polls instead
    assert fallback.stdout == "hi\n"
