"""The Files API through the official SDK, against a real server."""

from __future__ import annotations

import anthropic
import httpx
import pytest

UPLOAD_CAP = 64 * 1024


def sdk(url: str, api_key: str = "test") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key=api_key, max_retries=0, _strict_response_validation=True)


@pytest.fixture(scope="module")
def keyed(start_server):
    """Two workspaces (``a``, ``b``) and a small upload cap."""
    return start_server(env={"EXECBOX_API_KEYS": "a:key-a,b:key-b"}, args=["--max-upload-size", str(UPLOAD_CAP)])


@pytest.fixture
def client(server) -> anthropic.Anthropic:
    return sdk(server.url)


def test_upload_and_retrieve_metadata(client: anthropic.Anthropic) -> None:
    uploaded = client.files.upload(file=("a.csv", b"x,y\n1,2\n", "text/csv"))
    assert uploaded.id.startswith("file_")
    assert (uploaded.filename, uploaded.mime_type, uploaded.size_bytes) == ("a.csv", "text/csv", 8)
    assert uploaded.downloadable is False and uploaded.expires_at is None
    assert client.files.retrieve_metadata(uploaded.id) == uploaded
    assert client.beta.files.retrieve_metadata(uploaded.id).id == uploaded.id


def test_upload_with_expiry(client: anthropic.Anthropic) -> None:
    uploaded = client.files.upload(file=("e.txt", b"soon"), expires_in_seconds=3600)
    assert uploaded.expires_at is not None
    assert round((uploaded.expires_at - uploaded.created_at).total_seconds()) == 3600
    with pytest.raises(anthropic.BadRequestError):
        client.files.upload(file=("e.txt", b"too soon"), expires_in_seconds=60)


def test_list_pages_newest_first(client: anthropic.Anthropic) -> None:
    mine = [client.files.upload(file=(f"p{i}.txt", b"page")).id for i in range(25)]
    listed = [f.id for f in client.beta.files.list()]  # 20 per page: the SDK follows next_page
    assert [i for i in listed if i in mine] == mine[::-1]
    small_pages = [f.id for f in client.files.list(limit=7)]
    assert [i for i in small_pages if i in mine] == mine[::-1]


def test_list_by_ids(client: anthropic.Anthropic) -> None:
    a, b = (client.files.upload(file=(f"{n}.txt", b"id")).id for n in "ab")
    page = client.files.list(ids=[a, b, "file_unknown"])
    assert [f.id for f in page.data] == [b, a]
    assert page.next_page is None
    with pytest.raises(anthropic.BadRequestError):
        client.files.list(ids=[a], limit=5)


def test_legacy_list_shape(server) -> None:
    ids = [sdk(server.url).files.upload(file=(f"l{i}.txt", b"legacy")).id for i in range(3)]
    headers = {"x-api-key": "test", "anthropic-version": "2023-06-01", "anthropic-beta": "files-api-2025-04-14"}
    first = httpx.get(f"{server.url}/v1/files?beta=true&limit=2&unknown=1", headers=headers).json()
    assert [f["id"] for f in first["data"]] == ids[:0:-1]
    assert first["has_more"] is True and first["first_id"] == ids[2] and first["last_id"] == ids[1]
    assert all("expires_at" not in f for f in first["data"])
    after = httpx.get(f"{server.url}/v1/files", params={"after_id": ids[1], "limit": 1}, headers=headers).json()
    assert [f["id"] for f in after["data"]] == [ids[0]]
    ga = httpx.get(f"{server.url}/v1/files?limit=1", headers={"x-api-key": "test", "anthropic-version": "2023-06-01"}).json()
    assert "expires_at" in ga["data"][0] and ga["next_page"].startswith("page_")


@pytest.mark.parametrize("limit", [0, 1001, "many"])
def test_bad_list_limit(server, limit) -> None:
    response = httpx.get(f"{server.url}/v1/files", params={"limit": limit})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_uploads_are_not_downloadable(client: anthropic.Anthropic) -> None:
    uploaded = client.files.upload(file=("secret.csv", b"1,2", "text/csv"))
    with pytest.raises(anthropic.types.FileNotDownloadableError) as caught:
        client.files.download(uploaded.id)
    assert caught.value.status_code == 400


