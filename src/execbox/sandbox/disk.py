"""A box's disk: a sparse ext4 image loop-mounted at ``box.mount``.

The image caps the box's disk use (ENOSPC inside the sandbox when full) and keeps one
box's files on a filesystem of their own, so hard links can never reach another box or
the host. ``discard`` returns deleted blocks to the host. Without loop devices (insecure
mode only) ``box.mount`` is a plain directory with no quota.

Layout of the mounted filesystem (its root is root-owned; the sandbox sees only the
directories bound into it):

    workspace/   the box uid's, bound at /workspace
    tmp/         the box uid's, bound at /tmp
    outputs/     the box uid's, bound at /outputs, emptied around every execution
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from pathlib import Path

from execbox.sandbox import fsutil
from execbox.sandbox.errors import HostExhausted, Unavailable
from execbox.sandbox.types import Box

MKFS = ("mkfs.ext4", "-q", "-F", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard")
MOUNT_OPTIONS = "loop,nodev,nosuid,discard"
# How the host running out of room shows: errnos of our own calls, and what mkfs and
# mount print (util-linux says "failed to setup loop device" when none is free).
EXHAUSTED_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.ENOMEM}
EXHAUSTED_MESSAGES = ("No space left on device", "Disk quota exceeded", "Cannot allocate memory", "loop device")

log = logging.getLogger("execbox.sandbox")


async def _run(*cmd: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise Unavailable(f"`{' '.join(cmd)}` failed: {out.decode(errors='replace').strip()}")


def is_mounted(box: Box) -> bool:
    return os.path.ismount(box.mount)


async def create(box: Box, size_bytes: int, *, loop: bool = True) -> None:
    """Make the box's disk and its directories, owned by the box uid. Idempotent.

    Raises HostExhausted when the host is out of disk space, loop devices or memory: that
    is the server's capacity, not the caller's fault.
    """
    try:
        await _create(box, size_bytes, loop)
    except (OSError, Unavailable) as exc:
        if not _exhausted(exc):
            raise
        log.error("cannot create the disk of box %s: the host is out of capacity: %s", box.id, exc)
        raise HostExhausted(
            "The server has no capacity for a new container right now (its disk space or devices are "
            "exhausted); this is not a problem with your request. Retry later."
        ) from exc


def _exhausted(exc: OSError | Unavailable) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in EXHAUSTED_ERRNOS
    return any(message in exc.message for message in EXHAUSTED_MESSAGES)


def _private(box: Box, path: Path) -> None:
    """``path`` root's, traversable by the box's group (its uid's own group) and nobody else."""
    os.chown(path, 0, box.uid)
    os.chmod(path, 0o710)


def secure(box: Box) -> None:
    """Owners and modes of the box's host files: the box uid (bwrap) may traverse its own
    root and mount point to its directories, no other uid may enter them, and its disk
    image is root's alone. Applied at creation and on every (re)open."""
    for path in (box.root, box.mount):
        if path.is_dir():
            _private(box, path)
    for image in (box.image, box.image.with_name(box.image.name + ".partial")):
        if image.exists():
            os.chmod(image, 0o600)


async def _create(box: Box, size_bytes: int, loop: bool) -> None:
    box.root.mkdir(parents=True, exist_ok=True)
    _private(box, box.root)
    box.mount.mkdir(exist_ok=True)
    if loop and not box.image.exists():
        partial = box.image.with_name(box.image.name + ".partial")
        with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600), "wb") as fh:
            fh.truncate(size_bytes)
        await _run(*MKFS, str(partial))
        os.replace(partial, box.image)
    if loop:
        await mount(box)
    secure(box)
    for d in (box.workspace, box.tmp, box.outputs):
        d.mkdir(exist_ok=True)
        os.chown(d, box.uid, box.uid)
        os.chmod(d, 0o700)


def adopt(box: Box) -> None:
    """Make a disk prepared for no one in particular (``diskpool.py``) the box's: its root's
    modes (``secure``), and its directories and what was put in them owned by the box uid."""
    secure(box)
    for d in (box.workspace, box.tmp, box.outputs):
        os.chown(d, box.uid, box.uid)
        os.chmod(d, 0o700)
    for top, dirs, files in os.walk(box.tmp):  # the pool's own few files (caches), never a box's
        for name in dirs + files:
            os.chown(os.path.join(top, name), box.uid, box.uid, follow_symlinks=False)


async def mount(box: Box) -> None:
    """Mount an existing image (after a restart). No-op if mounted or there is no image."""
    if box.image.exists() and not is_mounted(box):
        box.mount.mkdir(exist_ok=True)
        await _run("mount", "-o", MOUNT_OPTIONS, str(box.image), str(box.mount))
        secure(box)


async def unmount(box: Box) -> None:
    """Unmount (the loop device goes with it). No-op if not mounted."""
    if is_mounted(box):
        try:
            await _run("umount", str(box.mount))
        except Unavailable:
            # Still busy (e.g. a host process has a file open): detach it from the tree
            # now; the kernel frees it when the last user goes.
            await _run("umount", "--lazy", str(box.mount))


async def destroy(box: Box) -> None:
    """Unmount and delete everything under ``box.root``."""
    await unmount(box)
    if box.root.is_dir():  # without a loop device its tree is the sandbox's, of any depth
        await asyncio.to_thread(fsutil.empty_dir, box.root)
        box.root.rmdir()
