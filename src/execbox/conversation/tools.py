"""The code execution tool as the model sees it, and its calls as sandbox requests.

The model sees each server tool under its own name and input schema: ``code_execution``
``{code}`` for 20250522; ``bash_code_execution`` ``{command}`` and
``text_editor_code_execution`` ``{command, path, ...}`` for 20250825; all three for
20260120 and 20260521, whose ``code_execution`` cells run in the container's live Python
interpreter (variables, imports and functions persist between calls and requests).
"""

from __future__ import annotations

from typing import Any

from execbox.backends.base import ToolSpec
from execbox.protocol.messages import CELL_LIMIT_TOOL, PYTHON_TOOL, REPL_TOOLS
from execbox.sandbox.types import OUTPUT_DIR, WORKSPACE, EditRequest, ExecRequest

LIBRARIES = (
    "pandas, numpy, scipy, scikit-learn, statsmodels, matplotlib, seaborn, pyarrow, openpyxl, xlrd, "
    "pillow, sympy, mpmath, tqdm, python-dateutil, pytz, joblib"
)
_ENVIRONMENT = (
    f"The container is a Linux sandbox with Python 3.11 that persists across calls: files on disk stay "
    f"for later calls, but each call starts a new process. The working directory is {WORKSPACE}; files "
    f"the user uploads are placed there under their filename. To give files back to the user, save "
    f"them in the directory named by $OUTPUT_DIR ({OUTPUT_DIR}), which is empty at the start of each "
    f"call; files elsewhere stay in the container. Preinstalled Python libraries: {LIBRARIES}. There is "
    f"no network access: installing packages or downloading data does not work."
)

CODE_EXECUTION = ToolSpec(
    name="code_execution",
    description="Run Python code and get its stdout, stderr and return code. " + _ENVIRONMENT,
    input_schema={
        "type": "object",
        "properties": {"code": {"type": "string", "description": "The Python code to run."}},
        "required": ["code"],
    },
    server=True,
)

_REPL = (
    "Run Python code in this container's persistent Python interpreter and get its stdout, stderr and return "
    "code. Variables, imports, functions and open figures from earlier calls stay defined for later calls (and "
    "later requests that reuse the container), like cells of a notebook; an exception ends only its own call. "
    "Top-level `await` works. If the interpreter has to restart, stderr says so and earlier variables are gone "
    "(files stay). "
)


def repl_code_execution(version: str, cell_limit_s: float) -> ToolSpec:
    """``code_execution`` of the REPL versions (20260521's description states its cell limit)."""
    limit = ""
    if version == CELL_LIMIT_TOOL:
        limit = (
            f"Each call may run for at most {cell_limit_s:g} seconds of wall-clock time; a call over it stops with "
            f"return code 1 and a `detection_timeout` line on stderr, and the interpreter restarts. "
        )
    return ToolSpec(
        name="code_execution",
        description=_REPL + limit + _ENVIRONMENT.replace("but each call starts a new process", "and so does Python "
                                                         "state (bash calls each start a new shell)"),
        input_schema=CODE_EXECUTION.input_schema,
        server=True,
    )


BASH_CODE_EXECUTION = ToolSpec(
    name="bash_code_execution",
    description="Run a bash command and get its stdout, stderr and return code; Python is `python3`. " + _ENVIRONMENT,
    input_schema={
        "type": "object",
        "properties": {"command": {"type": "string", "description": "The bash command to run."}},
        "required": ["command"],
    },
    server=True,
)

TEXT_EDITOR_CODE_EXECUTION = ToolSpec(
    name="text_editor_code_execution",
    description=(
        f"View, create and edit text files in the code execution container (relative paths are under "
        f"{WORKSPACE}). `view` shows a file with line numbers (`view_range`: [first, last] line, -1 for "
        f"the end); `create` writes `file_text` to `path`, replacing any file there; `str_replace` "
        f"replaces `old_str`, which must occur exactly once, with `new_str`."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "command": {"type": "string", "enum": ["view", "create", "str_replace"]},
            "path": {"type": "string", "description": "The file's path."},
            "file_text": {"type": "string", "description": "`create`: the file's content."},
            "old_str": {"type": "string", "description": "`str_replace`: the text to replace."},
            "new_str": {"type": "string", "description": "`str_replace`: the replacement."},
            "view_range": {
                "type": "array",
                "items": {"type": "integer"},
                "minItems": 2,
                "maxItems": 2,
                "description": "`view`: the first and last line to show.",
            },
        },
        "required": ["command", "path"],
    },
    server=True,
)

SERVER_TOOLS = {tool.name: tool for tool in (CODE_EXECUTION, BASH_CODE_EXECUTION, TEXT_EDITOR_CODE_EXECUTION)}


def server_tools(version: str, cell_limit_s: float = 90.0) -> list[ToolSpec]:
    """The tools the model is offered for a code execution tool ``version``."""
    if version == PYTHON_TOOL:
        return [CODE_EXECUTION]
    if version in REPL_TOOLS:
        return [repl_code_execution(version, cell_limit_s), BASH_CODE_EXECUTION, TEXT_EDITOR_CODE_EXECUTION]
    return [BASH_CODE_EXECUTION, TEXT_EDITOR_CODE_EXECUTION]


class InvalidToolInput(ValueError):
    """The model called a server tool with input that does not fit its schema."""


def sandbox_request(name: str, tool_input: dict[str, Any], version: str | None = None) -> ExecRequest | EditRequest:
    """The sandbox request a server tool call asks for (InvalidToolInput if its input is wrong).
    Under the REPL versions, Python runs in the container's live interpreter (``session``)."""
    if name == "code_execution":
        return ExecRequest(kind="python", source=_string(tool_input, "code"), session=version in REPL_TOOLS)
    if name == "bash_code_execution":
        return ExecRequest(kind="bash", source=_string(tool_input, "command"))
    command = tool_input.get("command")
    path = _string(tool_input, "path")
    if command == "view":
        return EditRequest(command="view", path=path, view_range=_view_range(tool_input.get("view_range")))
    if command == "create":
        return EditRequest(command="create", path=path, file_text=_string(tool_input, "file_text"))
    if command == "str_replace":
        new_str = tool_input.get("new_str", "")
        if not isinstance(new_str, str):
            raise InvalidToolInput("`new_str` must be a string")
        return EditRequest(command="str_replace", path=path, old_str=_string(tool_input, "old_str"), new_str=new_str)
    raise InvalidToolInput(f"`command` must be view, create or str_replace, not {command!r}")


def _string(tool_input: dict[str, Any], key: str) -> str:
    value = tool_input.get(key)
    if not isinstance(value, str):
        raise InvalidToolInput(f"`{key}` must be a string")
    return value


def _view_range(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(n, int) and not isinstance(n, bool) for n in value)
    ):
        raise InvalidToolInput("`view_range` must be two line numbers")
    return value[0], value[1]
