"""Host-side file access inside a box, safe against what sandboxed code leaves behind.

The server runs as root, so a path that sandboxed code controls must never be resolved
the ordinary way: a planted symlink (``data.csv -> /etc/shadow``) would be followed with
root's rights. Every function here walks from an already open directory one component
at a time with ``openat(O_NOFOLLOW)``, so a symlink anywhere in the path fails instead of
being followed, and ``..`` or absolute components are stripped before the walk.

Sandboxed code also chooses how many entries there are and how deep they nest, so every
walk here is iterative, holds a bounded number of descriptors, and caps what it returns.
"""

from __future__ import annotations

import errno
import heapq
import io
import itertools
import os
import shutil
import stat
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from execbox.sandbox.errors import BadPath, DiskFull, FileBusy, FileTooLarge, NoSuchFile
from execbox.sandbox.types import WORKSPACE, Limits, OutputFile

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO must not hang the server; non-regular files are refused after fstat.
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# A listing shows the first MAX_LISTED_FILES paths (in sorted order), walks at most
# MAX_LIST_DEPTH directories down (one open descriptor per level) and leaves out paths
# longer than PATH_MAX, which programs could not open anyway.
MAX_LISTED_FILES = 10_000
MAX_LIST_DEPTH = 64
PATH_MAX = 4096
# A listing reads at most MAX_LIST_ENTRIES directory entries and runs at most
# LIST_TIME_BUDGET_S (see list_files).
MAX_LIST_ENTRIES = 200_000
LIST_TIME_BUDGET_S = 2.0


def display_name(name: str) -> str:
    """A file name as text: bytes that are not UTF-8 become U+FFFD (JSON cannot carry them)."""
    return os.fsencode(name).decode("utf-8", errors="replace")


def clean_relpath(path: str) -> str:
    """A path relative to the workspace: ``/workspace/`` prefix, ``.``, ``..`` and empty
    components removed (``../../x`` -> ``x``, ``/etc/passwd`` -> ``etc/passwd``)."""
    if "\0" in path:
        raise BadPath("File paths cannot contain NUL characters.")
    if path == WORKSPACE or path.startswith(WORKSPACE + "/"):
        path = path[len(WORKSPACE):]
    parts = [p for p in path.split("/") if p not in ("", ".", "..")]
    if not parts:
        raise BadPath(f"`{path}` does not name a file in the container.")
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
        return NoSuchFile(f"File `{relpath}` not found in the container.")
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return BadPath(f"`{relpath}` goes through a symbolic link or a file, which is not allowed.")
    if exc.errno == errno.ENOSPC:
        return DiskFull("The container's disk is full.")
    if exc.errno in (errno.ENXIO, errno.EISDIR):
        return BadPath(f"`{relpath}` exists and is not a regular file.")
    if exc.errno in (errno.ENAMETOOLONG, errno.EINVAL):
        return BadPath(f"`{relpath}` is not a valid file path: {exc.strerror}.")
    if exc.errno == errno.EAGAIN:  # a lease taken by a running execution
        return FileBusy(f"`{relpath}` is held by a running execution; try again when it ends.")
    return exc


def write_file(root: Path, relpath: str, data: bytes | BinaryIO, uid: int) -> str:
    """Write ``data`` (bytes or a stream) at ``relpath`` under ``root`` as ``uid``'s file;
    returns the cleaned path."""
    clean = clean_relpath(relpath)
    parts = clean.split("/")
    try:
        with _opened(_open_parent(root, parts, create_as=uid)) as parent:
            with _opened(os.open(parts[-1], WRITE_FLAGS, 0o644, dir_fd=parent)) as fd:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise BadPath(f"`{clean}` exists and is not a regular file.")
                os.ftruncate(fd, 0)
                os.fchown(fd, uid, uid)
                with os.fdopen(os.dup(fd), "wb") as out:
                    shutil.copyfileobj(io.BytesIO(data) if isinstance(data, bytes) else data, out, 1024 * 1024)
    except OSError as exc:
        raise _path_error(clean, exc) from exc
    return clean