def test_delete(client: anthropic.Anthropic) -> None:
    uploaded = client.files.upload(file=("gone.txt", b"bye"))
    deleted = client.files.delete(uploaded.id)
    assert (deleted.id, deleted.type) == (uploaded.id, "file_deleted")
    with pytest.raises(anthropic.NotFoundError):
        client.files.retrieve_metadata(uploaded.id)
    with pytest.raises(anthropic.NotFoundError):
        client.files.delete(uploaded.id)
    assert uploaded.id not in [f.id for f in client.files.list(ids=[uploaded.id])]


def test_unknown_file_is_not_found(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.files.retrieve_metadata("file_doesnotexist")
    assert caught.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.NotFoundError):
        client.files.download("file_doesnotexist")


@pytest.mark.parametrize("name", ["bad<name>.txt", "q?.txt", "pipe|.txt", "a" * 256])
def test_bad_filenames_are_rejected(client: anthropic.Anthropic, name: str) -> None:
    with pytest.raises(anthropic.BadRequestError):
        client.files.upload(file=(name, b"x"))


def test_malformed_uploads_are_rejected(server) -> None:
    no_file = httpx.post(f"{server.url}/v1/files", data={"expires_in_seconds": "3600"}, files={"x": ("a", b"")})
    assert no_file.status_code == 400
    not_multipart = httpx.post(f"{server.url}/v1/files", json={"file": "x"})
    assert not_multipart.status_code == 400


def test_too_large_upload(keyed) -> None:
    client = sdk(keyed.url, "key-a")
    with pytest.raises(anthropic.ContentTooLargeError) as caught:
        client.files.upload(file=("big.bin", b"x" * (UPLOAD_CAP + 1)))
    assert caught.value.body["error"]["type"] == "request_too_large"  # type: ignore[index]
    assert client.files.upload(file=("fits.bin", b"x" * UPLOAD_CAP)).size_bytes == UPLOAD_CAP


def test_too_large_upload_without_content_length(keyed) -> None:
    boundary = "cap"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="s.bin"\r\n\r\n').encode()

    def body():
        yield head
        for _ in range(4):
            yield b"y" * (UPLOAD_CAP // 2)
        yield f"\r\n--{boundary}--\r\n".encode()

    response = httpx.post(
        f"{keyed.url}/v1/files", content=body(),
        headers={"x-api-key": "key-a", "anthropic-version": "2023-06-01", "content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 413


@pytest.mark.parametrize(("fields", "value"), [(50, "v" * 4000), (3000, "")])
def test_form_overhead_is_capped_without_content_length(server, fields: int, value: str) -> None:
    # Many fields, each within the per-field cap: long values, or empty ones with distinct names.
    boundary = "pad"
    part = '--pad\r\nContent-Disposition: form-data; name="{name}"{filename}\r\n\r\n{value}\r\n'
    form = "".join(part.format(name=f"field{i}", filename="", value=value) for i in range(fields))
    form += part.format(name="file", filename='; filename="a.txt"', value="hello")
    body = (form + f"--{boundary}--\r\n").encode()
    response = httpx.post(
        f"{server.url}/v1/files", content=(body[i:i + 16384] for i in range(0, len(body), 16384)),
        headers={"x-api-key": "test", "anthropic-version": "2023-06-01", "content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 400, response.text
    assert "headers and fields exceed" in response.json()["error"]["message"]


def test_workspaces_are_isolated(keyed) -> None:
    a, b = sdk(keyed.url, "key-a"), sdk(keyed.url, "key-b")
    uploaded = a.files.upload(file=("mine.txt", b"only a"))
    with pytest.raises(anthropic.NotFoundError):
        b.files.retrieve_metadata(uploaded.id)
    with pytest.raises(anthropic.NotFoundError):
        b.files.delete(uploaded.id)
    assert uploaded.id not in [f.id for f in b.files.list()]
    assert a.files.retrieve_metadata(uploaded.id).id == uploaded.id
    with pytest.raises(anthropic.AuthenticationError):
        sdk(keyed.url, "wrong").files.list()
