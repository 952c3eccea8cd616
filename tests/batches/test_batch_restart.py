"""A server killed (SIGKILL) in the middle of a batch: after a restart on the same data
directory the batch completes, every request has exactly one result, and none ran twice.

The requests share one container and each appends its ``custom_id`` to a file there before
sleeping, so the file records every run of every request.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.conftest import Server, StartServer

API = {"anthropic-version": "2023-06-01"}  # the Anthropic API routes require it

TOOLS = [{"type": "code_execution_20250825", "name": "code_execution"}]
REFERENCE_PATH = {"EXECBOX_FORK_SERVER": "false"}  # about batches, not the sandbox: starts faster


def _request(custom_id: str, container: str) -> dict[str, Any]:
    code = f"open('/workspace/runs.txt', 'a').write('{custom_id}\\n')\nimport time; time.sleep(1.5)\nprint('ran')"
    return {
        "custom_id": custom_id,
        "params": {"model": "execbox-direct", "max_tokens": 256, "tools": TOOLS, "container": container,
                   "messages": [{"role": "user", "content": f"```python\n{code}\n```"}]},
    }


def _runs(server: Server, container: str) -> list[str]:
    response = httpx.get(f"{server.url}/v1/containers/{container}/files/runs.txt", timeout=10)
    return response.text.split() if response.status_code == 200 else []


def test_a_batch_survives_sigkill_without_running_a_request_twice(start_server: StartServer) -> None:
    first = start_server(env=REFERENCE_PATH, args=["--batch-workers", "1"])
    container = httpx.post(f"{first.url}/v1/containers", timeout=30).json()["id"]
    ids = [f"r{i}" for i in range(5)]
    batch = httpx.post(
        f"{first.url}/v1/messages/batches", json={"requests": [_request(i, container) for i in ids]}, timeout=30, headers=API
    ).json()

    deadline = time.monotonic() + 60
    while len(_runs(first, container)) < 2:  # r0 done, r1 running (sleeping)
        assert time.monotonic() < deadline, first.log_tail()
        time.sleep(0.1)
    first.process.kill()
    first.process.wait()

    second = start_server(env=REFERENCE_PATH, args=["--batch-workers", "1"], data_dir=first.data_dir)
    state, results = _ended(second, batch["id"], within_s=90)

    assert sorted(results) == ids, "every request has exactly one result"
    runs = _runs(second, container)
    assert sorted(runs) == sorted(set(runs)), f"a request ran twice: {runs}"
    interrupted = [i for i, r in results.items() if r["type"] == "errored"]
    assert len(interrupted) == 1 and interrupted[0] in runs, results
    assert "not run again" in results[interrupted[0]]["error"]["error"]["message"]
    succeeded = [i for i, r in results.items() if r["type"] == "succeeded"]
    assert sorted(succeeded + interrupted) == ids and set(succeeded) <= set(runs)
    counts = state["request_counts"]
    assert counts == {"processing": 0, "succeeded": 4, "errored": 1, "canceled": 0, "expired": 0}
    assert "interrupted by the last stop" in second.log_tail(400)


def _ended(server: Any, batch_id: str, within_s: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """The batch once it has ended on ``server``, and its results by custom_id."""
    deadline = time.monotonic() + within_s
    while (state := httpx.get(f"{server.url}/v1/messages/batches/{batch_id}", headers=API).json())[
        "processing_status"
    ] != "ended":
        assert time.monotonic() < deadline, server.log_tail()
        time.sleep(0.3)
    results = {}
    for line in httpx.get(state["results_url"], headers=API).text.splitlines():
        item = httpx.Response(200, content=line).json()
        results[item["custom_id"]] = item["result"]
    return state, results


def test_a_graceful_stop_cancels_a_running_request_after_the_grace_period(start_server: StartServer) -> None:
    first = start_server(args=["--batch-workers", "1", "--shutdown-grace", "1"])
    container = httpx.post(f"{first.url}/v1/containers", timeout=30).json()["id"]
    slow = _request("slow", container)
    slow["params"]["messages"][0]["content"] = (
        "```python\nopen('/workspace/runs.txt', 'a').write('slow\\n')\nimport time; time.sleep(20)\n```"
    )
    batch = httpx.post(f"{first.url}/v1/messages/batches",
                       json={"requests": [slow, _request("after", container)]}, timeout=30, headers=API).json()
    deadline = time.monotonic() + 60
    while _runs(first, container) != ["slow"]:
        assert time.monotonic() < deadline, first.log_tail()
        time.sleep(0.1)
    started = time.monotonic()
    first.stop()  # SIGTERM
    assert time.monotonic() - started < 20, "the grace period (1 s) bounds the wait"
    log = first.log_tail(200)
    assert "waiting up to 1s for " in log and " and 1 batch request(s)" in log, log

    second = start_server(env=REFERENCE_PATH, args=["--batch-workers", "1"], data_dir=first.data_dir)
    state, results = _ended(second, batch["id"], within_s=60)
    assert results["slow"]["type"] == "errored"
    assert "shut down while this request was running" in results["slow"]["error"]["error"]["message"]
    assert results["after"]["type"] == "succeeded"
    assert _runs(second, container) == ["slow", "after"], "nothing ran twice"
