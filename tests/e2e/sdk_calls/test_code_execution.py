"""The code execution tool through the official SDK (2.x and 1.1), against real servers and sandboxes.

The built-in direct model runs the fenced blocks of the prompt, so each prompt below is
exactly the code that runs.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import anthropic
import pytest
from anthropic.types import (
    BashCodeExecutionResultBlock,
    BashCodeExecutionToolResultBlock,
    BashCodeExecutionToolResultError,
    Container,
    Message,
    ServerToolUseBlock,
    TextBlock,
    TextEditorCodeExecutionCreateResultBlock,
    TextEditorCodeExecutionStrReplaceResultBlock,
    TextEditorCodeExecutionToolResultBlock,
    TextEditorCodeExecutionToolResultError,
    TextEditorCodeExecutionViewResultBlock,
    ToolUseBlock,
)
from anthropic.types.beta import (
    BetaCodeExecutionResultBlock,
    BetaCodeExecutionToolResultBlock,
    BetaCodeExecutionToolResultError,
    BetaContainer,
    BetaMessage,
    BetaServerToolUseBlock,
)

from tests.e2e.servers import CONTAINER_TTL_S, EXEC_TIMEOUT_S, MAX_TOOL_ITERATIONS, OUTPUT_FILE_LIMIT

MODEL = "execbox-direct"
PYTHON_TOOL: Any = {"type": "code_execution_20250522", "name": "code_execution"}
BASH_TOOL: Any = {"type": "code_execution_20250825", "name": "code_execution"}


def sdk(url: str, api_key: str = "test") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key=api_key, max_retries=0, _strict_response_validation=True)


@pytest.fixture(scope="module")
def client(e2e_url: str) -> anthropic.Anthropic:
    return sdk(e2e_url)


def ask(client: anthropic.Anthropic, prompt: Any, tool: Any = BASH_TOOL, **fields: Any) -> Message:
    messages = fields.pop("messages", [{"role": "user", "content": prompt}])
    return client.messages.create(
        model=MODEL, max_tokens=2048, messages=messages, tools=[tool, *fields.pop("tools", [])], **fields
    )


def block(language: str, code: str) -> str:
    return f"```{language}\n{code}\n```\n"


@pytest.mark.filterwarnings("ignore:The model .* is deprecated")
def test_python_tool_with_the_beta_types(client: anthropic.Anthropic) -> None:
    response = client.beta.messages.create(
        model="claude-opus-4-20250514",  # the documentation's model: served offline by the direct model
        max_tokens=1024,
        betas=["code-execution-2025-05-22"],
        messages=[{"role": "user", "content": block("python", "import numpy as np\nprint(np.mean([1, 2, 3, 4]))")}],
        tools=[PYTHON_TOOL],
    )
    assert isinstance(response, BetaMessage)
    call, result, answer = response.content
    assert isinstance(call, BetaServerToolUseBlock) and call.name == "code_execution"
    assert call.id.startswith("srvtoolu_") and "np.mean" in call.input["code"]
    assert isinstance(result, BetaCodeExecutionToolResultBlock) and result.tool_use_id == call.id
    assert isinstance(result.content, BetaCodeExecutionResultBlock)
    assert (result.content.stdout, result.content.return_code) == ("2.5\n", 0)
    assert answer.type == "text" and answer.text == "2.5\n"
    assert isinstance(response.container, BetaContainer) and response.container.id.startswith("container_")
    assert response.container.expires_at > datetime.now(UTC)
    assert response.usage.server_tool_use is not None and response.usage.server_tool_use.web_search_requests == 0


def test_python_tool_results_and_errors(client: anthropic.Anthropic) -> None:
    failing = ask(client, block("python", "raise SystemExit('bad input')"), PYTHON_TOOL)
    assert failing.content[1].content.return_code == 1  # type: ignore[union-attr]
    assert "bad input" in failing.content[1].content.stderr  # type: ignore[union-attr]

    slow = client.beta.messages.create(
        model=MODEL,
        max_tokens=1024,
        betas=["code-execution-2025-05-22"],
        tools=[PYTHON_TOOL],
        messages=[{"role": "user", "content": block("python", f"import time\ntime.sleep({EXEC_TIMEOUT_S * 4})")}],
    )
    error = slow.content[1].content  # type: ignore[union-attr]
    assert isinstance(error, BetaCodeExecutionToolResultError)
    assert error.error_code == "execution_time_exceeded"


def test_bash_tool_with_python_bash_and_the_text_editor(client: anthropic.Anthropic) -> None:
    prompt = (
        block("python", "print(sum(range(10)))")
        + block("create notes.txt", "alpha\nbeta")
        + block("str_replace notes.txt", "beta\n=====\ngamma")
        + block("bash", "cat notes.txt; ls")
    )
    response = ask(client, prompt)
    assert isinstance(response, Message)
    calls = [b for b in response.content if isinstance(b, ServerToolUseBlock)]
    assert [c.name for c in calls] == [
        "bash_code_execution",
        "text_editor_code_execution",
        "text_editor_code_execution",
        "bash_code_execution",
    ]
    results = [
        b
        for b in response.content
        if isinstance(b, (BashCodeExecutionToolResultBlock, TextEditorCodeExecutionToolResultBlock))
    ]
    assert [r.tool_use_id for r in results] == [c.id for c in calls]
    assert isinstance(results[0].content, BashCodeExecutionResultBlock) and results[0].content.stdout == "45\n"
    assert isinstance(results[1].content, TextEditorCodeExecutionCreateResultBlock)
    assert results[1].content.is_file_update is False
    assert isinstance(results[2].content, TextEditorCodeExecutionStrReplaceResultBlock)
    assert results[3].content.stdout == "alpha\ngamma\nnotes.txt\n"  # type: ignore[union-attr]
    assert isinstance(response.content[-1], TextBlock) and response.stop_reason == "end_turn"

    viewed = ask(client, block("view notes.txt", ""), container=response.container.id)  # type: ignore[union-attr]
    view = viewed.content[1].content  # type: ignore[union-attr]
    assert isinstance(view, TextEditorCodeExecutionViewResultBlock)
    assert "gamma" in view.content and view.file_type == "text"


def test_bash_tool_error_variants(client: anthropic.Anthropic) -> None:
    prompt = (
        block("bash", f"sleep {EXEC_TIMEOUT_S * 4}")
        + block("view missing.txt", "")
        + block("str_replace missing-too.txt", "a\n=====\nb")
        + block("bash", f"head -c {OUTPUT_FILE_LIMIT * 2} /dev/zero > $OUTPUT_DIR/big.bin")
    )
    response = ask(client, prompt)
    errors = [b.content for b in response.content if b.type.endswith("_tool_result")]
    assert isinstance(errors[0], BashCodeExecutionToolResultError) and errors[0].error_code == "execution_time_exceeded"
    assert isinstance(errors[1], TextEditorCodeExecutionToolResultError) and errors[1].error_code == "file_not_found"
    assert errors[2].error_code == "file_not_found"  # type: ignore[union-attr]
    assert isinstance(errors[3], BashCodeExecutionToolResultError) and errors[3].error_code == "output_file_too_large"

    ask(client, block("create words.txt", "one two"), container=response.container.id)  # type: ignore[union-attr]
    not_there = ask(client, block("str_replace words.txt", "three\n=====\nfour"), container=response.container.id)  # type: ignore[union-attr]
    invalid = not_there.content[1].content  # type: ignore[union-attr]
    assert isinstance(invalid, TextEditorCodeExecutionToolResultError)
    assert invalid.error_code == "invalid_tool_input" and invalid.error_message


def test_a_container_is_reused_with_its_files(client: anthropic.Anthropic) -> None:
    first = ask(client, block("bash", "echo 1234 > /tmp/number.txt; echo 5678 > kept.txt"))
    assert isinstance(first.container, Container)
    second = ask(client, block("bash", "cat kept.txt"), container=first.container.id)
    assert second.container is not None and second.container.id == first.container.id
    assert second.content[1].content.stdout == "5678\n"  # type: ignore[union-attr]
    fresh = ask(client, block("bash", "cat kept.txt"))
    assert fresh.container is not None and fresh.container.id != first.container.id
    assert fresh.content[1].content.return_code != 0  # type: ignore[union-attr]


def test_unknown_and_foreign_containers_are_not_found(client: anthropic.Anthropic, keyed_url: str) -> None:
    with pytest.raises(anthropic.NotFoundError):
        ask(client, "hi", container="container_011CPR5CNjB747bTd36fQLFk")
    team_a, team_b = sdk(keyed_url, "key-a"), sdk(keyed_url, "key-b")
    mine = ask(team_a, block("bash", "echo mine"))
    assert mine.container is not None
    with pytest.raises(anthropic.NotFoundError):
        ask(team_b, "hi", container=mine.container.id)


def test_an_expired_container_is_not_found(expiring_url: str) -> None:
    client = sdk(expiring_url)
    first = ask(client, block("bash", "echo soon gone"))
    assert first.container is not None
    time.sleep(CONTAINER_TTL_S + 2)
    with pytest.raises(anthropic.NotFoundError) as failure:
        ask(client, block("bash", "echo again"), container={"id": first.container.id})
    # The shape agent frameworks recognise a dead container by (they retry without it).
    assert failure.value.body["error"]["message"].startswith("Container not found")  # type: ignore[index]
    assert "expired" in failure.value.body["error"]["message"]  # type: ignore[index]
    assert failure.value.response.headers["x-should-retry"] == "false"


def test_pause_turn_and_continuation(client: anthropic.Anthropic) -> None:
    prompt = "".join(block("bash", f"echo step {n}") for n in range(1, MAX_TOOL_ITERATIONS + 2))
    paused = ask(client, prompt)
    assert paused.stop_reason == "pause_turn"
    assert paused.container is not None
    messages: Any = [{"role": "user", "content": prompt}, {"role": "assistant", "content": paused.content}]
    resumed = ask(client, None, messages=messages, container=paused.container.id)
    # The turn paused right after a result: no call is left pending.
    assert [b.type for b in paused.content[-2:]] == ["server_tool_use", "bash_code_execution_tool_result"]
    assert resumed.stop_reason == "end_turn"
    # The response holds only the new blocks.
    assert [b.type for b in resumed.content] == ["server_tool_use", "bash_code_execution_tool_result", "text"]
    assert resumed.content[1].content.stdout == f"step {MAX_TOOL_ITERATIONS + 1}\n"  # type: ignore[union-attr]


def test_client_tools_between_code_executions(client: anthropic.Anthropic) -> None:
    lookup: Any = {"name": "lookup", "description": "Look up a word.", "input_schema": {"type": "object"}}
    prompt = block("bash", "echo before") + block("tool lookup", '{"word": "sandbox"}') + block("bash", "echo after")
    first = ask(client, prompt, tools=[lookup])
    assert first.stop_reason == "tool_use"
    call = first.content[-1]
    assert isinstance(call, ToolUseBlock) and call.id.startswith("toolu_")
    assert (call.name, call.input) == ("lookup", {"word": "sandbox"})
    assert first.container is not None

    messages: Any = [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "a box"}]},
    ]
    second = ask(client, None, messages=messages, tools=[lookup], container=first.container.id)
    assert [b.type for b in second.content] == ["server_tool_use", "bash_code_execution_tool_result", "text"]
    assert second.content[-1].text == "after\n"  # type: ignore[union-attr]


def test_container_upload_round_trip(client: anthropic.Anthropic) -> None:
    uploaded = client.beta.files.upload(file=("sales.csv", b"region,amount\nnorth,10\nsouth,32\n", "text/csv"))
    code = (
        "import os\nimport pandas as pd\n"
        "df = pd.read_csv('sales.csv')\n"
        "df['double'] = df['amount'] * 2\n"
        "df.to_csv(os.path.join(os.environ['OUTPUT_DIR'], 'doubled.csv'), index=False)\n"
        "print(df['amount'].sum())"
    )
    content: Any = [
        {"type": "text", "text": block("python", code)},
        {"type": "container_upload", "file_id": uploaded.id},
    ]
    response = ask(client, content)
    result = response.content[1].content  # type: ignore[union-attr]
    assert isinstance(result, BashCodeExecutionResultBlock) and result.stdout == "42\n", result
    (output,) = result.content
    assert output.type == "bash_code_execution_output"
    metadata = client.beta.files.retrieve_metadata(output.file_id)
    assert metadata.filename == "doubled.csv" and metadata.downloadable
    data = client.beta.files.download(output.file_id).read()
    assert data == b"region,amount,double\nnorth,10,20\nsouth,32,64\n"
