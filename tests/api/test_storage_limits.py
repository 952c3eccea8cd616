"""A workspace's storage on the host: the Files API quota, and generated files that
expire, through a real server with real sandboxes."""

from __future__ import annotations

import time

import httpx
import pytest

pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module")
def limited(start_server):
    server = start_server(args=("--workspace-storage-quota", "300KiB", "--generated-file-ttl", "2"))
    with httpx.Client(base_url=server.url, headers={"x-api-key": "k", "anthropic-version": "2023-06-01"}, timeout=120) as client:
        yield client


def test_uploads_and_outputs_stop_at_the_workspace_quota(limited: httpx.Client) -> None:
    ok = limited.post("/v1/files", files={"file": ("a.bin", b"x" * 200 * 1024)})
    assert ok.status_code == 200, ok.text
    refused = limited.post("/v1/files", files={"file": ("b.bin", b"x" * 200 * 1024)})
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["type"] == "invalid_request_error" and "storage quota" in error["message"]
    container = limited.post("/v1/containers").json()["id"]
    # Sparse: nothing allocated in the box, 200 KiB each at their apparent size.
    run = limited.post(f"/v1/containers/{container}/exec", json={
        "code": "import os\nfor i in range(3):\n    open(f\"{os.environ['OUTPUT_DIR']}/s{i}\", 'wb').truncate(200 << 10)"})
    assert run.status_code == 200, run.text
    files = run.json()["files"]
    assert [f["error_code"] for f in files] == ["output_file_too_large"] * 3
    assert "storage quota is full" in run.json()["stderr"]
    limited.delete(f"/v1/files/{ok.json()['id']}")
    again = limited.post(f"/v1/containers/{container}/exec", json={
        "code": "import os\nopen(os.environ['OUTPUT_DIR'] + '/r.txt', 'w').write('fits now')"})
    [stored] = again.json()["files"]
    assert stored["file_id"] and stored["error_code"] is None


def test_generated_files_expire(limited: httpx.Client) -> None:
    container = limited.post("/v1/containers").json()["id"]
    run = limited.post(f"/v1/containers/{container}/exec", json={
        "command": "echo kept for a while > $OUTPUT_DIR/out.txt"})
    file_id = run.json()["files"][0]["file_id"]
    assert limited.get(f"/v1/files/{file_id}/content").text == "kept for a while\n"
    assert limited.get(f"/v1/files/{file_id}").json()["expires_at"] is not None
    deadline = time.monotonic() + 20
    while (content := limited.get(f"/v1/files/{file_id}/content")).status_code == 200:
        assert time.monotonic() < deadline, "the reaper never deleted the expired file"
        time.sleep(0.5)
    assert content.status_code == 404 and content.json()["error"]["details"]["error_code"] == "file_expired"