def open_file(root: Path, relpath: str, max_bytes: int) -> BinaryIO:
    """The regular file at ``relpath`` under ``root``, open for reading (the caller closes
    it); reached without following symlinks, refused if larger than ``max_bytes``."""
    clean = clean_relpath(relpath)
    parts = clean.split("/")
    try:
        with _opened(_open_parent(root, parts, create_as=None)) as parent:
            fh = os.fdopen(os.open(parts[-1], READ_FLAGS, dir_fd=parent), "rb")
    except OSError as exc:
        raise _path_error(clean, exc) from exc
    try:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise NoSuchFile(f"`{clean}` is not a regular file.")
        if st.st_size > max_bytes:
            raise FileTooLarge(f"`{clean}` is {st.st_size} bytes; the limit is {max_bytes}.")
    except BaseException:
        fh.close()
        raise
    return fh


def _sorted_entries(fd: int, budget: _Budget) -> list[tuple[str, str, bool]]:
    """A directory's entries as (sort key, name, is a directory), in path order: a
    directory sorts as its name plus ``/``, where its files will be. Reading stops early
    when ``budget`` runs out."""
    found = []
    with os.scandir(fd) as entries:
        for entry in entries:
            if not budget.spend():
                break
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            name = display_name(entry.name)
            found.append((name + "/" if is_dir else name, entry.name, is_dir))
    found.sort()
    return found


class _Budget:
    """Entries a walk may read, and until when."""

    def __init__(self, entries: int, seconds: float) -> None:
        self.entries = entries
        self.deadline = time.monotonic() + seconds
        self.read = 0
        self.exhausted = False

    def spend(self) -> bool:
        """Take one entry; False once out of entries or time (the clock is read every 256)."""
        if self.read >= self.entries or (self.read % 256 == 0 and time.monotonic() > self.deadline):
            self.exhausted = True
        self.read += 1
        return not self.exhausted


def _files_under(root: Path, budget: _Budget) -> Iterator[tuple[str, int]]:
    """(relative path, size) of the regular files under ``root``, in path order.

    Holds one descriptor and one directory's entries per level being walked (at most
    MAX_LIST_DEPTH + 1); entries that vanish or change while it walks are skipped. Once
    ``budget`` runs out it reads no more directories, and yields the files among the
    entries already read.
    """
    stack: list[tuple[int, str, Iterator[tuple[str, str, bool]]]] = []  # open directories
    try:
        fd = os.open(root, DIR_FLAGS)
        stack.append((fd, "", iter(_sorted_entries(fd, budget))))
        while stack:
            fd, prefix, entries = stack[-1]
            entry = next(entries, None)
            if entry is None:
                os.close(stack.pop()[0])
                continue
            _, name, is_dir = entry
            path = prefix + display_name(name)
            if len(path.encode()) >= PATH_MAX:
                continue
            if is_dir:
                if len(stack) <= MAX_LIST_DEPTH and not budget.exhausted:
                    try:
                        child = os.open(name, DIR_FLAGS, dir_fd=fd)
                    except OSError:  # replaced since it was listed
                        continue
                    stack.append((child, path + "/", iter(())))  # closed by the finally below if it fails
                    stack[-1] = (child, path + "/", iter(_sorted_entries(child, budget)))
                continue
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                yield path, st.st_size
    finally:
        for fd, _, _ in stack:
            os.close(fd)


def list_files(
    root: Path, limit: int = MAX_LISTED_FILES, time_budget_s: float = LIST_TIME_BUDGET_S,
    max_entries: int = MAX_LIST_ENTRIES,
) -> list[tuple[str, int]]:
    """Regular files under ``root`` as (relative path, size), sorted by path: the first
    ``limit``, within the bounds above. Symlinks are not followed.

    The walk goes in path order and stops at the ``limit``-th file, after reading
    ``max_entries`` directory entries, or after ``time_budget_s``, whichever comes first:
    a box can hold millions of entries (hard links cost no inodes), and a listing must
    not cost the server in proportion. Cut short by the budget, the list holds the files
    among the entries read so far (still sorted).
    """
    budget = _Budget(max_entries, time_budget_s)
    return list(itertools.islice(_files_under(root, budget), limit))


def _some_entries(fd: int, count: int = 1024) -> list[tuple[str, bool]]:
    """Up to ``count`` entries of a directory, as (name, is a directory)."""
    with os.scandir(fd) as entries:
        return [(e.name, e.is_dir(follow_symlinks=False)) for e in itertools.islice(entries, count)]


