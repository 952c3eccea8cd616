"""execbox.client against a real server with real sandboxes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from execbox.client import APIError, AsyncSandbox, NotFoundError, Sandbox, UnsupportedFeature


def test_lifetime_run_and_files(server, tmp_path: Path) -> None:
    with Sandbox.create(server.url, api_key="test") as sandbox:
        assert sandbox.id.startswith("container_")
        assert sandbox.id in [c.id for c in Sandbox.list(server.url, api_key="test")]

        result = sandbox.run("import sys\nprint(6 * 7)\nprint('warn', file=sys.stderr)\nsys.exit(3)")
        assert (result.stdout, result.stderr, result.return_code, result.error_code) == ("42\n", "warn\n", 3, None)
        bash = sandbox.run_bash("echo $((2 + 3)) > five.txt && cat five.txt")
        assert (bash.stdout, bash.return_code) == ("5\n", 0)

        local = tmp_path / "table.csv"
        local.write_bytes(b"x,y\n1,2\n3,4\n")
        assert sandbox.upload("data/table.csv", local).size_bytes == 12
        assert sandbox.upload("notes.txt", "caf\u00e9").size_bytes == 5
        assert sandbox.download("notes.txt") == "caf\u00e9".encode()
        files = {f.path: f.size_bytes for f in sandbox.files()}
        assert files == {"data/table.csv": 12, "five.txt": 2, "notes.txt": 5}
        assert sandbox.download_to("data/table.csv", tmp_path / "back.csv").read_bytes() == local.read_bytes()

        summed = sandbox.run(
            "import os, pandas as pd\n"
            "df = pd.read_csv('data/table.csv')\n"
            "df.sum().to_csv(os.path.join(os.environ['OUTPUT_DIR'], 'sums.csv'))\n"
            "print(int(df.x.sum() + df.y.sum()))"
        )
        assert summed.stdout == "10\n"
        [output] = summed.files
        assert output.filename == "sums.csv" and output.file_id
        assert sandbox.output(output.file_id) == b",0\nx,4\ny,6\n"

        with Sandbox.connect(sandbox.id, server.url, api_key="test") as again:
            assert again.run_bash("cat five.txt").stdout == "5\n"
        # Leaving a ``connect`` block keeps the container.
        assert sandbox.refresh().id == sandbox.id
        kept = sandbox.id
    # Leaving a ``create`` block deletes it.
    with pytest.raises(NotFoundError) as gone:
        Sandbox.connect(kept, server.url, api_key="test")
    assert gone.value.status_code == 404 and gone.value.type == "not_found_error"


def test_output_arrives_while_the_code_runs(server) -> None:
    seen: list[tuple[float, str]] = []
    err: list[str] = []
    with Sandbox.create(server.url) as sandbox:
        started = time.monotonic()
        result = sandbox.run(
            "import sys, time\nprint('early', flush=True)\ntime.sleep(1.5)\nprint('late')\n"
            "print('oops', file=sys.stderr)",
            on_stdout=lambda text: seen.append((time.monotonic() - started, text)), on_stderr=err.append,
        )
        finished = time.monotonic() - started
        assert "".join(text for _, text in seen) == result.stdout == "early\nlate\n"
        assert "".join(err) == result.stderr == "oops\n"
        assert seen[0][1].startswith("early") and seen[0][0] < finished - 1.0  # before the code ended
        out: list[str] = []
        assert sandbox.run_bash("echo again", on_stdout=out.append).stdout == "again\n" and out == ["again\n"]


def test_session_keeps_variables(server) -> None:
    with Sandbox.create(server.url) as sandbox:
        sandbox.run("counter = 41", session=True)
        assert sandbox.run("counter += 1\nprint(counter)", session=True).stdout == "42\n"
        fresh = sandbox.run("print(counter)")  # without session: a fresh interpreter
        assert fresh.return_code != 0 and "NameError" in fresh.stderr
        assert next(c for c in Sandbox.list(server.url) if c.id == sandbox.id).kernel_live is True


def older_server(answer_exec):
    """A stand-in for a server from before streamed executions and sessions: it refuses the
    unknown body fields the way execbox's validation does, and answers whole results."""
    created = {"id": "container_x", "type": "container",
               "created_at": "2026-01-01T00:00:00Z", "expires_at": "2026-01-01T01:00:00Z"}
    bodies: list[dict] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/containers":
            return httpx.Response(200, json=created)
        body = json.loads(request.content)
        bodies.append(body)
        unknown = [name for name in body if name not in ("code", "command", "timeout")]
        if unknown:
            message = "; ".join(f"{name}: Extra inputs are not permitted" for name in unknown)
            return httpx.Response(400, json={"type": "error", "error": {
                "type": "invalid_request_error", "message": message}, "request_id": "req_1"})
        return httpx.Response(200, json=answer_exec(body))

    http = httpx.Client(base_url="http://execbox.test", transport=httpx.MockTransport(answer))
    return Sandbox.create(http=http), bodies


