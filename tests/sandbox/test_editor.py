"""The text editor (view, create, str_replace), run inside the sandbox."""

from __future__ import annotations

import base64
import os

import pytest

from execbox.sandbox.bwrap import BwrapEngine
from execbox.sandbox.types import Box, EditRequest, EditResult
from tests.sandbox.sandbox_support import read

pytestmark = pytest.mark.sandbox

CONFIG = '{\n  "name": "demo",\n  "debug": true,\n  "level": 3\n}\n'


@pytest.fixture
def edit(engine: BwrapEngine, box: Box):
    async def edit(command: str, path: str, **fields: object) -> EditResult:
        return await engine.edit(box, EditRequest(command, path, **fields))  # type: ignore[arg-type]

    return edit


async def test_create_then_update(engine: BwrapEngine, box: Box, edit) -> None:
    created = await edit("create", "config.json", file_text=CONFIG)
    assert (created.error_code, created.is_file_update) == (None, False)
    assert read(engine, box, "config.json") == CONFIG.encode()
    assert os.stat(box.workspace / "config.json").st_uid == box.uid
    updated = await edit("create", "/workspace/config.json", file_text="{}\n")
    assert updated.is_file_update is True
    assert read(engine, box, "config.json") == b"{}\n"


async def test_create_makes_parent_directories(engine: BwrapEngine, box: Box, edit) -> None:
    result = await edit("create", "src/pkg/mod.py", file_text="x = 1\n")
    assert result.error_code is None
    assert engine.list_files(box) == [("src/pkg/mod.py", 6)]


async def test_view_whole_file_and_ranges(edit) -> None:
    await edit("create", "config.json", file_text=CONFIG)
    whole = await edit("view", "config.json")
    assert (whole.content, whole.file_type, whole.num_lines, whole.start_line, whole.total_lines) == (
        CONFIG, "text", 5, 1, 5)
    part = await edit("view", "config.json", view_range=(2, 3))
    assert (part.content, part.num_lines, part.start_line) == ('  "name": "demo",\n  "debug": true,\n', 2, 2)
    tail = await edit("view", "config.json", view_range=(4, -1))
    assert (tail.content, tail.num_lines) == ('  "level": 3\n}\n', 2)


@pytest.mark.parametrize(("view_range", "message"), [((0, 2), "start 0"), ((3, 2), "end 2"), ((2, 99), "end 99"),
                                                     ((9, 9), "start 9")])
async def test_view_rejects_bad_ranges(edit, view_range: tuple[int, int], message: str) -> None:
    await edit("create", "config.json", file_text=CONFIG)
    result = await edit("view", "config.json", view_range=view_range)
    assert result.error_code == "invalid_tool_input"
    assert message in (result.error_message or "")


async def test_view_missing_file(edit) -> None:
    result = await edit("view", "nope.txt")
    assert result.error_code == "file_not_found"
    assert "/workspace/nope.txt" in (result.error_message or "")


async def test_view_directory_lists_it(edit) -> None:
    await edit("create", "a.txt", file_text="a")
    await edit("create", "sub/b.txt", file_text="b")
    result = await edit("view", "/workspace")
    assert result.content == "/workspace/a.txt\n/workspace/sub/\n/workspace/sub/b.txt\n"


async def test_view_image_is_base64(engine: BwrapEngine, box: Box, edit) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 16
    engine.write_file(box, "pic.png", png)
    result = await edit("view", "pic.png")
    assert result.file_type == "image"
    assert base64.b64decode(result.content or "") == png


async def test_str_replace_reports_the_changed_lines(engine: BwrapEngine, box: Box, edit) -> None:
    await edit("create", "config.json", file_text=CONFIG)
    result = await edit("str_replace", "config.json", old_str='"debug": true', new_str='"debug": false')
    assert result.error_code is None
    assert (result.old_start, result.old_lines, result.new_start, result.new_lines) == (3, 1, 3, 1)
    assert result.lines == ['-  "debug": true,', '+  "debug": false,']
    assert read(engine, box, "config.json") == CONFIG.replace("true", "false").encode()


async def test_str_replace_across_lines(edit) -> None:
    await edit("create", "f.txt", file_text="one\ntwo\nthree\n")
    result = await edit("str_replace", "f.txt", old_str="two\nthree", new_str="2")
    assert (result.old_start, result.old_lines, result.new_lines) == (2, 2, 1)
    assert result.lines == ["-two", "-three", "+2"]


async def test_str_replace_needs_a_unique_match(engine: BwrapEngine, box: Box, edit) -> None:
    await edit("create", "f.txt", file_text="x = 1\ny = 2\nx = 1\n")
    missing = await edit("str_replace", "f.txt", old_str="z = 3", new_str="")
    assert missing.error_code == "invalid_tool_input"
    assert "did not appear verbatim" in (missing.error_message or "")
    ambiguous = await edit("str_replace", "f.txt", old_str="x = 1", new_str="x = 9")
    assert ambiguous.error_code == "invalid_tool_input"
    assert "appears 2 times" in (ambiguous.error_message or "") and "lines 1, 3" in (ambiguous.error_message or "")
    assert read(engine, box, "f.txt") == b"x = 1\ny = 2\nx = 1\n"


async def test_str_replace_on_missing_file(edit) -> None:
    result = await edit("str_replace", "ghost.txt", old_str="a", new_str="b")
    assert result.error_code == "file_not_found"


async def test_edits_are_confined_by_the_sandbox(edit) -> None:
    result = await edit("create", "/usr/lib/evil.py", file_text="x")
    assert result.error_code == "invalid_tool_input"
    assert "Read-only file system" in (result.error_message or "")
    shadow = await edit("view", "/etc/shadow")
    assert shadow.error_code == "file_not_found"


async def test_missing_arguments_are_reported(edit) -> None:
    create = await edit("create", "f.txt")
    assert (create.error_code, create.error_message) == ("invalid_tool_input", "`file_text` is required for create.")
    replace = await edit("str_replace", "f.txt", new_str="b")
    assert replace.error_code == "invalid_tool_input"
