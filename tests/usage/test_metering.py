"""Metering and quotas through a real server: the usage report matches exactly what the
test did, the CLI prints the same figures, and concurrency quotas answer 429 with retry-after."""

from __future__ import annotations

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anthropic
import httpx
import pytest

from tests.conftest import EXECBOX, Server, StartServer

TOOLS: Any = [{"type": "code_execution_20250825", "name": "code_execution"}]
KEYS = {"EXECBOX_API_KEYS": "a:key-a,b:key-b", "EXECBOX_FORK_SERVER": "false"}  # about metering, not the sandbox


def _client(server: Server, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key=key, max_retries=0, _strict_response_validation=True)


def _usage(server: Server, key: str, **params: str) -> dict[str, Any]:
    response = httpx.get(f"{server.url}/v1/usage", params=params, headers={"x-api-key": key})
    assert response.status_code == 200, response.text
    return response.json()


def test_the_usage_report_matches_what_was_done(start_server: StartServer) -> None:
    server = start_server(env=KEYS)
    client = _client(server, "key-a")
    tokens = 0
    # 1 request, 2 executions, 1 container
    two_runs = client.messages.create(
        model="execbox-direct", max_tokens=512, tools=TOOLS,
        messages=[{"role": "user", "content": "```python\nprint(1)\n```\n```bash\necho 2\n```"}],
    )
    tokens += two_runs.usage.input_tokens + two_runs.usage.output_tokens
    # a container created only to hold an attached file: no code runs, it still counts
    uploaded = client.beta.files.upload(file=("x.txt", b"x"))
    files_only = client.messages.create(
        model="execbox-direct", max_tokens=512, tools=TOOLS,
        messages=[{"role": "user", "content": [{"type": "container_upload", "file_id": uploaded.id},
                                               {"type": "text", "text": "Just hold this file."}]}],
    )
    assert files_only.container is not None
    tokens += files_only.usage.input_tokens + files_only.usage.output_tokens
    # a container through the containers API: 1 execution, deleted at once (billed the minimum)
    headers = {"x-api-key": "key-a"}
    container = httpx.post(f"{server.url}/v1/containers", headers=headers).json()["id"]
    assert httpx.post(f"{server.url}/v1/containers/{container}/exec", json={"code": "1"}, headers=headers).is_success
    assert httpx.delete(f"{server.url}/v1/containers/{container}", headers=headers).is_success
    # a batch of 2 requests: 2 executions, 2 containers
    batch = client.messages.batches.create(requests=[
        {"custom_id": f"r{i}", "params": {"model": "execbox-direct", "max_tokens": 256, "tools": TOOLS,
                                          "messages": [{"role": "user", "content": f"```python\nprint({i})\n```"}]}}
        for i in range(2)
    ])
    deadline = time.monotonic() + 60
    while client.messages.batches.retrieve(batch.id).processing_status != "ended":
        assert time.monotonic() < deadline
        time.sleep(0.3)
    for result in client.messages.batches.results(batch.id):
        usage = result.result.message.usage  # type: ignore[union-attr]
        assert usage.service_tier == "batch"
        tokens += usage.input_tokens + usage.output_tokens
    time.sleep(0.5)  # token records are written just after each response

    report = _usage(server, "key-a")
    (row,) = report["data"]
    assert row["workspace"] == "a"
    assert (row["executions"], row["containers"], row["batch_requests"]) == (5, 5, 2)
    assert row["input_tokens"] + row["output_tokens"] == tokens
    assert row["container_hours"] == pytest.approx(5 * 300 / 3600, abs=1e-6)  # all under the 5-minute minimum
    assert row["cost_usd"] == pytest.approx(row["container_hours"] * 0.05, abs=1e-6)
    assert row["execution_seconds"] > 0

    (by_model,) = [r for r in _usage(server, "key-a", group_by="model")["data"] if r["model"] == "execbox-direct"]
    assert by_model["input_tokens"] + by_model["output_tokens"] == tokens
    (by_day,) = _usage(server, "key-a", group_by="day")["data"]
    assert by_day["day"] == time.strftime("%Y-%m-%d", time.gmtime()) and by_day["executions"] == 5
    assert _usage(server, "key-a", ending_at="2020-01-01T00:00:00Z")["data"] == []
    assert _usage(server, "key-b")["data"] == []  # another workspace's usage is its own
    other = httpx.get(f"{server.url}/v1/usage", params={"workspace": "a"}, headers={"x-api-key": "key-b"})
    assert other.status_code == 404

    cli = subprocess.run(
        [str(EXECBOX), "usage", "--data-dir", str(server.data_dir), "--json", "--price-container-hour", "0.10"],
        capture_output=True, text=True, check=True,
    )
    (cli_row,) = json.loads(cli.stdout)
    assert (cli_row["executions"], cli_row["containers"], cli_row["batch_requests"]) == (5, 5, 2)
    assert cli_row["cost_usd"] == pytest.approx(2 * row["cost_usd"], abs=1e-5)
    table = subprocess.run([str(EXECBOX), "usage", "--data-dir", str(server.data_dir)],
                           capture_output=True, text=True, check=True).stdout
    assert table.splitlines()[0].split()[:3] == ["workspace", "executions", "exec"]
    assert table.splitlines()[1].split()[:2] == ["a", "5"] and "per container-hour" in table


def _exec(server: Server, key: str, container: str, seconds: float) -> httpx.Response:
    code = f"import time; time.sleep({seconds})"
    return httpx.post(f"{server.url}/v1/containers/{container}/exec", json={"code": code},
                      headers={"x-api-key": key}, timeout=60)


def test_executions_over_the_workspace_quota_queue_then_get_429(start_server: StartServer) -> None:
    server = start_server(env=KEYS, args=["--max-concurrent-executions", "1", "--execution-queue", "1"])
    new = [httpx.post(f"{server.url}/v1/containers", headers={"x-api-key": "key-a"}).json()["id"] for _ in range(4)]
    other = httpx.post(f"{server.url}/v1/containers", headers={"x-api-key": "key-b"}).json()["id"]
    with ThreadPoolExecutor(5) as pool:
        burst = [pool.submit(_exec, server, "key-a", c, 2) for c in new]
        time.sleep(0.5)
        elsewhere = pool.submit(_exec, server, "key-b", other, 0)
        responses = [f.result() for f in burst]
        assert elsewhere.result().status_code == 200  # other workspaces are not held up
    assert sorted(r.status_code for r in responses) == [200, 200, 429, 429]
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert refused.json()["error"]["details"]["error_code"] == "too_many_executions"


def test_the_host_cap_queues_executions_of_every_workspace(start_server: StartServer) -> None:
    server = start_server(env=KEYS, args=["--host-max-executions", "1"])
    a = httpx.post(f"{server.url}/v1/containers", headers={"x-api-key": "key-a"}).json()["id"]
    b = httpx.post(f"{server.url}/v1/containers", headers={"x-api-key": "key-b"}).json()["id"]
    started = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(_exec, server, "key-a", a, 1.5), pool.submit(_exec, server, "key-b", b, 1.5)]
        assert all(f.result().status_code == 200 for f in runs)
    assert time.monotonic() - started >= 3.0, "the two executions ran one after the other"
