"""A small client for execbox's containers API: sandboxes from code, sync and async.

::

    from execbox.client import Sandbox

    with Sandbox.create("http://127.0.0.1:8000", api_key="...") as sandbox:
        sandbox.upload("data.csv", b"x,y\\n1,2\\n")
        result = sandbox.run("import pandas as pd; print(pd.read_csv('data.csv').sum())", on_stdout=print)
        print(result.return_code, sandbox.files())

``AsyncSandbox`` is the same with ``await``. A sandbox made by ``create`` is deleted when its
``with`` block ends; one opened with ``connect`` is left alone (``delete()`` removes it).

Output callbacks (``on_stdout``, ``on_stderr``) receive output as it is produced when the
server streams executions (``"stream": true``, newline-delimited JSON); a server that does not
answers the whole result at once, and the callbacks then receive all of it at the end.
``session=True`` asks for a live Python kernel whose variables persist between calls; a
server without kernels refuses it (``UnsupportedFeature``).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar
from urllib.parse import quote

import httpx

from execbox.protocol.containers import (
    ContainerFile,
    ContainerFileList,
    ContainerList,
    ContainerListItem,
    ContainerObject,
    ExecOutput,
)

__all__ = [
    "APIError",
    "AsyncSandbox",
    "ContainerFile",
    "ContainerListItem",
    "ContainerObject",
    "ExecOutput",
    "NotFoundError",
    "Sandbox",
    "UnsupportedFeature",
]

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, read=None)  # executions may run long; their limit is the server's
OutputCallback = Callable[[str], Any]
Data = bytes | str | IO[bytes] | Path
S = TypeVar("S", bound="Sandbox")
A = TypeVar("A", bound="AsyncSandbox")


class APIError(Exception):
    """An error answer of the server (Anthropic's envelope), or a broken stream."""

    def __init__(self, status_code: int, type: str, message: str, request_id: str | None = None) -> None:
        super().__init__(f"{status_code} {type}: {message}")
        self.status_code = status_code
        self.type = type
        self.message = message
        self.request_id = request_id


class NotFoundError(APIError):
    """404: no such container or file in this workspace (or the container was deleted)."""


class UnsupportedFeature(APIError):
    """The server does not offer what was asked for (e.g. ``session=True`` without kernels)."""


def _error(response: httpx.Response) -> APIError:
    try:
        body = response.json()
        error = body.get("error") or {}
        kind, message = str(error.get("type", "api_error")), str(error.get("message", response.text))
    except (ValueError, AttributeError):
        kind, message = "api_error", response.text[:500] or f"HTTP {response.status_code}"
    cls = NotFoundError if response.status_code == 404 else APIError
    return cls(response.status_code, kind, message, response.headers.get("request-id"))


def _exec_body(language: str, source: str, timeout: float | None, session: bool, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"code" if language == "python" else "command": source}
    if timeout is not None:
        body["timeout"] = timeout
    if session:
        body["session"] = True
    if stream:
        body["stream"] = True
    return body


def _refused_field(response: httpx.Response, name: str) -> bool:
    """Whether a 400 says the server does not know the body field ``name`` (an older server)."""
    if response.status_code != 400:
        return False
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return False
    return f"{name}:" in message and "xtra" in message  # pydantic's "Extra inputs are not permitted"


def _is_stream(response: httpx.Response) -> bool:
    return response.headers.get("content-type", "").split(";")[0].strip() in ("application/x-ndjson", "application/jsonl")


class _StreamReader:
    """Feeds the lines of a streamed execution to the callbacks; keeps the final result."""

    def __init__(self, on_stdout: OutputCallback | None, on_stderr: OutputCallback | None) -> None:
        self.on_stdout = on_stdout
        self.on_stderr = on_stderr
        self.result: ExecOutput | None = None

    def line(self, line: str, response: httpx.Response) -> None:
        if not line.strip():
            return
        try:
            event = json.loads(line)
        except ValueError:
            raise APIError(response.status_code, "api_error", f"bad line in the output stream: {line[:200]}") from None
        kind = event.get("type")
        if kind == "stdout" and self.on_stdout:
            self.on_stdout(event.get("text", ""))
        elif kind == "stderr" and self.on_stderr:
            self.on_stderr(event.get("text", ""))
        elif kind == "result":
            self.result = ExecOutput.model_validate({k: v for k, v in event.items() if k != "type"})
        elif kind == "error":
            error = event.get("error") or {}
            cls = NotFoundError if error.get("type") == "not_found_error" else APIError
            raise cls(response.status_code, error.get("type", "api_error"), error.get("message", ""),
                      response.headers.get("request-id"))

    def finish(self, response: httpx.Response) -> ExecOutput:
        if self.result is None:
            raise APIError(response.status_code, "api_error", "the output stream ended without a result")
        return self.result


def _refusal(response: httpx.Response, session: bool) -> APIError:
    if session and _refused_field(response, "session"):
        return UnsupportedFeature(
            400, "invalid_request_error", "This server keeps no live Python sessions (`session`).",
            response.headers.get("request-id"),
        )
    return _error(response)


def _quote_path(path: str) -> str:
    return quote(path.lstrip("/"), safe="/")


def _whole(result: ExecOutput, on_stdout: OutputCallback | None, on_stderr: OutputCallback | None) -> ExecOutput:
    """A result that came in one piece: hand its output to the callbacks now."""
    if on_stdout and result.stdout:
        on_stdout(result.stdout)
    if on_stderr and result.stderr:
        on_stderr(result.stderr)
    return result


API_VERSION = "2023-06-01"  # the Files API (``output``) requires an ``anthropic-version``


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"anthropic-version": API_VERSION}
    if api_key:
        headers["x-api-key"] = api_key
    return headers


