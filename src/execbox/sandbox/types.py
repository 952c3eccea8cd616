"""The sandbox layer's vocabulary: limits, boxes, execution requests and results.

The sandbox knows nothing of HTTP, models or the database. A *box* is the host-side
half of a container: a disk, cgroups and a uid. An execution runs one process tree in
fresh namespaces over that box and returns when the tree is gone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal, Protocol

# Paths as seen from inside the sandbox.
WORKSPACE = "/workspace"
OUTPUT_DIR = "/outputs"
SANDBOX_TMP = "/tmp"


@dataclass(frozen=True)
class Limits:
    """Resource limits applied to every box and execution."""

    memory_bytes: int = 1024**3
    cpus: float = 1.0
    pids: int = 256
    disk_bytes: int = 5 * 1024**3
    nofile: int = 1024  # open files per process, at most open_files // pids (see policy.nofile_per_process)
    open_files: int = 32768  # open files of one container in total
    timeout_s: float = 90.0
    output_bytes: int = 1024**2
    output_file_bytes: int = 100 * 1024**2
    output_files: int = 100
    output_total_bytes: int = 500 * 1024**2  # all output files of one execution, apparent sizes


@dataclass(frozen=True)
class Box:
    """A container's host-side resources. ``root`` holds its disk image and mount point."""

    id: str
    uid: int
    root: Path

    @property
    def image(self) -> Path:
        return self.root / "disk.img"

    @property
    def mount(self) -> Path:
        return self.root / "mnt"

    @property
    def workspace(self) -> Path:
        return self.mount / "workspace"

    @property
    def tmp(self) -> Path:
        return self.mount / "tmp"

    @property
    def outputs(self) -> Path:
        return self.mount / "outputs"


# Receives output as it is produced: ("stdout" | "stderr", bytes), within the output caps.
OutputCallback = Callable[[str, bytes], None]


@dataclass(frozen=True)
class ExecRequest:
    """One execution: Python source (``python``) or a bash command line (``bash``).

    ``session``: run Python in the box's live kernel, whose variables, imports and
    functions persist to its next session cell (the fork-server path; see
    ``forkengine.py``). Otherwise each execution starts from a fresh interpreter.
    """

    kind: Literal["python", "bash"]
    source: str
    timeout_s: float | None = None  # None: the configured default; capped by it otherwise
    session: bool = False
    on_output: OutputCallback | None = field(default=None, compare=False)
    # Session only: client tools the code may await as ``await name({...})`` (programmatic
    # tool calling); a cell that awaits one returns with ``tool_calls`` until resumed.
    tools: tuple[str, ...] = ()
    tool_wait_s: float = 270.0  # how long the code waits for a tool result before TimeoutError


@dataclass(frozen=True)
class ToolCall:
    """A client tool call made by code in a session cell; ``call`` numbers it in its kernel."""

    call: int
    name: str
    input: object


@dataclass(frozen=True)
class OutputFile:
    """A regular file found at the top level of ``$OUTPUT_DIR`` after an execution.

    ``staged`` is a host path outside the box that the caller owns and must delete;
    it is None when the file was larger than the per-file cap (``too_large``).
    """

    filename: str
    size_bytes: int
    staged: Path | None
    too_large: bool = False


@dataclass
class ExecResult:
    """``path`` says which engine ran it: ``fork`` (fork server) or ``bwrap`` (reference)."""

    stdout: str
    stderr: str
    return_code: int
    duration_s: float
    timed_out: bool = False
    oom_killed: bool = False
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    files: list[OutputFile] = field(default_factory=list)
    path: Literal["fork", "bwrap"] = "bwrap"
    # Set when the cell is not finished but waits for these client tool results (the other
    # fields are then empty): ``Engine.resume`` continues it.
    tool_calls: list[ToolCall] = field(default_factory=list)


@dataclass(frozen=True)
class EditRequest:
    """A text-editor operation (the 20250825 tool's ``text_editor_code_execution``)."""

    command: Literal["view", "create", "str_replace"]
    path: str
    file_text: str | None = None
    old_str: str | None = None
    new_str: str | None = None
    view_range: tuple[int, int] | None = None


@dataclass
class EditResult:
    """Outcome of an edit. ``error_code`` set means failure (``file_not_found``, ``invalid_tool_input``...)."""

    command: str
    error_code: str | None = None
    error_message: str | None = None
    # view
    content: str | None = None
    file_type: Literal["text", "image", "pdf"] | None = None
    num_lines: int | None = None
    start_line: int | None = None
    total_lines: int | None = None
    # create
    is_file_update: bool | None = None
    # str_replace
    old_start: int | None = None
    old_lines: int | None = None
    new_start: int | None = None
    new_lines: int | None = None
    lines: list[str] | None = None


class Engine(Protocol):
    """What the containers layer needs from a sandbox implementation.

    An engine runs as root on the host. ``create_box`` / ``open_box`` / ``destroy_box`` are
    idempotent. ``execute`` and ``edit`` must not be called concurrently on the same box
    (the containers layer serialises them); different boxes run in parallel.
    """

    limits: Limits

    async def start(self) -> None:
        """Prepare the host (once, at server start); a no-op when already done."""
    async def stop(self) -> None:
        """Release what ``start`` made (live kernels are checkpointed first)."""
    async def create_box(self, box: Box) -> None: ...
    async def open_box(self, box: Box) -> None:
        """Make an existing box usable again (remount its disk after a restart)."""
    async def close_box(self, box: Box) -> None:
        """Release a box's host resources (unmount) but keep its disk; used at shutdown."""
    async def destroy_box(self, box: Box) -> None:
        """Kill its processes and free cgroups, disk and files."""
    async def execute(self, box: Box, request: ExecRequest) -> ExecResult:
        """Run one execution; cancelling it kills the execution's processes."""
    async def resume(self, box: Box, results: dict[int, str]) -> ExecResult:
        """Continue a session cell that returned ``tool_calls``, with their results (by call)."""
    async def edit(self, box: Box, request: EditRequest) -> EditResult: ...
    def write_file(self, box: Box, relpath: str, data: bytes | BinaryIO) -> str:
        """Write ``data`` (bytes or a stream, copied to its end) into the workspace without
        following symlinks; returns the sanitized relative path."""
    def open_file(self, box: Box, relpath: str, max_bytes: int) -> BinaryIO:
        """The workspace's regular file at ``relpath``, open for reading (the caller closes
        it), reached without following symlinks; RequestTooLarge above ``max_bytes``."""
    def list_files(self, box: Box) -> list[tuple[str, int]]:
        """Regular files under the workspace as (relative path, size), sorted by path; a
        workspace of any size or depth gives a bounded list (the first 10,000, 64 deep)."""
