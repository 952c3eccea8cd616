"""Result blocks: what a server tool call produced, in the wire shape of its tool.

Error codes follow the SDKs (``execution_time_exceeded``...) unless the ``legacy`` naming is
configured, which uses the older documents' ``code_execution_exceeded`` and ``container_expired``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from execbox.containers.manager import Execution
from execbox.protocol.messages import (
    BashCodeExecutionOutput,
    BashCodeExecutionResult,
    BashCodeExecutionToolResultBlock,
    BashCodeExecutionToolResultError,
    CodeExecutionOutput,
    CodeExecutionResult,
    CodeExecutionToolResultBlock,
    CodeExecutionToolResultError,
    CodeToolResultBlock,
    TextEditorCodeExecutionToolResultBlock,
    TextEditorCreateResult,
    TextEditorStrReplaceResult,
    TextEditorToolResultError,
    TextEditorViewResult,
)
from execbox.sandbox.types import EditResult

ErrorNames = Literal["sdk", "legacy"]
# Failure -> error code, per naming.
ERROR_CODES: dict[str, dict[str, str]] = {
    "sdk": {"timeout": "execution_time_exceeded", "expired": "unavailable"},
    "legacy": {"timeout": "code_execution_exceeded", "expired": "container_expired"},
}


def error_block(name: str, tool_use_id: str, error_code: str, message: str | None = None) -> CodeToolResultBlock:
    """The error form of the result block of tool ``name``."""
    if name == "code_execution":
        return CodeExecutionToolResultBlock(
            tool_use_id=tool_use_id, content=CodeExecutionToolResultError(error_code=error_code)
        )
    if name == "bash_code_execution":
        return BashCodeExecutionToolResultBlock(
            tool_use_id=tool_use_id, content=BashCodeExecutionToolResultError(error_code=error_code)
        )
    return TextEditorCodeExecutionToolResultBlock(
        tool_use_id=tool_use_id, content=TextEditorToolResultError(error_code=error_code, error_message=message)
    )


DETECTION_TIMEOUT = "detection_timeout: cell exceeded the {limit:g} s wall-clock limit"


def execution_block(
    name: str, tool_use_id: str, execution: Execution, names: ErrorNames, *, cell_limit_s: float | None = None
) -> CodeToolResultBlock:
    """The result of a ``code_execution`` or ``bash_code_execution`` call.

    A non-zero exit is a normal result. An output file over the size cap makes the bash
    result an ``output_file_too_large`` error; the Python tool has no such code, so there
    the file is just left out. A timeout is ``execution_time_exceeded``, except for a REPL
    cell (with its ``cell_limit_s``): that is a normal result keeping the output so far, return code
    1 and a ``detection_timeout`` line on stderr (the contract addendum's A1).
    """
    result = execution.result
    if result.timed_out and cell_limit_s is not None:
        stderr = "\n".join(
            line for line in result.stderr.splitlines() if not line.startswith("[execbox: execution timed out")
        )
        line = DETECTION_TIMEOUT.format(limit=cell_limit_s)
        result = replace(result, stderr=(stderr + "\n" if stderr else "") + line + "\n", return_code=1)
    elif result.timed_out:
        return error_block(name, tool_use_id, ERROR_CODES[names]["timeout"])
    stored = [generated.file.id for generated in execution.files if generated.file is not None]
    if name == "code_execution":
        return CodeExecutionToolResultBlock(
            tool_use_id=tool_use_id,
            content=CodeExecutionResult(
                stdout=result.stdout,
                stderr=result.stderr,
                return_code=result.return_code,
                content=[CodeExecutionOutput(file_id=file_id) for file_id in stored],
            ),
        )
    if any(generated.error_code for generated in execution.files):
        return error_block(name, tool_use_id, "output_file_too_large")
    return BashCodeExecutionToolResultBlock(
        tool_use_id=tool_use_id,
        content=BashCodeExecutionResult(
            stdout=result.stdout,
            stderr=result.stderr,
            return_code=result.return_code,
            content=[BashCodeExecutionOutput(file_id=file_id) for file_id in stored],
        ),
    )


def edit_block(tool_use_id: str, result: EditResult) -> TextEditorCodeExecutionToolResultBlock:
    """The result of a ``text_editor_code_execution`` call."""
    content: TextEditorViewResult | TextEditorCreateResult | TextEditorStrReplaceResult | TextEditorToolResultError
    if result.error_code:
        content = TextEditorToolResultError(error_code=result.error_code, error_message=result.error_message)
    elif result.command == "view":
        content = TextEditorViewResult(
            content=result.content or "",
            file_type=result.file_type or "text",
            num_lines=result.num_lines,
            start_line=result.start_line,
            total_lines=result.total_lines,
        )
    elif result.command == "create":
        content = TextEditorCreateResult(is_file_update=bool(result.is_file_update))
    else:
        content = TextEditorStrReplaceResult(
            old_start=result.old_start,
            old_lines=result.old_lines,
            new_start=result.new_start,
            new_lines=result.new_lines,
            lines=result.lines,
        )
    return TextEditorCodeExecutionToolResultBlock(tool_use_id=tool_use_id, content=content)
