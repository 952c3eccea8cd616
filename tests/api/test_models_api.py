"""``GET /v1/models`` and ``GET /v1/models/{id}``."""

from __future__ import annotations

import httpx
import pytest


@pytest.fixture(scope="module")
def http(server) -> httpx.Client:
    with httpx.Client(base_url=server.url, headers={"x-api-key": "test", "anthropic-version": "2023-06-01"}) as client:
        yield client


def test_the_direct_model_is_listed(http: httpx.Client) -> None:
    page = http.get("/v1/models").json()
    assert page["first_id"] == page["data"][0]["id"] and page["last_id"] == page["data"][-1]["id"]
    assert page["has_more"] is False
    direct = next(model for model in page["data"] if model["id"] == "execbox-direct")
    assert direct["type"] == "model" and direct["lifecycle"] == "active"
    assert set(direct) >= {"display_name", "created_at", "max_input_tokens", "max_tokens"}
    assert http.get("/v1/models/execbox-direct").json() == direct


def test_paging_cursors(http: httpx.Client) -> None:
    ids = [model["id"] for model in http.get("/v1/models").json()["data"]]
    first = http.get("/v1/models", params={"limit": 1}).json()
    assert [m["id"] for m in first["data"]] == ids[:1] and first["has_more"] == (len(ids) > 1)
    after = http.get("/v1/models", params={"after_id": ids[-1]}).json()
    assert after == {"data": [], "has_more": False, "first_id": None, "last_id": None}
    before = http.get("/v1/models", params={"before_id": ids[-1]}).json()
    assert [m["id"] for m in before["data"]] == ids[:-1]
    assert http.get("/v1/models", params={"after_id": "nope"}).status_code == 400
    assert http.get("/v1/models", params={"limit": 0}).status_code == 400


def test_unknown_models_are_404s(http: httpx.Client) -> None:
    response = http.get("/v1/models/no-such-model")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"


def test_the_start_up_log_names_each_backends_models(server) -> None:
    log = server.log_path.read_text()
    assert "models: direct serves execbox-direct, claude-opus-4-20250514," in log


def test_a_claude_key_takes_the_claude_ids_from_the_direct_model(start_server) -> None:
    # The key is never used: listing and routing need no upstream call.
    keyed = start_server(env={"EXECBOX_ANTHROPIC_API_KEY": "sk-test", "EXECBOX_ANTHROPIC_BASE_URL": "http://127.0.0.1:9"})
    with httpx.Client(base_url=keyed.url, headers={"x-api-key": "t", "anthropic-version": "2023-06-01"}) as client:
        ids = [m["id"] for m in client.get("/v1/models", params={"limit": 1000}).json()["data"]]
        assert "claude-sonnet-4-5" in ids and ids[-1] == "execbox-direct"
        assert "claude-3-7-sonnet-20250219" not in ids
        body = {"model": "claude-3-7-sonnet-20250219", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
        assert client.post("/v1/messages", json=body).status_code == 404
    assert "models: anthropic serves claude-opus-4-5-20251101," in keyed.log_path.read_text()
    keyed.stop()