def _content(data: Data) -> bytes | Iterator[bytes]:
    """Request content: bytes as they are, text as UTF-8, files (objects or paths) in pieces."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode()
    return _file_chunks(data)


def _file_chunks(source: IO[bytes] | Path) -> Iterator[bytes]:
    with source.open("rb") if isinstance(source, Path) else contextlib.nullcontext(source) as file:
        while chunk := file.read(256 * 1024):
            yield chunk


async def _async_chunks(source: IO[bytes] | Path) -> AsyncIterator[bytes]:
    """A file's pieces, each read in a worker thread (the event loop never waits on the disk)."""
    pieces = _file_chunks(source)
    try:
        while (chunk := await asyncio.to_thread(next, pieces, None)) is not None:
            yield chunk
    finally:
        pieces.close()


def _async_content(data: Data) -> bytes | AsyncIterator[bytes]:
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode()
    return _async_chunks(data)


class Sandbox:
    """A container on an execbox server, used synchronously."""

    def __init__(self, info: ContainerObject, http: httpx.Client, *, owned: bool, close_http: bool) -> None:
        self.info = info
        self._http = http
        self._owned = owned  # created here: deleted when the ``with`` block ends
        self._close_http = close_http
        self._streams: bool | None = None  # whether the server streams executions (None: not known yet)

    @property
    def id(self) -> str:
        return self.info.id

    # --- lifetime ----------------------------------------------------------------------------
    @staticmethod
    def _client(base_url: str, api_key: str | None, http: httpx.Client | None) -> tuple[httpx.Client, bool]:
        if http is not None:
            return http, False
        return httpx.Client(base_url=base_url, headers=_headers(api_key), timeout=DEFAULT_TIMEOUT), True

    @classmethod
    def create(
        cls: type[S], base_url: str = DEFAULT_BASE_URL, api_key: str | None = None, *, http: httpx.Client | None = None
    ) -> S:
        """A new container (deleted at the end of a ``with`` block)."""
        client, own = cls._client(base_url, api_key, http)
        response = client.post("/v1/containers")
        if response.status_code != 200:
            if own:
                client.close()
            raise _error(response)
        return cls(ContainerObject.model_validate(response.json()), client, owned=True, close_http=own)

    @classmethod
    def connect(
        cls: type[S], container_id: str, base_url: str = DEFAULT_BASE_URL, api_key: str | None = None,
        *, http: httpx.Client | None = None,
    ) -> S:
        """An existing container (left in place at the end of a ``with`` block)."""
        client, own = cls._client(base_url, api_key, http)
        response = client.get(f"/v1/containers/{quote(container_id, safe='')}")
        if response.status_code != 200:
            if own:
                client.close()
            raise _error(response)
        return cls(ContainerObject.model_validate(response.json()), client, owned=False, close_http=own)

    @classmethod
    def list(
        cls, base_url: str = DEFAULT_BASE_URL, api_key: str | None = None, *, page_size: int = 100,
        http: httpx.Client | None = None,
    ) -> Iterator[ContainerListItem]:
        """Every live container of the workspace, newest first (fetched a page at a time)."""
        client, own = cls._client(base_url, api_key, http)
        try:
            params: dict[str, Any] = {"limit": page_size}
            while True:
                response = client.get("/v1/containers", params=params)
                if response.status_code != 200:
                    raise _error(response)
                page = ContainerList.model_validate(response.json())
                yield from page.data
                if not page.has_more or page.last_id is None:
                    return
                params["after_id"] = page.last_id
        finally:
            if own:
                client.close()

    def refresh(self) -> ContainerObject:
        """Fetch the container's metadata again (its expiry moves with use)."""
        self.info = ContainerObject.model_validate(self._check(self._http.get(self._path())).json())
        return self.info

    def delete(self) -> None:
        """Delete the container now (an execution under way is stopped)."""
        self._check(self._http.delete(self._path()))
        self._owned = False

    def keep(self) -> None:
        """Leave the container in place when the ``with`` block ends."""
        self._owned = False

    def close(self) -> None:
        """Release the HTTP connection (the container stays)."""
        if self._close_http:
            self._http.close()

    def __enter__(self: S) -> S:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._owned:
                try:
                    self.delete()
                except NotFoundError:
                    pass
        finally:
            self.close()

    # --- running code ------------------------------------------------------------------------
    def run(
        self, code: str, *, timeout: float | None = None, session: bool = False,
        on_stdout: OutputCallback | None = None, on_stderr: OutputCallback | None = None,
    ) -> ExecOutput:
        """Run Python. ``session=True``: in the container's live kernel (variables persist)."""
        return self._exec("python", code, timeout, session, on_stdout, on_stderr)

    def run_bash(
        self, command: str, *, timeout: float | None = None,
        on_stdout: OutputCallback | None = None, on_stderr: OutputCallback | None = None,
    ) -> ExecOutput:
        """Run a bash command in the container's workspace."""
        return self._exec("bash", command, timeout, False, on_stdout, on_stderr)

    def _exec(
        self, language: str, source: str, timeout: float | None, session: bool,
        on_stdout: OutputCallback | None, on_stderr: OutputCallback | None,
    ) -> ExecOutput:
        stream = bool(on_stdout or on_stderr) and self._streams is not False
        body = _exec_body(language, source, timeout, session, stream)
        with self._http.stream("POST", self._path("/exec"), json=body) as response:
            if response.status_code != 200:
                response.read()
                if stream and _refused_field(response, "stream"):
                    self._streams = False  # an older server: ask again without streaming
                else:
                    raise _refusal(response, session)
            elif not _is_stream(response):
                return _whole(ExecOutput.model_validate_json(response.read()), on_stdout, on_stderr)
            else:
                self._streams = True
                reader = _StreamReader(on_stdout, on_stderr)
                for line in response.iter_lines():
                    reader.line(line, response)
                return reader.finish(response)
        return self._exec(language, source, timeout, session, on_stdout, on_stderr)

    # --- files -------------------------------------------------------------------------------
    def files(self) -> builtins.list[ContainerFile]:
        """The workspace's files (path relative to /workspace, size)."""
        return ContainerFileList.model_validate(self._check(self._http.get(self._path("/files"))).json()).data

    def upload(self, path: str, data: Data) -> ContainerFile:
        """Write ``data`` (bytes, text, a binary file object or a local ``Path``) to ``path`` in
        the workspace; returns the path written (``..`` and leading ``/`` are dropped)."""
        response = self._http.put(self._path(f"/files/{_quote_path(path)}"), content=_content(data))
        return ContainerFile.model_validate(self._check(response).json())

    def download(self, path: str) -> bytes:
        """A workspace file's bytes."""
        return self._check(self._http.get(self._path(f"/files/{_quote_path(path)}"))).content

    def download_to(self, path: str, destination: str | Path) -> Path:
        """Stream a workspace file into a local file."""
        destination = Path(destination)
        with self._http.stream("GET", self._path(f"/files/{_quote_path(path)}")) as response:
            if response.status_code != 200:
                response.read()
                raise _error(response)
            with destination.open("wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
        return destination

    def output(self, file_id: str) -> bytes:
        """A file an execution wrote to ``$OUTPUT_DIR`` (``result.files[i].file_id``)."""
        return self._check(self._http.get(f"/v1/files/{quote(file_id, safe='')}/content")).content

    # --- helpers -----------------------------------------------------------------------------
    def _path(self, suffix: str = "") -> str:
        return f"/v1/containers/{quote(self.id, safe='')}{suffix}"

    @staticmethod
    def _check(response: httpx.Response) -> httpx.Response:
        return _checked(response)

    def __repr__(self) -> str:
        return f"Sandbox(id={self.id!r}, expires_at={self.info.expires_at.isoformat()!r})"


class AsyncSandbox:
    """A container on an execbox server, used from asyncio; the same methods as ``Sandbox``."""

    def __init__(self, info: ContainerObject, http: httpx.AsyncClient, *, owned: bool, close_http: bool) -> None:
        self.info = info
        self._http = http
        self._owned = owned
        self._close_http = close_http
        self._streams: bool | None = None

    @property
    def id(self) -> str:
        return self.info.id

    # --- lifetime ----------------------------------------------------------------------------
    @staticmethod
    def _client(
        base_url: str, api_key: str | None, http: httpx.AsyncClient | None
    ) -> tuple[httpx.AsyncClient, bool]:
        if http is not None:
            return http, False
        return httpx.AsyncClient(base_url=base_url, headers=_headers(api_key), timeout=DEFAULT_TIMEOUT), True

    @classmethod
    async def create(
        cls: type[A], base_url: str = DEFAULT_BASE_URL, api_key: str | None = None,
        *, http: httpx.AsyncClient | None = None,
    ) -> A:
        """A new container (deleted at the end of an ``async with`` block)."""
        client, own = cls._client(base_url, api_key, http)
        response = await client.post("/v1/containers")
        if response.status_code != 200:
            if own:
                await client.aclose()
            raise _error(response)
        return cls(ContainerObject.model_validate(response.json()), client, owned=True, close_http=own)

    @classmethod
    async def connect(
        cls: type[A], container_id: str, base_url: str = DEFAULT_BASE_URL, api_key: str | None = None,
        *, http: httpx.AsyncClient | None = None,
    ) -> A:
        """An existing container (left in place at the end of an ``async with`` block)."""
        client, own = cls._client(base_url, api_key, http)
        response = await client.get(f"/v1/containers/{quote(container_id, safe='')}")
        if response.status_code != 200:
            if own:
                await client.aclose()
            raise _error(response)
        return cls(ContainerObject.model_validate(response.json()), client, owned=False, close_http=own)

    @classmethod
    async def list(
        cls, base_url: str = DEFAULT_BASE_URL, api_key: str | None = None, *, page_size: int = 100,
        http: httpx.AsyncClient | None = None,
    ) -> AsyncIterator[ContainerListItem]:
        """Every live container of the workspace, newest first (fetched a page at a time)."""
        client, own = cls._client(base_url, api_key, http)
        try:
            params: dict[str, Any] = {"limit": page_size}
            while True:
                response = await client.get("/v1/containers", params=params)
                if response.status_code != 200:
                    raise _error(response)
                page = ContainerList.model_validate(response.json())
                for item in page.data:
                    yield item
                if not page.has_more or page.last_id is None:
                    return
                params["after_id"] = page.last_id
        finally:
            if own:
                await client.aclose()

    async def refresh(self) -> ContainerObject:
        self.info = ContainerObject.model_validate(_checked(await self._http.get(self._path())).json())
        return self.info

    async def delete(self) -> None:
        _checked(await self._http.delete(self._path()))
        self._owned = False

    def keep(self) -> None:
        """Leave the container in place when the ``async with`` block ends."""
        self._owned = False

    async def close(self) -> None:
        if self._close_http:
            await self._http.aclose()

    async def __aenter__(self: A) -> A:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._owned:
                try:
                    await self.delete()
                except NotFoundError:
                    pass
        finally:
            await self.close()

    # --- running code ------------------------------------------------------------------------
    async def run(
        self, code: str, *, timeout: float | None = None, session: bool = False,
        on_stdout: OutputCallback | None = None, on_stderr: OutputCallback | None = None,
    ) -> ExecOutput:
        return await self._exec("python", code, timeout, session, on_stdout, on_stderr)

    async def run_bash(
        self, command: str, *, timeout: float | None = None,
        on_stdout: OutputCallback | None = None, on_stderr: OutputCallback | None = None,
    ) -> ExecOutput:
        return await self._exec("bash", command, timeout, False, on_stdout, on_stderr)

    async def _exec(
        self, language: str, source: str, timeout: float | None, session: bool,
        on_stdout: OutputCallback | None, on_stderr: OutputCallback | None,
    ) -> ExecOutput:
        stream = bool(on_stdout or on_stderr) and self._streams is not False
        body = _exec_body(language, source, timeout, session, stream)
        async with self._http.stream("POST", self._path("/exec"), json=body) as response:
            if response.status_code != 200:
                await response.aread()
                if stream and _refused_field(response, "stream"):
                    self._streams = False
                else:
                    raise _refusal(response, session)
            elif not _is_stream(response):
                return _whole(ExecOutput.model_validate_json(await response.aread()), on_stdout, on_stderr)
            else:
                self._streams = True
                reader = _StreamReader(on_stdout, on_stderr)
                async for line in response.aiter_lines():
                    reader.line(line, response)
                return reader.finish(response)
        return await self._exec(language, source, timeout, session, on_stdout, on_stderr)

    # --- files -------------------------------------------------------------------------------
    async def files(self) -> builtins.list[ContainerFile]:
        response = _checked(await self._http.get(self._path("/files")))
        return ContainerFileList.model_validate(response.json()).data

    async def upload(self, path: str, data: Data) -> ContainerFile:
        response = await self._http.put(self._path(f"/files/{_quote_path(path)}"), content=_async_content(data))
        return ContainerFile.model_validate(_checked(response).json())

    async def download(self, path: str) -> bytes:
        return _checked(await self._http.get(self._path(f"/files/{_quote_path(path)}"))).content

    async def output(self, file_id: str) -> bytes:
        return _checked(await self._http.get(f"/v1/files/{quote(file_id, safe='')}/content")).content

    def _path(self, suffix: str = "") -> str:
        return f"/v1/containers/{quote(self.id, safe='')}{suffix}"

    def __repr__(self) -> str:
        return f"AsyncSandbox(id={self.id!r}, expires_at={self.info.expires_at.isoformat()!r})"


def _checked(response: httpx.Response) -> httpx.Response:
    if response.status_code != 200:
        raise _error(response)
    return response
