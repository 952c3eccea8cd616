"""The data directory's start-up checks: one server at a time, and permissions sandboxes can use.

``lock`` takes an exclusive ``flock`` on ``DATA_DIR/execbox.lock`` for the life of the
process (the kernel drops it when the process dies, even by SIGKILL), so a second server
on the same directory refuses before it touches anything. ``check_permissions`` makes sure
sandboxes (running as unprivileged uids) can reach their disks below the directory, fixing
the directory itself when that is safe and refusing with the fix otherwise.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from pathlib import Path

LOCK_NAME = "execbox.lock"


class DataDirError(Exception):
    """The data directory cannot be used; the message is one line, with the fix."""


def lock(data_dir: Path) -> int:
    """Lock ``data_dir`` for this process; returns the lock's file descriptor (keep it open)."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataDirError(f"cannot create the data directory {data_dir}: {exc.strerror}") from None
    path = data_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise DataDirError(f"cannot open {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = ""
        with contextlib.suppress(OSError, ValueError):
            holder = f" (pid {int(os.pread(fd, 32, 0).decode().strip())})"
        os.close(fd)
        raise DataDirError(
            f"the data directory {data_dir} is in use by another execbox server{holder}; "
            "stop that server first, or give this one another --data-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def check_permissions(data_dir: Path) -> list[str]:
    """Make ``data_dir`` usable by sandboxes; returns what was fixed. Raises DataDirError
    with the fix when a directory above it keeps sandboxes out."""
    fixed = []
    data_dir = data_dir.resolve()
    if not os.access(data_dir, os.W_OK | os.X_OK):
        raise DataDirError(f"the data directory {data_dir} is not writable by this server; fix its owner or mode")
    mode = os.stat(data_dir).st_mode
    if not mode & stat.S_IXOTH:
        # Search permission only: sandboxes may pass through, nobody may list the directory.
        os.chmod(data_dir, stat.S_IMODE(mode) | stat.S_IXOTH | stat.S_IXGRP)
        fixed.append(f"made {data_dir} searchable by sandboxes (mode {stat.S_IMODE(mode):04o} -> "
                     f"{stat.S_IMODE(os.stat(data_dir).st_mode):04o})")
    for parent in data_dir.parents:
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            raise DataDirError(
                f"{parent} (above the data directory) is not searchable by other users, so sandboxes cannot "
                f"reach their disks; run `chmod o+x {parent}` or choose a --data-dir elsewhere"
            )
    return fixed


def restrict_database(database_file: Path) -> None:
    """The SQLite database and its journals: readable and writable by the server's user only."""
    for path in (database_file, Path(f"{database_file}-wal"), Path(f"{database_file}-shm")):
        with contextlib.suppress(FileNotFoundError):
            if stat.S_IMODE(os.stat(path).st_mode) != 0o600:
                os.chmod(path, 0o600)
