"""The Message Batches calls of the compatibility plan (item 9) through the official SDK (2.x and 1.1),
with ``client.messages.batches`` and ``client.beta.messages.batches``, strictly validated.

Each request of a batch runs like a direct Messages call: with the code execution tool, a
container and ``container_upload`` files.
"""

from __future__ import annotations

import time
from typing import Any

import anthropic
import pytest
from anthropic.types.beta.messages import (
    BetaDeletedMessageBatch,
    BetaMessageBatch,
    BetaMessageBatchIndividualResponse,
)
from anthropic.types.messages import DeletedMessageBatch, MessageBatch, MessageBatchIndividualResponse

from tests.e2e.servers import BATCH_EXPIRY_S

TOOLS: Any = [{"type": "code_execution_20250825", "name": "code_execution"}]
TYPES = {
    "messages": (MessageBatch, MessageBatchIndividualResponse, DeletedMessageBatch),
    "beta": (BetaMessageBatch, BetaMessageBatchIndividualResponse, BetaDeletedMessageBatch),
}


def _client(url: str, key: str = "test") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key=key, max_retries=0, _strict_response_validation=True)


@pytest.fixture(scope="module")
def client(e2e_url: str) -> anthropic.Anthropic:
    return _client(e2e_url)


def _api(client: anthropic.Anthropic, flavour: str) -> Any:
    return client.beta.messages.batches if flavour == "beta" else client.messages.batches


def _request(custom_id: str, text: Any, **params: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "params": {"model": "execbox-direct", "max_tokens": 512, "tools": TOOLS,
                   "messages": [{"role": "user", "content": text}], **params},
    }


def _wait_until_ended(api: Any, batch_id: str, timeout_s: float = 90) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        batch = api.retrieve(batch_id)
        counts = batch.request_counts
        total = counts.processing + counts.succeeded + counts.errored + counts.canceled + counts.expired
        assert total == batch_total[batch_id], f"request_counts must sum to the request count: {counts}"
        if batch.processing_status == "ended":
            return batch
        assert time.monotonic() < deadline, f"batch {batch_id} did not end: {batch}"
        time.sleep(0.3)


batch_total: dict[str, int] = {}


def _create(api: Any, requests: list[dict[str, Any]]) -> Any:
    batch = api.create(requests=requests)
    batch_total[batch.id] = len(requests)
    return batch


@pytest.mark.parametrize("flavour", ["messages", "beta"])
def test_a_batch_runs_code_with_files_and_reports_every_result(client: anthropic.Anthropic, flavour: str) -> None:
    api = _api(client, flavour)
    batch_type, result_type, deleted_type = TYPES[flavour]
    uploaded = client.beta.files.upload(file=("numbers.csv", b"n\n1\n2\n3\n", "text/csv"))
    requests = [
        _request("sum", "```python\nprint(sum(range(10)))\n```"),
        _request("upload", [
            {"type": "container_upload", "file_id": uploaded.id},
            {"type": "text", "text": "```python\nimport pandas as pd\nprint(pd.read_csv('numbers.csv').n.sum())\n```"},
        ]),
        _request("model-error", "```error 400\nThe model refused this.\n```"),
        _request("no-container", "```python\nprint(1)\n```", container="container_01doesnotexist"),
    ]
    batch = _create(api, requests)
    assert isinstance(batch, batch_type) and batch.id.startswith("msgbatch_")
    assert batch.type == "message_batch" and batch.results_url is None
    assert batch.processing_status in ("in_progress", "ended")
    assert (batch.expires_at - batch.created_at).total_seconds() == pytest.approx(24 * 3600, abs=1)

    ended = _wait_until_ended(api, batch.id)
    assert isinstance(ended, batch_type) and ended.ended_at is not None
    assert ended.request_counts.succeeded == 2 and ended.request_counts.errored == 2
    assert ended.results_url == str(client.base_url).rstrip("/") + f"/v1/messages/batches/{batch.id}/results"

    results = {r.custom_id: r.result for r in api.results(batch.id)}
    assert all(isinstance(r, result_type) for r in api.results(batch.id))
    assert set(results) == {"sum", "upload", "model-error", "no-container"}
    for custom_id, expected in (("sum", "45"), ("upload", "6")):
        result = results[custom_id]
        assert result.type == "succeeded", result
        message = result.message  # type: ignore[union-attr]
        assert message.container is not None and message.content[-1].text.strip() == expected
        assert message.content[1].type == "bash_code_execution_tool_result"
    model_error = results["model-error"]
    assert model_error.type == "errored"
    assert model_error.error.error.type == "invalid_request_error"  # type: ignore[union-attr]
    assert "refused" in model_error.error.error.message  # type: ignore[union-attr]
    assert results["no-container"].error.error.type == "not_found_error"  # type: ignore[union-attr]

    assert batch.id in [b.id for b in api.list()]
    deleted = api.delete(batch.id)
    assert isinstance(deleted, deleted_type) and deleted.id == batch.id and deleted.type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        api.retrieve(batch.id)


