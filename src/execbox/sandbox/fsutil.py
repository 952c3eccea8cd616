"""Host-side file access inside a box, safe against what sandboxed code leaves behind.

The server runs as root, so a path that sandboxed code controls must never be resolved
the ordinary way: a planted symlink (``data.csv -> /etc/shadow``) would be followed with
root's rights. Every function here walks from an already open directory one component
at a time with ``openat(O_NOFOLLOW)``, so a symlink anywhere in the path fails instead of
being followed, and ``..`` or absolute components are stripped before the walk.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from execbox.errors import InvalidRequest, NotFound, RequestTooLarge
from execbox.sandbox.types import WORKSPACE, OutputFile

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO must not hang the server; non-regular files are refused after fstat.
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def clean_relpath(path: str) -> str:
    """A path relative to the workspace: ``/workspace/`` prefix, ``.``, ``..`` and empty
    components removed (``../../x`` -> ``x``, ``/etc/passwd`` -> ``etc/passwd``)."""
    if "\0" in path:
        raise InvalidRequest("File paths cannot contain NUL characters.")
    if path == WORKSPACE or path.startswith(WORKSPACE + "/"):
        path = path[len(WORKSPACE):]
    parts = [p for p in path.split("/") if p not in ("", ".", "..")]
    if not parts:
        raise InvalidRequest(f"`{path}` does not name a file in the container.")
    return "/".join(parts)


@contextmanager
def _opened(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


def _open_parent(root: Path, parts: list[str], create_as: int | None) -> int:
    """An fd of the directory holding ``parts[-1]``; missing directories are created
    (owned by ``create_as``) when it is given."""
    fd = os.open(root, DIR_FLAGS)
    try:
        for part in parts[:-1]:
            try:
                child = os.open(part, DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if create_as is None:
                    raise
                os.mkdir(part, 0o755, dir_fd=fd)
                os.chown(part, create_as, create_as, dir_fd=fd, follow_symlinks=False)
                child = os.open(part, DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _path_error(relpath: str, exc: OSError) -> Exception:
    if exc.errno == errno.ENOENT:
        return NotFound(f"File `{relpath}` not found in the container.")
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return InvalidRequest(f"`{relpath}` goes through a symbolic link or a file, which is not allowed.")
    if exc.errno == errno.ENOSPC:
        return InvalidRequest("The container's disk is full.")
    if exc.errno in (errno.ENXIO, errno.EISDIR):
        return InvalidRequest(f"`{relpath}` exists and is not a regular file.")
    if exc.errno in (errno.ENAMETOOLONG, errno.EINVAL):
        return InvalidRequest(f"`{relpath}` is not a valid file path: {exc.strerror}.")
    return exc


def write_file(root: Path, relpath: str, data: bytes, uid: int) -> str:
    """Write ``data`` at ``relpath`` under ``root`` as ``uid``'s file; returns the cleaned path."""
    clean = clean_relpath(relpath)
    parts = clean.split("/")
    try:
        with _opened(_open_parent(root, parts, create_as=uid)) as parent:
            with _opened(os.open(parts[-1], WRITE_FLAGS, 0o644, dir_fd=parent)) as fd:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise InvalidRequest(f"`{clean}` exists and is not a regular file.")
                os.ftruncate(fd, 0)
                os.fchown(fd, uid, uid)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
    except OSError as exc:
        raise _path_error(clean, exc) from exc
    return clean


def read_file(root: Path, relpath: str, max_bytes: int) -> bytes:
    """The contents of the regular file at ``relpath`` under ``root``."""
    clean = clean_relpath(relpath)
    parts = clean.split("/")
    try:
        with _opened(_open_parent(root, parts, create_as=None)) as parent:
            with _opened(os.open(parts[-1], READ_FLAGS, dir_fd=parent)) as fd:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    raise NotFound(f"`{clean}` is not a regular file.")
                if st.st_size > max_bytes:
                    raise RequestTooLarge(f"`{clean}` is {st.st_size} bytes; the limit is {max_bytes}.")
                with os.fdopen(os.dup(fd), "rb") as fh:
                    return fh.read(max_bytes + 1)[:max_bytes]
    except OSError as exc:
        raise _path_error(clean, exc) from exc


def list_files(root: Path) -> list[tuple[str, int]]:
    """Every regular file under ``root`` as (relative path, size); symlinks are not followed."""
    found: list[tuple[str, int]] = []
    pending: list[list[str]] = [[]]
    while pending:  # iterative: directory depth is up to sandboxed code
        parts = pending.pop()
        try:
            fd = _open_parent(root, [*parts, ""], create_as=None)
        except OSError:  # changed since it was listed
            continue
        with _opened(fd), os.scandir(fd) as entries:
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    pending.append([*parts, entry.name])
                elif stat.S_ISREG(st.st_mode):
                    found.append(("/".join([*parts, entry.name]), st.st_size))
    return sorted(found)


def empty_dir(path: Path) -> None:
    """Delete everything inside ``path`` (symlinks themselves, never their targets)."""
    with _opened(os.open(path, DIR_FLAGS)) as dirfd:
        for name in os.listdir(dirfd):
            if stat.S_ISDIR(os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_mode):
                shutil.rmtree(name, dir_fd=dirfd)
            else:
                os.unlink(name, dir_fd=dirfd)


def collect_outputs(source: Path, staging: Path, max_file_bytes: int) -> list[OutputFile]:
    """Copy the regular files at the top of ``source`` to ``staging`` (created, root's).

    Symlinks, directories, devices and FIFOs are ignored, never followed; files larger
    than ``max_file_bytes`` are reported ``too_large`` and not copied.
    """
    found: list[OutputFile] = []
    with _opened(os.open(source, DIR_FLAGS)) as dirfd:
        for name in sorted(os.listdir(dirfd)):
            if not stat.S_ISREG(os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_mode):
                continue
            try:
                fd = os.open(name, READ_FLAGS, dir_fd=dirfd)
            except OSError:  # swapped for a symlink or removed since the listing
                continue
            with os.fdopen(fd, "rb") as src:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    continue
                if st.st_size > max_file_bytes:
                    found.append(OutputFile(name, st.st_size, None, too_large=True))
                    continue
                staging.mkdir(mode=0o700, parents=True, exist_ok=True)
                target = staging / name
                with open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1024 * 1024)
                found.append(OutputFile(name, target.stat().st_size, target))
    return found
