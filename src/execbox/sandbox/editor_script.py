"""The text editor, run inside the sandbox as the sandbox user (``python -I -S``, stdlib only).

Reads one request (JSON) from the file named on the command line and prints one result
object (JSON) on stdout; a failed operation is a result with ``error_code``, not an exit
status. Paths are relative to /workspace or absolute; the sandbox does the confining.
"""

import base64
import json
import os
import sys

WORKSPACE = "/workspace"
MAX_VIEW_BYTES = 4 * 1024 * 1024
BINARY_TYPES = {".png": "image", ".jpg": "image", ".jpeg": "image", ".gif": "image", ".webp": "image", ".pdf": "pdf"}


class ToolError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message):
    return ToolError("invalid_tool_input", message)


def resolve(path):
    if not isinstance(path, str) or not path.strip():
        raise invalid("`path` is required.")
    return os.path.normpath(os.path.join(WORKSPACE, path))


def read_text(path):
    if os.path.isdir(path):
        raise invalid(f"{path} is a directory.")
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise ToolError("file_not_found", f"File not found: {path}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid(f"{path} is not a UTF-8 text file.") from None


def write_text(path, text):
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)


def view_lines(text, view_range):
    lines = text.splitlines(keepends=True)
    total = len(lines)
    start, end = 1, total
    if view_range is not None:
        if (not isinstance(view_range, list) or len(view_range) != 2
                or not all(isinstance(n, int) and not isinstance(n, bool) for n in view_range)):
            raise invalid("`view_range` must be two integers: [start_line, end_line].")
        start, end = view_range
        if end == -1:
            end = total
        if start < 1 or start > max(total, 1):
            raise invalid(f"view_range start {start} is out of range: the file has {total} lines.")
        if end < start or end > total:
            raise invalid(f"view_range end {view_range[1]} is out of range: it must be between {start} "
                          f"and {total}, or -1 for the end of the file.")
    return "".join(lines[start - 1:end]), start, end - start + 1 if total else 0, total


def view(request):
    path = resolve(request.get("path"))
    if os.path.isdir(path):
        entries = []
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            depth = root[len(path):].count(os.sep)
            if depth >= 2:
                dirs[:] = []
            entries += [os.path.join(root, d) + "/" for d in dirs]
            entries += [os.path.join(root, f) for f in sorted(files) if not f.startswith(".")]
        content = "".join(e + "\n" for e in sorted(entries))
        return {"content": content, "file_type": "text", "num_lines": len(entries), "start_line": 1,
                "total_lines": len(entries)}
    kind = BINARY_TYPES.get(os.path.splitext(path)[1].lower())
    if kind:
        if not os.path.exists(path):
            raise ToolError("file_not_found", f"File not found: {path}")
        if os.path.getsize(path) > MAX_VIEW_BYTES:
            raise invalid(f"{path} is larger than {MAX_VIEW_BYTES} bytes and cannot be viewed.")
        with open(path, "rb") as fh:
            return {"content": base64.b64encode(fh.read()).decode(), "file_type": kind}
    content, start, count, total = view_lines(read_text(path), request.get("view_range"))
    if len(content.encode()) > MAX_VIEW_BYTES:
        raise invalid(f"The selection is larger than {MAX_VIEW_BYTES} bytes: view it in parts with view_range.")
    return {"content": content, "file_type": "text", "num_lines": count, "start_line": start, "total_lines": total}


def create(request):
    path = resolve(request.get("path"))
    text = request.get("file_text")
    if not isinstance(text, str):
        raise invalid("`file_text` is required for create.")
    if os.path.isdir(path):
        raise invalid(f"{path} is a directory.")
    existed = os.path.exists(path)
    write_text(path, text)
    return {"is_file_update": existed}


def region(text, start, end):
    """The full lines of ``text`` covering ``text[start:end]``, and the first one's number."""
    first = text.rfind("\n", 0, start) + 1
    last = text.find("\n", max(start, end - 1))
    if last == -1:
        last = len(text)
    return text[first:last].split("\n"), text.count("\n", 0, start) + 1


def str_replace(request):
    path = resolve(request.get("path"))
    old, new = request.get("old_str"), request.get("new_str")
    if not isinstance(old, str) or not old:
        raise invalid("`old_str` is required for str_replace and cannot be empty.")
    if new is None:
        new = ""
    if not isinstance(new, str):
        raise invalid("`new_str` must be a string.")
    text = read_text(path)
    count = text.count(old)
    if count == 0:
        raise invalid(f"No replacement was performed: `old_str` did not appear verbatim in {path}.")
    if count > 1:
        at, lines = -1, []
        for _ in range(count):
            at = text.find(old, at + 1)
            lines.append(str(text.count("\n", 0, at) + 1))
        raise invalid(f"No replacement was performed: `old_str` appears {count} times in {path} (lines "
                      f"{', '.join(lines)}); include more context to make it unique.")
    at = text.index(old)
    updated = text[:at] + new + text[at + len(old):]
    write_text(path, updated)
    old_region, line = region(text, at, at + len(old))
    new_region, _ = region(updated, at, at + len(new))
    return {"old_start": line, "old_lines": len(old_region), "new_start": line, "new_lines": len(new_region),
            "lines": ["-" + s for s in old_region] + ["+" + s for s in new_region]}


COMMANDS = {"view": view, "create": create, "str_replace": str_replace}


def main():
    with open(sys.argv[1], encoding="utf-8") as fh:
        request = json.load(fh)
    command = request.get("command")
    result = {"command": command}
    try:
        if command not in COMMANDS:
            raise invalid(f"Unknown command {command!r}: use one of {', '.join(COMMANDS)}.")
        result.update(COMMANDS[command](request))
    except ToolError as exc:
        result.update(error_code=exc.code, error_message=exc.message)
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        result.update(error_code="invalid_tool_input", error_message=f"{exc.strerror}{where}")
    sys.stdout.write(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
