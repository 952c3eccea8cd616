"""Models, token counting and errors through the official SDK (2.x and 1.1)."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest
from anthropic.types import MessageTokensCount, ModelInfo


@pytest.fixture(scope="module")
def client(e2e_url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=e2e_url, api_key="test", max_retries=0, _strict_response_validation=True)


def test_models(client: anthropic.Anthropic) -> None:
    models = list(client.models.list())
    assert all(isinstance(model, ModelInfo) for model in models)
    assert "execbox-direct" in [model.id for model in models]
    direct = client.models.retrieve("execbox-direct")
    assert direct.type == "model" and direct.display_name
    assert [m.id for m in client.beta.models.list()] == [m.id for m in models]
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("no-such-model")


def test_count_tokens(client: anthropic.Anthropic) -> None:
    messages: Any = [{"role": "user", "content": "How many tokens is this?"}]
    tools: Any = [{"type": "code_execution_20250825", "name": "code_execution"}]
    counted = client.messages.count_tokens(model="execbox-direct", messages=messages, tools=tools)
    assert isinstance(counted, MessageTokensCount) and counted.input_tokens > 0
    bare = client.messages.count_tokens(model="execbox-direct", messages=messages)
    assert bare.input_tokens < counted.input_tokens


def test_a_bad_key_is_an_authentication_error(keyed_url: str) -> None:
    client = anthropic.Anthropic(base_url=keyed_url, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        client.messages.create(model="execbox-direct", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    good = anthropic.Anthropic(base_url=keyed_url, api_key="key-a", max_retries=0, _strict_response_validation=True)
    assert good.messages.create(model="execbox-direct", max_tokens=10, messages=[{"role": "user", "content": "hi"}])


def test_a_bad_body_is_a_bad_request(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as failure:
        client.messages.create(model="execbox-direct", max_tokens=-1, messages=[{"role": "user", "content": "hi"}])
    error = failure.value
    assert error.type == "invalid_request_error"  # type: ignore[attr-defined]
    assert error.request_id is not None and error.request_id.startswith("req_")
    assert error.request_id == error.body["request_id"]  # type: ignore[index]
    assert "max_tokens" in error.body["error"]["message"]  # type: ignore[index]
    if hasattr(error, "api_message"):  # SDK 2.x
        assert error.api_message == error.body["error"]["message"]  # type: ignore[index]


def test_an_overloaded_model_is_an_overloaded_error(client: anthropic.Anthropic) -> None:
    # The direct model fails with the status its ```error block names, as an upstream model would.
    with pytest.raises(anthropic.OverloadedError, match="Busy") as failure:
        client.messages.create(
            model="execbox-direct", max_tokens=10, messages=[{"role": "user", "content": "```error 529\nBusy.\n```"}]
        )
    assert failure.value.status_code == 529
    assert failure.value.request_id == failure.value.response.headers["request-id"]


def test_an_unknown_tool_type_is_a_bad_request(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError, match="Unsupported tool type"):
        client.messages.create(
            model="execbox-direct",
            max_tokens=10,
            messages=[{"role": "user", "content": "hi"}],
            tools=[{"type": "web_search_20250305", "name": "web_search"}],
        )


def test_unknown_fields_are_bad_requests(client: anthropic.Anthropic) -> None:
    messages: Any = [{"role": "user", "content": "hi"}]
    with pytest.raises(anthropic.BadRequestError) as failure:
        client.messages.create(model="execbox-direct", max_tokens=10, messages=messages, extra_body={"bogus": 1})
    assert failure.value.body["error"]["message"] == "bogus: Extra inputs are not permitted"  # type: ignore[index]
    nested: Any = [{"role": "user", "content": [{"type": "text", "text": "hi", "lang": "en"}]}]
    with pytest.raises(anthropic.BadRequestError, match=r"messages\.0\.content\.0\.text\.lang: Extra inputs"):
        client.messages.create(model="execbox-direct", max_tokens=10, messages=nested)


def test_the_api_version_header_is_required(client: anthropic.Anthropic) -> None:
    messages: Any = [{"role": "user", "content": "hi"}]
    with pytest.raises(anthropic.BadRequestError, match="anthropic-version: header is required"):
        client.messages.create(
            model="execbox-direct", max_tokens=10, messages=messages, extra_headers={"anthropic-version": anthropic.Omit()}
        )
    with pytest.raises(anthropic.BadRequestError, match='"2023-10-01" is not a valid version'):
        client.models.list(extra_headers={"anthropic-version": "2023-10-01"})


@pytest.mark.filterwarnings("ignore:The model .* is deprecated")
def test_models_agree_with_messages(client: anthropic.Anthropic) -> None:
    messages: Any = [{"role": "user", "content": "hi"}]
    for model in client.models.list():
        assert client.messages.create(model=model.id, max_tokens=10, messages=messages).model == model.id
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="gpt-4o", max_tokens=10, messages=messages)