def _unused_name(dirfd: int, names: Iterator[int]) -> str:
    while True:
        name = f".execbox-{next(names)}"
        try:
            os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        except FileNotFoundError:
            return name


def is_empty_dir(path: Path) -> bool:
    """Whether the directory ``path`` has no entry. Reads only its first batch of entries
    (one ``getdents``), so it costs microseconds however many entries there are: cheap
    enough for the event loop. A directory that cannot be read counts as not empty."""
    try:
        with os.scandir(path) as entries:
            return next(entries, None) is None
    except OSError:
        return False


def empty_dir(path: Path) -> None:
    """Delete everything inside ``path`` (symlinks themselves, never their targets).

    No recursion and four descriptors at most, whatever the depth: a subdirectory is
    emptied by deleting its files and moving its own subdirectories up into ``path``.
    Nothing else may change the tree meanwhile (no sandbox runs on the box).
    """
    with _opened(os.open(path, DIR_FLAGS)) as top:
        names = itertools.count()
        while entries := _some_entries(top):
            for name, is_dir in entries:
                if not is_dir:
                    os.unlink(name, dir_fd=top)
                    continue
                with _opened(os.open(name, DIR_FLAGS, dir_fd=top)) as sub:
                    while children := _some_entries(sub):
                        for child, child_is_dir in children:
                            if child_is_dir:
                                os.rename(child, _unused_name(top, names), src_dir_fd=sub, dst_dir_fd=top)
                            else:
                                os.unlink(child, dir_fd=sub)
                os.rmdir(name, dir_fd=top)


def _first_files(dirfd: int, count: int) -> tuple[list[str], int]:
    """The first ``count`` names (sorted) of the regular files in a directory, and how many it has."""
    total = 0

    def names() -> Iterator[str]:
        nonlocal total
        with os.scandir(dirfd) as entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=False):
                    total += 1
                    yield entry.name

    first = heapq.nsmallest(count, names())
    return first, total


def copy_sparse(src: int, dst: int, size: int) -> None:
    """Copy the first ``size`` bytes of ``src`` into the empty ``dst``, data extents only:
    holes stay holes, so the copy allocates on the host what the file allocated in the box."""
    offset = 0
    while offset < size:
        try:
            offset = os.lseek(src, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
            break  # only a hole is left
        end = min(os.lseek(src, offset, os.SEEK_HOLE), size)
        while offset < end:
            chunk = os.pread(src, min(1024 * 1024, end - offset), offset)
            if not chunk:  # shorter than it was: the rest reads as a hole
                offset = size
                break
            os.pwrite(dst, chunk, offset)
            offset += len(chunk)
    os.ftruncate(dst, size)


def collect_outputs(source: Path, staging: Path, limits: Limits) -> tuple[list[OutputFile], int]:
    """Copy regular files at the top of ``source`` into ``staging`` (root's), each under a
    new random name; returns them and how many more were left out.

    Symlinks, directories, devices and FIFOs are ignored, never followed. The first
    ``limits.output_files`` files by name are taken. Each is charged its apparent size
    (what it will weigh in the Files API, holes included) against a budget of
    ``limits.output_total_bytes`` (at most ``limits.disk_bytes``); one larger than
    ``limits.output_file_bytes`` or than what remains of the budget is reported
    ``too_large`` and not copied. Copies are sparse (``copy_sparse``).
    """
    found: list[OutputFile] = []
    budget = min(limits.output_total_bytes, limits.disk_bytes)
    staging.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _opened(os.open(source, DIR_FLAGS)) as dirfd:
        chosen, total = _first_files(dirfd, limits.output_files)
        for name in chosen:
            try:
                fd = os.open(name, READ_FLAGS, dir_fd=dirfd)
            except OSError:  # swapped for a symlink or removed since the listing
                continue
            with _opened(fd):
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    continue
                if st.st_size > min(limits.output_file_bytes, budget):
                    found.append(OutputFile(display_name(name), st.st_size, None, too_large=True))
                    continue
                target = staging / uuid.uuid4().hex
                with _opened(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)) as dst:
                    copy_sparse(fd, dst, st.st_size)
                budget -= st.st_size
                found.append(OutputFile(display_name(name), st.st_size, target))
    return found, total - len(chosen)
