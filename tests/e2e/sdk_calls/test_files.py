"""The Files API calls of the compatibility plan through the official SDK (2.x and 1.1).

SDK 1.1 reaches ``beta.files`` with the ``files-api-2025-04-14`` beta and pages its list by
``after_id``; 2.x pages by ``next_page``.
"""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

SDK_1 = anthropic.__version__.startswith("1.")


@pytest.fixture(scope="module")
def client(e2e_url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=e2e_url, api_key="test", max_retries=0, _strict_response_validation=True)


def test_upload_list_retrieve_and_delete(client: anthropic.Anthropic) -> None:
    uploaded = client.beta.files.upload(file=("a.csv", b"x,y\n1,2\n", "text/csv"))
    assert uploaded.id.startswith("file_") and uploaded.downloadable is False
    assert (uploaded.filename, uploaded.size_bytes) == ("a.csv", 8)
    assert client.beta.files.retrieve_metadata(uploaded.id).id == uploaded.id

    mine = [uploaded.id] + [client.beta.files.upload(file=(f"n{i}.txt", b"n")).id for i in range(21)]
    listed = [f.id for f in client.beta.files.list()]  # more than one page of 20
    assert [i for i in listed if i in mine] == mine[::-1]
    first_page = client.beta.files.list(limit=1)
    assert len(first_page.data) == 1 and first_page.has_next_page()

    deleted = client.beta.files.delete(uploaded.id)
    assert deleted.id == uploaded.id
    with pytest.raises(anthropic.NotFoundError):
        client.beta.files.retrieve_metadata(uploaded.id)


def test_only_generated_files_download(client: anthropic.Anthropic) -> None:
    uploaded = client.beta.files.upload(file=("in.txt", b"private"))
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.beta.files.download(uploaded.id)
    assert refused.value.body["error"]["details"]["error_code"] == "file_not_downloadable"  # type: ignore[index]
    if not SDK_1:
        assert type(refused.value).__name__ == "FileNotDownloadableError"

    tools: Any = [{"type": "code_execution_20250825", "name": "code_execution"}]
    response = client.messages.create(
        model="execbox-direct",
        max_tokens=512,
        tools=tools,
        messages=[{"role": "user", "content": "```bash\nprintf generated > $OUTPUT_DIR/out.txt\n```"}],
    )
    (output,) = response.content[1].content.content  # type: ignore[union-attr]
    assert client.beta.files.download(output.file_id).read() == b"generated"
