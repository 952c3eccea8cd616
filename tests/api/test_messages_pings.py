"""Streams keep the connection alive with ``ping`` events while code runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from execbox.api import sse
from tests.api.inprocess import app_client


async def test_pings_flow_while_code_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sse, "PING_INTERVAL", 0.05)
    body = {
        "model": "execbox-direct",
        "max_tokens": 256,
        "stream": True,
        "messages": [{"role": "user", "content": "```bash\nsleep 0.5; echo awake\n```"}],
        "tools": [{"type": "code_execution_20250825", "name": "code_execution"}],
    }
    async with app_client(tmp_path) as (client, _):
        response = await client.post("/v1/messages", json=body)
    names = [line.removeprefix("event: ") for line in response.text.splitlines() if line.startswith("event: ")]
    call_done = names.index("content_block_stop")
    result = names.index("content_block_start", call_done)
    assert "ping" in names[call_done:result]
    assert names[-1] == "message_stop"
