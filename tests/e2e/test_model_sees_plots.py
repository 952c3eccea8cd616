"""The model sees the plots its code made: PNGs written to $OUTPUT_DIR go back to the
upstream model as images in the tool result, while the client's response keeps Anthropic's
shape (file ids only). Real server, real sandboxes, scripted fake upstreams."""

from __future__ import annotations

import base64
import struct
from typing import Any

import anthropic
import pytest

from tests.backends.fakes import FakeUpstream, openai_reply
from tests.conftest import StartServer
from tests.e2e.test_upstream_models import (
    CALLER_KEY,
    AnthropicUpstream,
    OpenAIUpstream,
    Upstream,
    ask,
    upstream_server,  # noqa: F401  (a fixture)
)

PLOT = (
    "import os, matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
    "plt.figure(figsize=(3, 2), dpi=50)\nplt.plot([1, 2, 3], [3, 1, 2])\n"
    "plt.savefig(os.path.join(os.environ['OUTPUT_DIR'], 'line.png'))\n"
    "open(os.path.join(os.environ['OUTPUT_DIR'], 'data.csv'), 'w').write('a\\n1\\n')\n"
    "print('drawn')"
)


@pytest.fixture
def flavour(upstream_server: Upstream) -> Upstream:  # noqa: F811  (the imported fixture)
    """Each backend's fake upstream (and its server), its record of requests cleared."""
    upstream_server.requests.clear()
    return upstream_server


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def images_sent(upstream: Upstream, body: dict[str, Any]) -> list[tuple[str, bytes]]:
    """(media type, bytes) of every image in the request's history."""
    found = []
    if isinstance(upstream, OpenAIUpstream):
        for message in body["messages"]:
            if message["role"] == "user" and isinstance(message["content"], list):
                for part in message["content"]:
                    if part["type"] == "image_url":
                        header, data = part["image_url"]["url"].split(",", 1)
                        found.append((header.removeprefix("data:").removesuffix(";base64"), base64.b64decode(data)))
    else:
        for message in body["messages"]:
            for block in message["content"]:
                if block["type"] == "tool_result" and isinstance(block["content"], list):
                    for part in block["content"]:
                        if part["type"] == "image":
                            found.append((part["source"]["media_type"], base64.b64decode(part["source"]["data"])))
    return found


def test_the_model_gets_the_png_and_the_client_gets_file_ids(flavour: Upstream) -> None:
    upstream = flavour
    upstream.add(upstream.tool_call("bash_code_execution", {"command": f"python3 - <<'EOF'\n{PLOT}\nEOF"}),
                 upstream.text("A zigzag line."))
    response = ask(upstream, "Draw a line.")

    call, result, answer = response.content
    assert result.type == "bash_code_execution_tool_result"
    files = [output.file_id for output in result.content.content]
    assert len(files) == 2 and result.content.stdout == "drawn\n"  # the PNG and the CSV, as ids
    assert answer.text == "A zigzag line."
    png = next(f for f in files if upstream.client.beta.files.retrieve_metadata(f).filename == "line.png")
    drawn = upstream.client.beta.files.download(png).read()

    first, second = upstream.requests
    assert images_sent(upstream, first.body) == []
    [(media_type, data)] = images_sent(upstream, second.body)  # the CSV is not an image
    assert media_type == "image/png" and data == drawn and png_size(data) == (150, 100)
    ((result_id, text),) = upstream.tool_results(second.body)
    if isinstance(upstream, AnthropicUpstream):
        assert text[0] == {"type": "text", "text": "stdout:\ndrawn\n\nreturn_code: 0"}
    else:
        assert text == "stdout:\ndrawn\n\nreturn_code: 0"
        # The image follows the tool message in a user message that names the call.
        messages = second.body["messages"]
        tool_at = next(i for i, m in enumerate(messages) if m["role"] == "tool")
        follow = messages[tool_at + 1]
        assert follow["role"] == "user" and follow["content"][0] == {
            "type": "text", "text": f"Images produced by tool call {result_id}:"
        }


def test_switched_off_the_model_gets_text_only(start_server: StartServer) -> None:
    with FakeUpstream() as fake:
        upstream = OpenAIUpstream(fake)
        server = start_server(env={
            "EXECBOX_OPENAI_BASE_URL": f"{fake.base_url}/v1", "EXECBOX_OPENAI_MODELS": upstream.model,
            "EXECBOX_TOOL_RESULT_IMAGES": "false", "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1",
        })
        upstream.client = anthropic.Anthropic(base_url=server.url, api_key=CALLER_KEY, max_retries=0)
        upstream.add(upstream.tool_call("code_execution", {"code": PLOT}), openai_reply("ok"))
        response = ask(upstream, "Draw.", tool={"type": "code_execution_20250522", "name": "code_execution"})
        assert len(response.content[1].content.content) == 2
        assert images_sent(upstream, fake.requests[1].body) == []
        assert all(isinstance(m["content"], str) or m["content"] is None for m in fake.requests[1].body["messages"])
        server.stop()


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
def test_images_of_earlier_results_in_the_history(kind: str) -> None:
    """The conversion alone: a result block carrying images becomes the upstream's image form."""
    from execbox.backends._convert import client_tool_history
    from execbox.backends.base import ModelRequest
    from execbox.backends.openai import chat_messages

    history = [
        {"role": "user", "content": "plot"},
        {"role": "assistant", "content": [
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "code_execution", "input": {"code": "..."}},
            {"type": "code_execution_tool_result", "tool_use_id": "srvtoolu_1", "content": {
                "type": "code_execution_result", "stdout": "", "stderr": "", "return_code": 0,
                "content": [{"type": "code_execution_output", "file_id": "file_1"}],
                "images": [{"media_type": "image/png", "data": "iVBORw0K"}]}},
        ]},
    ]
    if kind == "anthropic":
        result = client_tool_history(history)[2]["content"][0]
        assert result["content"] == [
            {"type": "text", "text": "return_code: 0"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}},
        ]
    else:
        messages = chat_messages(ModelRequest(model="m", messages=history, max_tokens=1))
        assert messages[-2] == {"role": "tool", "tool_call_id": "srvtoolu_1", "content": "return_code: 0"}
        assert messages[-1] == {"role": "user", "content": [
            {"type": "text", "text": "Images produced by tool call srvtoolu_1:"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
        ]}
