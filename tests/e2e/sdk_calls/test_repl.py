"""REPL state of code_execution_20260120 / 20260521 through the official SDK (2.x and 1.1).

Python cells of these versions run in the container's live interpreter, so what one
request defines, a later request reusing the container can use; 20250522 stays stateless.
"""

from __future__ import annotations

from typing import Any

import anthropic
import pytest
from anthropic.types import CodeExecutionResultBlock, CodeExecutionToolResultBlock, Message, ServerToolUseBlock

from tests.e2e.servers import EXEC_TIMEOUT_S

MODEL = "execbox-direct"
REPL_TOOLS: list[Any] = [
    {"type": "code_execution_20260120", "name": "code_execution"},
    {"type": "code_execution_20260521", "name": "code_execution"},
]


@pytest.fixture(scope="module")
def client(e2e_url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=e2e_url, api_key="test", max_retries=0, _strict_response_validation=True)


def python(code: str) -> str:
    return f"```python\n{code}\n```\n"


def cell(client: anthropic.Anthropic, tool: Any, code: str, container: str | None = None) -> tuple[Message, Any]:
    extra = {"container": container} if container else {}
    response = client.messages.create(
        model=MODEL, max_tokens=1024, tools=[tool], messages=[{"role": "user", "content": python(code)}], **extra
    )
    call, result = response.content[0], response.content[1]
    assert isinstance(call, ServerToolUseBlock) and call.name == "code_execution" and call.input == {"code": code + "\n"}
    assert isinstance(result, CodeExecutionToolResultBlock) and result.tool_use_id == call.id
    assert isinstance(result.content, CodeExecutionResultBlock)
    return response, result.content


@pytest.mark.parametrize("tool", REPL_TOOLS, ids=lambda tool: tool["type"])
def test_python_state_persists_across_requests(client: anthropic.Anthropic, tool: Any) -> None:
    first, defined = cell(client, tool, "import statistics\nsamples = [2, 4, 9]\ndef spread(v):\n    return max(v) - min(v)")
    assert (defined.return_code, defined.stderr) == (0, "")
    assert first.container is not None
    _, used = cell(client, tool, "print(statistics.mean(samples), spread(samples))", first.container.id)
    assert (used.stdout, used.return_code) == ("5 7\n", 0)


def test_the_older_python_tool_stays_stateless(client: anthropic.Anthropic) -> None:
    tool: Any = {"type": "code_execution_20250522", "name": "code_execution"}
    first, _ = cell(client, tool, "kept = 1")
    assert first.container is not None
    _, used = cell(client, tool, "print(kept)", first.container.id)
    assert used.return_code == 1 and "NameError" in used.stderr


def test_a_cell_over_the_limit_is_a_normal_result_and_the_session_restarts(client: anthropic.Anthropic) -> None:
    tool = REPL_TOOLS[1]
    first, _ = cell(client, tool, "kept = 1")
    assert first.container is not None
    _, slow = cell(client, tool, f"print('begun', flush=True)\nimport time\ntime.sleep({EXEC_TIMEOUT_S * 4})",
                   first.container.id)
    assert (slow.stdout, slow.return_code) == ("begun\n", 1)
    assert slow.stderr.endswith(f"detection_timeout: cell exceeded the {EXEC_TIMEOUT_S:g} s wall-clock limit\n")
    _, after = cell(client, tool, "print(kept)", first.container.id)
    assert after.stderr.startswith("[execbox] Python session was restarted") and "NameError" in after.stderr
