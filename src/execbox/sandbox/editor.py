"""Text-editor operations, run inside the sandbox by ``editor_script.py``.

Running them in the sandbox (as the sandbox user, under the box's limits) rather than on
the host means the host never opens a path that sandboxed code controls. This module
prepares the run and turns the script's JSON answer back into an ``EditResult``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from functools import cache
from pathlib import Path

from execbox.sandbox.types import EditRequest, EditResult

SCRIPT_NAME = "editor.py"
REQUEST_NAME = "request.json"
# Room for a 4 MiB view (the script's cap) once JSON-encoded.
OUTPUT_BYTES = 32 * 1024 * 1024
_RESULT_FIELDS = {f.name for f in fields(EditResult)}


@cache
def script() -> bytes:
    return Path(__file__).with_name("editor_script.py").read_bytes()


def run_files(request: EditRequest) -> dict[str, bytes]:
    """The files the run needs under /run/execbox: the script and the request."""
    body = asdict(request)
    if request.view_range is not None:
        body["view_range"] = list(request.view_range)
    return {SCRIPT_NAME: script(), REQUEST_NAME: json.dumps(body).encode()}


def parse_result(command: str, stdout: str, stderr: str, return_code: int) -> EditResult:
    """The script's answer; an ``unavailable`` error if it did not give one."""
    try:
        data = json.loads(stdout) if return_code == 0 else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        detail = stderr.strip().splitlines()[-1:] or [f"exit status {return_code}"]
        return EditResult(command=command, error_code="unavailable",
                          error_message=f"The editor failed: {detail[0]}")
    data = {key: value for key, value in data.items() if key in _RESULT_FIELDS}
    data["command"] = command
    return EditResult(**data)
