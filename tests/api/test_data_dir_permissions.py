"""Tenant data on the host: as an unprivileged host user (nobody) or as another
container's uid, nothing under the server's data directory can be read or listed.

A real server writes every kind of tenant data (disk images, uploads, generated files,
the database); then every file and directory under its data directory is probed with
the rights of the other uid, from a process of that uid (``setpriv``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

NOBODY = 65534

PROBE = r"""
import errno, json, os, sys
paths, traverse = json.load(sys.stdin)
found = []
for path in paths:
    try:
        if traverse:  # can it get through this directory? (ENOENT, not EACCES, for a missing name)
            try:
                os.stat(os.path.join(path, "no-such-name"))
            except FileNotFoundError:
                found.append(path)
            continue
        if os.path.isdir(path):
            os.listdir(path)
        else:
            with open(path, "rb") as f:
                f.read(1)
        found.append(path)
    except OSError:
        pass
print(json.dumps(found))
"""


def readable_as(uid: int, paths: list[Path], traverse: bool = False) -> list[str]:
    """The paths that a process of ``uid`` (and its own group, no others) can read or list
    (or, with ``traverse``, the directories it can get through)."""
    result = subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", sys.executable, "-I", "-c", PROBE],
        input=json.dumps([[str(p) for p in paths], traverse]), capture_output=True, text=True, check=True,
    )
    return json.loads(result.stdout)


def everything_under(root: Path, skip: Path | None = None) -> list[Path]:
    found = [root]
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if skip is not None and (here == skip or skip in here.parents):
            continue
        found += [here / name for name in dirnames + filenames]
    return found


def _wait_for_ready_disks(data_dir: Path, count: int) -> None:
    pool = data_dir / "containers" / ".pool"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if pool.is_dir() and sum((entry / "mnt" / "tmp").is_dir() for entry in pool.iterdir()) >= count:
            time.sleep(0.5)  # the last one's caches
            return
        time.sleep(0.1)
    raise AssertionError("the disk pool never filled")


@pytest.fixture(scope="module")
def tenant_data(start_server):
    server = start_server(args=("--disk-pool", "2"))
    _wait_for_ready_disks(server.data_dir, 2)
    with httpx.Client(base_url=server.url, headers={"x-api-key": "k", "anthropic-version": "2023-06-01"}, timeout=120) as client:
        upload = client.post("/v1/files", files={"file": ("secret.txt", b"uploaded secret", "text/plain")})
        assert upload.status_code == 200, upload.text
        # Two disks from the pool, the third made on demand (the pool refills meanwhile).
        ids = [client.post("/v1/containers").json()["id"] for _ in range(3)]
        for container_id in ids:
            run = client.post(f"/v1/containers/{container_id}/exec", json={
                "command": "echo workspace secret > /workspace/s.txt; echo output secret > $OUTPUT_DIR/o.txt"})
            assert run.status_code == 200 and run.json()["files"][0]["file_id"], run.text
    yield server, ids


@pytest.mark.sandbox
def test_nobody_reads_nothing_of_the_data_directory(tenant_data) -> None:
    server, _ = tenant_data
    paths = everything_under(server.data_dir)
    assert any(p.name == "disk.img" for p in paths) and any(p.name == "execbox.db" for p in paths)
    assert len([p for p in paths if p.parent.parent.name == "files"]) >= 3  # the upload and two outputs
    assert readable_as(NOBODY, paths) == []


@pytest.mark.sandbox
def test_a_container_uid_reads_nothing_of_another_container(tenant_data) -> None:
    server, (mine, *_) = tenant_data
    boxes = server.data_dir / "containers"
    my_uid = (boxes / mine / "mnt" / "workspace").stat().st_uid
    readable = readable_as(my_uid, [p for p in everything_under(server.data_dir, skip=boxes / mine) if p != boxes / mine])
    # Its own box is the only thing it may reach: everything else is closed to it, down to
    # the listing of the directories it traverses.
    assert readable == []
    assert readable_as(my_uid, [boxes / mine / "mnt" / "workspace" / "s.txt"]) != []  # the probe works
    # Not even a path through another box's directories: at most the way to its own.
    directories = [p for p in everything_under(boxes, skip=boxes / mine) if p.is_dir() and p != boxes / mine]
    assert readable_as(my_uid, directories, traverse=True) == [str(boxes)]
    assert readable_as(my_uid, [boxes / mine, boxes / mine / "mnt"], traverse=True) != []

