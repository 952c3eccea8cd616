"""Host-side file access to boxes: confined to the workspace, never fooled by symlinks."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from execbox.errors import InvalidRequest, NotFound, RequestTooLarge
from execbox.sandbox import fsutil
from execbox.sandbox.bwrap import BwrapEngine
from execbox.sandbox.types import Box

from tests.sandbox.sandbox_support import MakeBox, Run


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
    with pytest.raises(InvalidRequest):
        fsutil.clean_relpath(bad)


def test_write_read_and_list(tmp_path: Path) -> None:
    assert fsutil.write_file(tmp_path, "/workspace/sub/dir/a.txt", b"hello", os.getuid()) == "sub/dir/a.txt"
    fsutil.write_file(tmp_path, "b.bin", b"\0" * 10, os.getuid())
    assert fsutil.read_file(tmp_path, "sub/dir/a.txt", 100) == b"hello"
    assert fsutil.list_files(tmp_path) == [("b.bin", 10), ("sub/dir/a.txt", 5)]
    with pytest.raises(RequestTooLarge):
        fsutil.read_file(tmp_path, "b.bin", 9)
    with pytest.raises(NotFound):
        fsutil.read_file(tmp_path, "missing.txt", 100)


def test_traversal_in_written_names_stays_in_the_root(tmp_path: Path) -> None:
    root = tmp_path / "workspace"
    root.mkdir()
    for name in ("../../escaped", "/escaped_abs", "../sibling/x"):
        fsutil.write_file(root, name, b"x", os.getuid())
    assert sorted(p for p, _ in fsutil.list_files(root)) == ["escaped", "escaped_abs", "sibling/x"]
    assert sorted(os.listdir(tmp_path)) == ["workspace"]


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(NotFound):
        fsutil.read_file(tmp_path, "pipe", 100)
    with pytest.raises(InvalidRequest):
        fsutil.write_file(tmp_path, "pipe", b"x", os.getuid())


@pytest.mark.sandbox
async def test_written_files_belong_to_the_box_uid(engine: BwrapEngine, box: Box, run: Run) -> None:
    assert engine.write_file(box, "in/data.txt", b"42") == "in/data.txt"
    for path in (box.workspace / "in", box.workspace / "in" / "data.txt"):
        assert os.stat(path).st_uid == box.uid
    result = await run(box, "cat in/data.txt && echo more >> in/data.txt", kind="bash")
    assert result.stdout == "42" and result.return_code == 0
    assert engine.read_file(box, "/workspace/in/data.txt", 100) == b"42more\n"
    assert engine.list_files(box) == [("in/data.txt", 7)]


@pytest.mark.sandbox
async def test_planted_symlinks_are_never_followed(engine: BwrapEngine, box: Box, run: Run, tmp_path: Path) -> None:
    victim_dir = Path(engine.state_dir.parent, "victim")  # reachable by path, like any host file
    victim_dir.mkdir(exist_ok=True)
    victim = victim_dir / "victim.txt"
    victim.write_text("host data")
    await run(box, f"ln -s {victim} file_link; ln -s {victim_dir} dir_link; ln -s /etc etc_link", kind="bash")
    for path in ("file_link", "dir_link/victim.txt", "dir_link/new.txt", "etc_link/owned"):
        with pytest.raises(InvalidRequest):
            engine.write_file(box, path, b"overwritten")
        with pytest.raises((InvalidRequest, NotFound)):
            engine.read_file(box, path, 100)
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
    shutil.rmtree(output.staged.parent)


@pytest.mark.sandbox
async def test_box_cannot_read_a_neighbour_by_its_host_path(engine: BwrapEngine, box: Box, make_box: MakeBox,
                                                           run: Run) -> None:
    neighbour = await make_box()
    engine.write_file(neighbour, "secret.txt", b"neighbour's secret")
    result = await run(box, f"cat {neighbour.workspace}/secret.txt {neighbour.image}", kind="bash")
    assert "secret" not in result.stdout
    assert result.stderr.count("No such file or directory") == 2
