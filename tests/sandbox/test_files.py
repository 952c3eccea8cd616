"""Host-side file access to boxes: confined to the workspace, never fooled by symlinks."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest

from execbox.sandbox import fsutil
from execbox.sandbox.bwrap import BwrapEngine
from execbox.sandbox.errors import BadPath, FileBusy, FileTooLarge, NoSuchFile
from execbox.sandbox.types import Box, Limits
from tests.sandbox.sandbox_support import MakeBox, Run, read


@pytest.mark.parametrize(
    ("given", "clean"),
    [
        ("data.csv", "data.csv"),
        ("/workspace/data/in.csv", "data/in.csv"),
        ("../../x", "x"),
        ("a/../../b", "a/b"),
        ("/etc/passwd", "etc/passwd"),
        ("./a//b/", "a/b"),
    ],
)
def test_clean_relpath_strips_escapes(given: str, clean: str) -> None:
    assert fsutil.clean_relpath(given) == clean


@pytest.mark.parametrize("bad", ["", "..", "/", "/workspace", "../..", "a\0b"])
def test_clean_relpath_rejects_paths_naming_no_file(bad: str) -> None:
    with pytest.raises(BadPath):
        fsutil.clean_relpath(bad)


def test_write_read_and_list(tmp_path: Path) -> None:
    assert fsutil.write_file(tmp_path, "/workspace/sub/dir/a.txt", b"hello", os.getuid()) == "sub/dir/a.txt"
    fsutil.write_file(tmp_path, "b.bin", b"\0" * 10, os.getuid())
    with fsutil.open_file(tmp_path, "sub/dir/a.txt", 100) as file:
        assert file.read() == b"hello"
    assert fsutil.list_files(tmp_path) == [("b.bin", 10), ("sub/dir/a.txt", 5)]
    with pytest.raises(FileTooLarge):
        fsutil.open_file(tmp_path, "b.bin", 9)
    with pytest.raises(NoSuchFile):
        fsutil.open_file(tmp_path, "missing.txt", 100)


def test_traversal_in_written_names_stays_in_the_root(tmp_path: Path) -> None:
    root = tmp_path / "workspace"
    root.mkdir()
    for name in ("../../escaped", "/escaped_abs", "../sibling/x"):
        fsutil.write_file(root, name, b"x", os.getuid())
    assert sorted(p for p, _ in fsutil.list_files(root)) == ["escaped", "escaped_abs", "sibling/x"]
    assert sorted(os.listdir(tmp_path)) == ["workspace"]


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(NoSuchFile):
        fsutil.open_file(tmp_path, "pipe", 100)
    with pytest.raises(BadPath):
        fsutil.write_file(tmp_path, "pipe", b"x", os.getuid())


def _nest(root: Path, depth: int) -> None:
    """``depth`` directories ``d/d/...`` below ``root``, ``bottom.txt`` in the last (no path gets long)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    with open(os.open("bottom.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as bottom:
        bottom.write("x")
    os.close(fd)


def test_empty_dir_removes_a_tree_of_any_depth(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    os.symlink("/etc", tmp_path / "etc_link")
    _nest(tmp_path, 1500)  # deeper than Python's recursion limit
    fsutil.empty_dir(tmp_path)
    assert os.listdir(tmp_path) == []
    assert os.path.isdir("/etc")


def test_listing_is_bounded_in_depth_and_count(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"f{i}.txt").write_text("x")
    (tmp_path / "deep").mkdir()
    _nest(tmp_path / "deep", 1500)
    (tmp_path / "ok").mkdir()
    _nest(tmp_path / "ok", fsutil.MAX_LIST_DEPTH - 1)
    try:
        deepest = "ok/" + "d/" * (fsutil.MAX_LIST_DEPTH - 1) + "bottom.txt"
        assert fsutil.list_files(tmp_path) == [("f0.txt", 1), ("f1.txt", 1), ("f2.txt", 1), (deepest, 1)]
        assert fsutil.list_files(tmp_path, limit=2) == [("f0.txt", 1), ("f1.txt", 1)]
    finally:
        fsutil.empty_dir(tmp_path)


def test_listing_walks_in_path_order_and_stops_on_its_budget(tmp_path: Path) -> None:
    for name in ("b", "a.txt", "a/z.txt", "a/y/x.txt", "a-b.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        if not name.endswith("b"):
            (tmp_path / name).write_text("x")
    (tmp_path / "b" / "many").mkdir(parents=True)
    for i in range(500):
        (tmp_path / "b" / "many" / f"{i:03}").write_text("")
    listing = fsutil.list_files(tmp_path)
    assert [p for p, _ in listing][:4] == ["a-b.txt", "a.txt", "a/y/x.txt", "a/z.txt"]
    assert listing == sorted(listing) and len(listing) == 504
    assert [p for p, _ in fsutil.list_files(tmp_path, limit=3)] == ["a-b.txt", "a.txt", "a/y/x.txt"]
    # Out of entries inside b/many: what was read so far, nothing past it, still in order.
    cut = fsutil.list_files(tmp_path, max_entries=106)
    assert 4 <= len(cut) < 106 and cut == sorted(cut) and cut[:4] == listing[:4]
    assert fsutil.list_files(tmp_path, time_budget_s=0) == []  # nothing read after the deadline


def test_names_that_are_not_utf8_come_back_as_text(tmp_path: Path) -> None:
    for directory in ("ws", "out"):
        (tmp_path / directory).mkdir()
        with open(bytes(tmp_path / directory) + b"/caf\xe9\n.txt", "wb") as f:
            f.write(b"x")
    listed = fsutil.list_files(tmp_path / "ws")
    files, _ = fsutil.collect_outputs(tmp_path / "out", tmp_path / "staging", Limits())
    assert listed == [("caf\ufffd\n.txt", 1)]
    assert [f.filename for f in files] == ["caf\ufffd\n.txt"]
    json.dumps([listed, files[0].filename], ensure_ascii=False).encode()  # no lone surrogates


def test_output_collection_is_capped_in_count_and_bytes(tmp_path: Path) -> None:
    source, staging = tmp_path / "out", tmp_path / "staging"
    source.mkdir()
    for name in ("e", "c", "a", "d", "b"):
        (source / name).write_bytes(b"x" * 600)
    files, left_out = fsutil.collect_outputs(source, staging, Limits(output_files=3, output_total_bytes=1000))
    assert [(f.filename, f.size_bytes, f.too_large) for f in files] == [
        ("a", 600, False), ("b", 600, True), ("c", 600, True)  # past the 1000 bytes copied in total
    ]
    assert left_out == 2
    assert files[0].staged is not None and os.listdir(staging) == [files[0].staged.name]


@pytest.mark.sandbox
async def test_sparse_output_files_cost_the_host_what_they_cost_the_box(engine: BwrapEngine, box: Box,
                                                                         run: Run) -> None:
    # The attack: files that allocate nothing in the box but claim a large apparent size,
    # which a dense copy would write out in full on the host.
    limits = engine.limits
    count = 2 * limits.output_total_bytes // limits.output_file_bytes
    code = (
        "import os\n"
        f"for i in range({count}):\n"
        f"    open(f\"{{os.environ['OUTPUT_DIR']}}/s{{i:03}}\", 'wb').truncate({limits.output_file_bytes})\n"
        "with open(os.environ['OUTPUT_DIR'] + '/s000', 'r+b') as f:\n"
        "    f.seek(4096); f.write(b'data in the middle')\n"
    )
    result = await run(box, code)
    assert result.return_code == 0, result.stderr
    try:
        stored = [f for f in result.files if not f.too_large]
        # Charged at their apparent size against the per-execution budget: half are refused.
        assert sum(f.size_bytes for f in stored) <= limits.output_total_bytes
        assert len(stored) == limits.output_total_bytes // limits.output_file_bytes
        assert all(f.too_large and f.staged is None for f in result.files[len(stored):])
        # Copied sparsely: the same bytes, nearly nothing allocated on the host.
        first = stored[0].staged
        assert first is not None and first.stat().st_size == limits.output_file_bytes
        with first.open("rb") as f:
            f.seek(4090)
            assert f.read(30) == b"\0" * 6 + b"data in the middle" + b"\0" * 6
        allocated = sum(f.staged.stat().st_blocks * 512 for f in stored if f.staged)
        assert allocated <= 64 * 1024 * len(stored), allocated
    finally:
        for f in result.files:
            if f.staged:
                f.staged.unlink()


@pytest.mark.sandbox
async def test_written_files_belong_to_the_box_uid(engine: BwrapEngine, box: Box, run: Run) -> None:
    assert engine.write_file(box, "in/data.txt", b"42") == "in/data.txt"
    for path in (box.workspace / "in", box.workspace / "in" / "data.txt"):
        assert os.stat(path).st_uid == box.uid
    result = await run(box, "cat in/data.txt && echo more >> in/data.txt", kind="bash")
    assert result.stdout == "42" and result.return_code == 0
    assert read(engine, box, "/workspace/in/data.txt") == b"42more\n"
    assert engine.list_files(box) == [("in/data.txt", 7)]


@pytest.mark.sandbox
async def test_planted_symlinks_are_never_followed(engine: BwrapEngine, box: Box, run: Run, tmp_path: Path) -> None:
    victim_dir = Path(engine.state_dir.parent, "victim")  # reachable by path, like any host file
    victim_dir.mkdir(exist_ok=True)
    victim = victim_dir / "victim.txt"
    victim.write_text("host data")
    await run(box, f"ln -s {victim} file_link; ln -s {victim_dir} dir_link; ln -s /etc etc_link", kind="bash")
    for path in ("file_link", "dir_link/victim.txt", "dir_link/new.txt", "etc_link/owned"):
        with pytest.raises(BadPath):
            engine.write_file(box, path, b"overwritten")
        with pytest.raises((BadPath, NoSuchFile)):
            engine.open_file(box, path, 100)
    assert victim.read_text() == "host data"
    assert sorted(os.listdir(victim_dir)) == ["victim.txt"]
    assert not Path("/etc/owned").exists()
    assert engine.list_files(box) == []  # symlinks are not files, and are not walked into
    shutil.rmtree(victim_dir)


@pytest.mark.sandbox
async def test_outputs_return_regular_files_only(engine: BwrapEngine, box: Box, make_box: MakeBox,
                                                 run: Run) -> None:
    neighbour = await make_box()
    engine.write_file(neighbour, "secret.txt", b"neighbour's secret")
    code = (
        "import os\nout = os.environ['OUTPUT_DIR']\n"
        "os.symlink('/etc/passwd', out + '/passwd')\n"
        f"os.symlink('{neighbour.workspace}/secret.txt', out + '/secret.txt')\n"
        "os.symlink('/workspace', out + '/workspace')\n"
        "os.mkfifo(out + '/fifo')\n"
        "os.mkdir(out + '/sub'); open(out + '/sub/nested.txt', 'w').write('nested')\n"
        "open(out + '/result.txt', 'w').write('ok')\n"
    )
    result = await run(box, code)
    assert result.return_code == 0, result.stderr
    [output] = result.files
    assert output.filename == "result.txt"
    assert output.staged is not None and output.staged.read_bytes() == b"ok"
    output.staged.unlink()


@pytest.mark.sandbox
async def test_box_cannot_read_a_neighbour_by_its_host_path(engine: BwrapEngine, box: Box, make_box: MakeBox,
                                                           run: Run) -> None:
    neighbour = await make_box()
    engine.write_file(neighbour, "secret.txt", b"neighbour's secret")
    result = await run(box, f"cat {neighbour.workspace}/secret.txt {neighbour.image}", kind="bash")
    assert "secret" not in result.stdout
    assert result.stderr.count("No such file or directory") == 2


@pytest.mark.sandbox
async def test_deep_trees_left_by_code_neither_break_the_box_nor_its_listing(engine: BwrapEngine, box: Box,
                                                                              run: Run) -> None:
    code = (
        "import os\n"
        "for top in ('/outputs', '/workspace/deep'):\n"
        "    os.makedirs(top, exist_ok=True)\n"
        "    os.chdir(top)\n"
        "    for _ in range(3000):\n        os.mkdir('d')\n        os.chdir('d')\n"
        "    open('bottom.txt', 'w').write('x')\n"
        "open('/workspace/top.txt', 'w').write('x')\n"
    )
    result = await run(box, code)
    assert result.return_code == 0, result.stderr
    assert engine.list_files(box) == [("top.txt", 1)]
    again = await run(box, "ls -A $OUTPUT_DIR | wc -l", kind="bash")
    assert again.stdout == "0\n"


@pytest.mark.sandbox
async def test_a_file_leased_by_a_running_execution_is_busy(engine: BwrapEngine, box: Box, run: Run) -> None:
    engine.write_file(box, "shared.txt", b"data")
    code = (
        "import fcntl, os, time\n"
        "fd = os.open('shared.txt', os.O_RDONLY)\n"
        "fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)\n"  # opening it elsewhere now blocks, or fails
        "time.sleep(30)\n"
    )
    running = asyncio.create_task(run(box, code, timeout_s=30))
    with pytest.raises(FileBusy, match="held by a running execution"):
        for _ in range(1000):  # readable until the lease is taken
            assert read(engine, box, "shared.txt") == b"data"
            await asyncio.sleep(0.01)
    await running  # the kernel breaks the lease: SIGIO ends the holder
    assert read(engine, box, "shared.txt") == b"data"


def test_an_empty_outputs_directory_is_seen_without_a_walk(tmp_path: Path) -> None:
    assert fsutil.is_empty_dir(tmp_path)
    for n in range(3000):  # more entries than one getdents batch holds
        (tmp_path / f"f{n}").touch()
    assert not fsutil.is_empty_dir(tmp_path)
    assert not fsutil.is_empty_dir(tmp_path / "missing")