RESULT = {"stdout": "a\nb\n", "stderr": "e\n", "return_code": 0, "error_code": None, "duration_ms": 5, "files": [],
          "stdout_truncated": False, "stderr_truncated": False, "oom_killed": False, "runtime": "bwrap"}


def test_older_server_without_streaming_or_sessions() -> None:
    sandbox, bodies = older_server(lambda body: RESULT)
    out: list[str] = []
    err: list[str] = []
    assert sandbox.run("x", on_stdout=out.append, on_stderr=err.append).stdout == "a\nb\n"
    assert out == ["a\nb\n"] and err == ["e\n"]  # all at once, at the end
    assert bodies == [{"code": "x", "stream": True}, {"code": "x"}]
    sandbox.run("x", on_stdout=out.append)
    assert bodies[-1] == {"code": "x"}  # remembered: no second refusal
    with pytest.raises(UnsupportedFeature, match="session"):
        sandbox.run("x", session=True)


def test_errors_carry_the_envelope(server) -> None:
    with pytest.raises(NotFoundError) as missing:
        Sandbox.connect("container_doesnotexist", server.url)
    assert missing.value.request_id and missing.value.request_id.startswith("req_")
    with Sandbox.create(server.url) as sandbox:
        with pytest.raises(NotFoundError):
            sandbox.download("no/such/file")
        with pytest.raises(APIError) as bad:
            sandbox.run("print(1)", timeout=-1)
        assert bad.value.status_code == 400 and bad.value.type == "invalid_request_error"
        sandbox.delete()
        with pytest.raises(NotFoundError):
            sandbox.run("print(1)")


def test_timeout_is_reported(server) -> None:
    with Sandbox.create(server.url) as sandbox:
        result = sandbox.run("import time\nprint('start', flush=True)\ntime.sleep(30)", timeout=1)
    assert result.error_code == "execution_time_exceeded" and result.stdout == "start\n"


async def test_async_sandbox(server, tmp_path: Path) -> None:
    async with await AsyncSandbox.create(server.url, api_key="test") as sandbox:
        assert sandbox.id in [c.id async for c in AsyncSandbox.list(server.url, page_size=1)]
        local = tmp_path / "in.txt"
        local.write_bytes(b"hello from a file\n" * 1000)
        assert (await sandbox.upload("in.txt", local)).size_bytes == 18_000
        pieces: list[str] = []
        result = await sandbox.run("print(len(open('in.txt').read()))", on_stdout=pieces.append)
        assert result.stdout == "18000\n" and "".join(pieces) == "18000\n"
        assert (await sandbox.run_bash("wc -l < in.txt")).stdout.strip() == "1000"
        assert [f.path for f in await sandbox.files()] == ["in.txt"]
        assert await sandbox.download("in.txt") == local.read_bytes()
        async with await AsyncSandbox.connect(sandbox.id, server.url) as again:
            assert (await again.refresh()).id == sandbox.id
        kept = sandbox.id
    with pytest.raises(NotFoundError):
        await AsyncSandbox.connect(kept, server.url)


def test_reads_a_streamed_execution() -> None:
    """The streamed answer's shape read piece by piece; a stream cut before its result is an
    error, not a silent empty result."""
    lines = [
        {"type": "stdout", "text": "a\n"}, {"type": "stderr", "text": "e\n"}, {"type": "stdout", "text": "b\n"},
        {"type": "result", **RESULT},
    ]

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/containers":
            return httpx.Response(200, json={"id": "container_x", "type": "container",
                                             "created_at": "2026-01-01T00:00:00Z", "expires_at": "2026-01-01T01:00:00Z"})
        body = "".join(json.dumps(line) + "\n" for line in lines)
        return httpx.Response(200, text=body, headers={"content-type": "application/x-ndjson"})

    sandbox = Sandbox.create(http=httpx.Client(base_url="http://execbox.test", transport=httpx.MockTransport(answer)))
    events: list[tuple[str, str]] = []
    out = sandbox.run("x", on_stdout=lambda t: events.append(("out", t)), on_stderr=lambda t: events.append(("err", t)))
    assert events == [("out", "a\n"), ("err", "e\n"), ("out", "b\n")] and out.stdout == "a\nb\n"
    lines.pop()
    with pytest.raises(APIError, match="without a result"):
        sandbox.run("x", on_stdout=lambda t: None)