@pytest.mark.parametrize("flavour", ["messages", "beta"])
def test_cancel_ends_unstarted_requests_as_canceled(client: anthropic.Anthropic, flavour: str) -> None:
    api = _api(client, flavour)
    requests = [_request(f"r{i}", "```python\nimport time; time.sleep(0.5)\n```") for i in range(16)]
    batch = _create(api, requests)
    with pytest.raises(anthropic.BadRequestError, match="Cancel it first"):
        api.delete(batch.id)
    canceling = api.cancel(batch.id)
    assert isinstance(canceling, TYPES[flavour][0])
    assert canceling.processing_status in ("canceling", "ended") and canceling.cancel_initiated_at is not None
    ended = _wait_until_ended(api, batch.id)
    assert ended.request_counts.canceled >= 8, ended.request_counts  # 4 workers cannot start 16 in the meantime
    types = [r.result.type for r in api.results(batch.id)]
    assert len(types) == 16 and set(types) <= {"succeeded", "canceled"} and "canceled" in types
    assert api.cancel(batch.id).processing_status == "ended"  # canceling an ended batch changes nothing
    api.delete(batch.id)


@pytest.mark.parametrize("flavour", ["messages", "beta"])
def test_requests_not_started_in_time_expire(short_batches_url: str, flavour: str) -> None:
    # One worker; the first request outlasts the batch's expiry, so the others never start.
    api = _api(_client(short_batches_url), flavour)
    slow = f"```python\nimport time; time.sleep({BATCH_EXPIRY_S + 2}); print('done')\n```"
    batch = _create(api, [_request("slow", slow), _request("late-1", "hi"), _request("late-2", "hi")])
    ended = _wait_until_ended(api, batch.id)
    assert ended.request_counts.expired == 2 and ended.request_counts.succeeded == 1, ended.request_counts
    results = {r.custom_id: r.result.type for r in api.results(batch.id)}
    assert results == {"slow": "succeeded", "late-1": "expired", "late-2": "expired"}


def test_list_pages_newest_first(client: anthropic.Anthropic) -> None:
    ids = [_create(client.messages.batches, [_request("only", "hi")]).id for _ in range(3)]
    first = client.messages.batches.list(limit=2)
    assert [b.id for b in first.data] == ids[::-1][:2] and first.has_more and first.last_id == ids[1]
    paged = [b.id for b in client.messages.batches.list(limit=2)]  # auto-paging by after_id
    assert paged[:3] == ids[::-1]
    newer = client.messages.batches.list(limit=5, before_id=ids[0])
    assert [b.id for b in newer.data] == ids[::-1][:2]


@pytest.mark.parametrize(
    ("requests", "message"),
    [
        ([], "requests"),
        ([_request("same", "a"), _request("same", "b")], "custom_id must be unique"),
        ([_request("x" * 65, "a")], "custom_id"),
        ([_request("bad id!", "a")], "custom_id"),
        ([_request("stream", "a", stream=True)], "streaming is not supported"),
        ([_request("ok", "a"), {"custom_id": "no-model", "params": {"max_tokens": 5, "messages": []}}],
         "requests.1.params"),
        ([{**_request("extra", "a"), "priority": 1}], "Extra inputs are not permitted"),
        ([_request("extra-param", "a", speed_dial=1)], "requests.0.params.speed_dial"),
    ],
    ids=["empty", "duplicate", "too-long", "bad-characters", "stream", "bad-params", "unknown-field",
         "unknown-param"],
)
def test_bad_batches_are_refused(client: anthropic.Anthropic, requests: Any, message: str) -> None:
    with pytest.raises(anthropic.BadRequestError, match=message):
        client.messages.batches.create(requests=requests)


def test_unknown_batches_and_other_workspaces_are_not_found(keyed_url: str) -> None:
    mine = _client(keyed_url, "key-a")
    other = _client(keyed_url, "key-b")
    batch = _create(mine.messages.batches, [_request("a", "hi")])
    calls = [(other.messages.batches.retrieve, batch.id), (other.messages.batches.cancel, batch.id),
             (other.messages.batches.delete, batch.id), (mine.messages.batches.retrieve, "msgbatch_01unknown")]
    for call, target in calls:
        with pytest.raises(anthropic.NotFoundError):
            call(target)
    assert batch.id not in [b.id for b in other.messages.batches.list()]
    _wait_until_ended(mine.messages.batches, batch.id)
    with pytest.raises(anthropic.NotFoundError):
        other.messages.batches.results(batch.id)
