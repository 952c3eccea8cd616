"""The direct containers API over HTTP, against a real server with real sandboxes."""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import time

import anthropic
import httpx
import pytest


def api(server, api_key: str = "test") -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"x-api-key": api_key, "anthropic-version": "2023-06-01"}, timeout=120)


def create(client: httpx.Client) -> str:
    response = client.post("/v1/containers")
    assert response.status_code == 200, response.text
    return response.json()["id"]


def run(client: httpx.Client, container_id: str, **body) -> dict:
    response = client.post(f"/v1/containers/{container_id}/exec", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def error_of(response: httpx.Response) -> dict:
    assert response.json()["type"] == "error"
    return response.json()["error"]


@pytest.fixture(scope="module")
def client(server):
    with api(server) as client:
        yield client


@pytest.fixture(scope="module")
def container(client: httpx.Client) -> str:
    return create(client)


def test_create_get_delete(client: httpx.Client) -> None:
    created = client.post("/v1/containers").json()
    assert created["id"].startswith("container_") and created["type"] == "container"
    assert created["expires_at"] > created["created_at"]
    assert client.get(f"/v1/containers/{created['id']}").json()["id"] == created["id"]
    deleted = client.delete(f"/v1/containers/{created['id']}")
    assert deleted.json() == {"id": created["id"], "type": "container_deleted"}
    assert client.get(f"/v1/containers/{created['id']}").status_code == 404


def test_python_and_bash_share_the_workspace(client: httpx.Client, container: str) -> None:
    wrote = run(client, container, code="open('shared.txt', 'w').write('from python')\nprint(6 * 7)")
    assert (wrote["stdout"], wrote["stderr"], wrote["return_code"], wrote["error_code"]) == ("42\n", "", 0, None)
    assert wrote["duration_ms"] >= 0 and wrote["stdout_truncated"] is False and wrote["files"] == []
    read = run(client, container, command="cat shared.txt; echo fail >&2; exit 4")
    assert (read["stdout"], read["stderr"], read["return_code"]) == ("from python", "fail\n", 4)


def test_output_file_is_downloadable(server, client: httpx.Client, container: str) -> None:
    result = run(
        client, container,
        code="import os\nopen(os.path.join(os.environ['OUTPUT_DIR'], 'result.csv'), 'w').write('a,b\\n1,2\\n')",
    )
    [output] = result["files"]
    assert (output["filename"], output["size_bytes"], output["error_code"]) == ("result.csv", 8, None)
    content = client.get(f"/v1/files/{output['file_id']}/content")
    assert content.status_code == 200 and content.content == b"a,b\n1,2\n"
    assert content.headers["content-type"].startswith("text/csv")
    sdk = anthropic.Anthropic(base_url=server.url, api_key="test", max_retries=0, _strict_response_validation=True)
    assert sdk.files.retrieve_metadata(output["file_id"]).downloadable is True
    assert sdk.files.download(output["file_id"]).read() == b"a,b\n1,2\n"


def test_timeout(client: httpx.Client, container: str) -> None:
    result = run(client, container, command="echo started; sleep 60", timeout=1)
    assert result["error_code"] == "execution_time_exceeded"
    assert result["return_code"] != 0
    assert run(client, container, code="print('still usable')")["stdout"] == "still usable\n"


@pytest.mark.parametrize(
    "body", [{}, {"code": "1", "command": "true"}, {"code": "1", "timeout": 0}, {"command": 5}, {"cmd": "ls"}]
)
def test_bad_exec_bodies(client: httpx.Client, container: str, body: dict) -> None:
    response = client.post(f"/v1/containers/{container}/exec", json=body)
    assert response.status_code == 400
    assert error_of(response)["type"] == "invalid_request_error"


def test_oversized_exec_body_is_refused(client: httpx.Client, container: str) -> None:
    def body():  # chunked: no Content-Length to refuse it by
        yield b'{"code": "'
        for _ in range(33):
            yield b"#" * 1000**2
        yield b'"}'

    response = client.post(f"/v1/containers/{container}/exec", content=body(),
                           headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert error_of(response)["type"] == "request_too_large"


def test_delete_stops_a_running_execution(client: httpx.Client) -> None:
    container = create(client)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(client.post, f"/v1/containers/{container}/exec",
                              json={"command": "touch started; sleep 25; echo finished"})
        while client.get(f"/v1/containers/{container}/files/started").status_code != 200:
            time.sleep(0.05)
        assert client.delete(f"/v1/containers/{container}").status_code == 200
        stopped = running.result()
    assert stopped.status_code == 404
    assert error_of(stopped)["details"] == {"error_code": "container_deleted"}
    assert client.get(f"/v1/containers/{container}").status_code == 404


def test_put_get_and_list_files(client: httpx.Client, container: str) -> None:
    written = client.put(f"/v1/containers/{container}/files/data/in.txt", content=b"hello")
    assert written.json() == {"path": "data/in.txt", "size_bytes": 5}
    escaped = client.put(f"/v1/containers/{container}/files/..%2F..%2F..%2Fetc%2Fevil", content=b"x")
    assert escaped.json()["path"] == "etc/evil"
    assert run(client, container, command="cat data/in.txt")["stdout"] == "hello"
    assert client.get(f"/v1/containers/{container}/files/data/in.txt").content == b"hello"
    listing = client.get(f"/v1/containers/{container}/files").json()["data"]
    assert {"path": "data/in.txt", "size_bytes": 5} in listing
    missing = client.get(f"/v1/containers/{container}/files/nope.txt")
    assert missing.status_code == 404 and error_of(missing)["type"] == "not_found_error"


def test_large_file_downloads_whole(client: httpx.Client, container: str) -> None:
    data = os.urandom(3 * 1024 * 1024 + 1)  # many pieces of the streamed response
    assert client.put(f"/v1/containers/{container}/files/big.bin", content=data).status_code == 200
    with client.stream("GET", f"/v1/containers/{container}/files/big.bin") as response:
        assert response.headers["content-length"] == str(len(data))
        assert b"".join(response.iter_bytes()) == data


def test_unknown_container_is_not_found(client: httpx.Client) -> None:
    for response in (
        client.get("/v1/containers/container_unknown"),
        client.post("/v1/containers/container_unknown/exec", json={"code": "1"}),
        client.get("/v1/containers/container_unknown/files"),
        client.put("/v1/containers/container_unknown/files/a", content=b""),
        client.delete("/v1/containers/container_unknown"),
    ):
        assert response.status_code == 404
        assert error_of(response)["type"] == "not_found_error"


def test_workspaces_are_isolated(start_server) -> None:
    keyed = start_server(env={"EXECBOX_API_KEYS": "a:key-a,b:key-b"})
    with api(keyed, "key-a") as a, api(keyed, "key-b") as b:
        container = create(a)
        assert b.get(f"/v1/containers/{container}").status_code == 404
        assert b.post(f"/v1/containers/{container}/exec", json={"code": "1"}).status_code == 404
        assert b.delete(f"/v1/containers/{container}").status_code == 404
        assert run(a, container, code="print('a')")["stdout"] == "a\n"
        assert api(keyed, "nope").post("/v1/containers").status_code == 401
    keyed.stop()


def test_expired_container(start_server) -> None:
    short = start_server(args=["--container-ttl", "1", "--reaper-interval", "0.2"])
    with api(short) as client:
        container = create(client)
        box = short.data_dir / "containers" / container
        assert box.exists()
        deadline = time.monotonic() + 60
        while box.exists() and time.monotonic() < deadline:  # the reaper frees it
            time.sleep(0.2)
        assert not box.exists()
        for response in (
            client.get(f"/v1/containers/{container}"),
            client.post(f"/v1/containers/{container}/exec", json={"code": "1"}),
        ):
            assert response.status_code == 404 and response.headers["x-should-retry"] == "false"
            error = error_of(response)
            assert error["type"] == "not_found_error" and error["details"]["error_code"] == "container_expired"
            assert error["message"].startswith("Container not found") and "expired" in error["message"]
    short.stop()


def test_restart_keeps_containers_and_files(start_server) -> None:
    first = start_server()
    with api(first) as client:
        container = create(client)
        run(client, container, code="open('kept.txt', 'w').write('survives')")
    first.stop()

    second = start_server(data_dir=first.data_dir)
    with api(second) as client:
        assert client.get(f"/v1/containers/{container}").status_code == 200
        assert client.get(f"/v1/containers/{container}/files/kept.txt").content == b"survives"
        assert run(client, container, command="cat kept.txt")["stdout"] == "survives"
    second.stop()


def test_live_containers_per_workspace_are_capped(start_server) -> None:
    capped = start_server(args=["--max-containers", "1"])
    with api(capped) as client:
        first = create(client)
        refused = client.post("/v1/containers")
        assert refused.status_code == 429
        assert error_of(refused)["type"] == "rate_limit_error"
        assert error_of(refused)["details"] == {"error_code": "too_many_containers"}
        assert refused.headers["x-should-retry"] == "false"  # the SDK must not retry it
        assert client.delete(f"/v1/containers/{first}").status_code == 200
        create(client)
    capped.stop()


def test_host_failures_do_not_reveal_host_paths(server, client: httpx.Client) -> None:
    container = create(client)
    box = server.data_dir / "containers" / container
    subprocess.run(["umount", str(box / "mnt")], check=True)
    (box / "disk.img").unlink()  # the disk is gone: the server cannot run this container
    response = client.post(f"/v1/containers/{container}/exec", json={"code": "print(1)"})
    assert response.status_code == 500
    assert "server log" in error_of(response)["message"]
    assert str(server.data_dir) not in response.text
    assert str(box / "disk.img") in server.log_tail()  # the operator still gets the detail
    assert client.delete(f"/v1/containers/{container}").status_code == 200


def test_session_exec_keeps_python_state(client: httpx.Client) -> None:
    container_id = create(client)
    assert run(client, container_id, code="import json\nrows = [1, 2]", session=True)["runtime"] == "fork"
    assert run(client, container_id, code="print(json.dumps(rows))", session=True)["stdout"] == "[1, 2]\n"
    assert "NameError" in run(client, container_id, code="print(rows)")["stderr"]  # without session: fresh
    refused = client.post(f"/v1/containers/{container_id}/exec", json={"command": "true", "session": True})
    assert refused.status_code == 400 and "session" in error_of(refused)["message"]


def test_streamed_exec_sends_output_while_it_runs(client: httpx.Client, container: str) -> None:
    code = "import sys, time\nprint('first', flush=True)\ntime.sleep(1)\nprint('oops', file=sys.stderr)\nprint('last')"
    arrivals = []
    started = time.monotonic()
    with client.stream("POST", f"/v1/containers/{container}/exec", json={"code": code, "stream": True}) as response:
        assert response.status_code == 200 and response.headers["content-type"] == "application/x-ndjson"
        for line in response.iter_lines():
            arrivals.append((time.monotonic() - started, json.loads(line)))
    events = [event for _, event in arrivals]
    assert events[0]["type"] == "stdout" and events[0]["text"].startswith("first")
    streamed = {name: "".join(e["text"] for e in events if e["type"] == name) for name in ("stdout", "stderr")}
    assert streamed == {"stdout": "first\nlast\n", "stderr": "oops\n"}
    result = events[-1]
    assert result["type"] == "result" and result["stdout"] == "first\nlast\n" and result["return_code"] == 0
    assert arrivals[0][0] < arrivals[-1][0] - 0.5  # the first line came before the sleep ended


def test_streamed_exec_of_an_unknown_container_is_an_error_status(client: httpx.Client) -> None:
    response = client.post("/v1/containers/container_nope/exec", json={"code": "1", "stream": True})
    assert response.status_code == 404 and error_of(response)["type"] == "not_found_error"
