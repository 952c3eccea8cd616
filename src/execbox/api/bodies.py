"""Reading request bodies with a size cap enforced as they stream in.

``read_params`` parses a JSON body (at most 32 MB and 100,000 values) into a pydantic model.
``receive_file`` parses ``multipart/form-data`` and writes the file part straight to disk
as it arrives, and ``receive_body`` does the same with a raw body, so an upload is never
held in memory. Both refuse an oversized body early: on its declared Content-Length, or
at the first chunk past the cap.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from execbox import jsonlimits
from execbox.errors import InvalidRequest, RequestTooLarge

MAX_BODY_BYTES = 32 * 1000**2
_PARSE_INLINE_BYTES = 256 * 1024  # larger bodies are parsed in a worker thread
# Values and object members a JSON body may hold (jsonlimits.json_values). Parsing holds
# the interpreter lock (no other request is served meanwhile) for about 1.5 us each:
# 100,000 cost at most ~0.15 s.
MAX_JSON_VALUES = 100_000
_counter: ProcessPoolExecutor | None = None


async def _check_values(body: bytes, limit: int) -> None:
    """400 if ``body`` holds more than ``limit`` values. Bodies that surely hold
    fewer (most, base64 images included) are not counted; the others are counted in a
    separate process, so the count does not stall the server either."""
    global _counter
    if jsonlimits.upper_bound(body) <= limit:
        return
    if _counter is None:
        _counter = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
    values = await asyncio.wrap_future(_counter.submit(jsonlimits.json_values, body))
    if values > limit:
        raise InvalidRequest(
            f"The request body holds about {values} JSON values and object members; at most "
            f"{limit} are accepted."
        )
Params = TypeVar("Params", bound=BaseModel)


async def read_params(
    request: Request, model: type[Params], max_bytes: int = MAX_BODY_BYTES, max_values: int | None = MAX_JSON_VALUES
) -> Params:
    """The JSON body as ``model``: 413 past ``max_bytes`` (32 MB), 400 past ``max_values``
    (None: no limit) or (with the failing fields) if invalid. Large bodies are parsed in a
    worker thread."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise RequestTooLarge(f"Request body exceeds {max_bytes} bytes.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise RequestTooLarge(f"Request body exceeds {max_bytes} bytes.")
    data = bytes(body)
    if max_values is not None:
        await _check_values(data, max_values)
    try:
        if len(data) > _PARSE_INLINE_BYTES:
            return await asyncio.to_thread(model.model_validate_json, data)
        return model.model_validate_json(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None


# Bytes a form may carry besides the file's own: boundaries, part headers, small fields.
# Enforced as they arrive too, since a chunked body declares no length.
FORM_OVERHEAD = 64 * 1024
MAX_FIELD_BYTES = 4 * 1024


@dataclass
class Upload:
    """What arrived: the file part's name and declared type, and the text fields."""

    filename: str | None = None
    content_type: str | None = None
    size: int = 0
    fields: dict[str, str] = field(default_factory=dict)


class _Receiver:
    """Callbacks for MultipartParser: file bytes to ``sink``, other parts to ``fields``."""

    def __init__(self, file_field: str, sink: BinaryIO, max_size: int) -> None:
        self.file_field = file_field
        self.sink = sink
        self.max_size = max_size
        self.upload = Upload()
        self._headers: dict[str, str] = {}
        self._header_field = b""
        self._header_value = b""
        self._name: str | None = None
        self._is_file = False
        self._value = bytearray()
        self._form_bytes = 0  # part headers and field values received so far

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.part_begin,
            "on_header_field": self.header_field,
            "on_header_value": self.header_value,
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": self.part_data,
            "on_part_end": self.part_end,
        }

    def part_begin(self) -> None:
        self._headers, self._name, self._is_file = {}, None, False
        self._value = bytearray()

    def _count(self, size: int) -> None:
        self._form_bytes += size
        if self._form_bytes > FORM_OVERHEAD:
            raise InvalidRequest(f"The form's headers and fields exceed {FORM_OVERHEAD} bytes.")

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._count(end - start)
        self._header_field += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._count(end - start)
        self._header_value += data[start:end]

    def header_end(self) -> None:
        self._headers[self._header_field.decode("latin-1").lower()] = self._header_value.decode("latin-1")
        self._header_field = self._header_value = b""

    def headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get("content-disposition"))
        self._name = _text(params.get(b"name", b""))
        if self._name == self.file_field and b"filename" in params:
            if self.upload.filename is not None:
                raise InvalidRequest(f"Send exactly one `{self.file_field}` part.")
            self._is_file = True
            self.upload.filename = _text(params[b"filename"])
            self.upload.content_type = self._headers.get("content-type")

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            self.upload.size += end - start
            if self.upload.size > self.max_size:
                raise RequestTooLarge(f"File exceeds the maximum size of {self.max_size} bytes.")
            self.sink.write(data[start:end])
        elif len(self._value) + end - start > MAX_FIELD_BYTES:
            raise InvalidRequest(f"Form field `{self._name}` is too long.")
        else:
            self._count(end - start)
            self._value += data[start:end]

    def part_end(self) -> None:
        if not self._is_file and self._name:
            self.upload.fields[self._name] = _text(bytes(self._value))


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


async def receive_file(request: Request, file_field: str, dest: Path, max_size: int) -> Upload:
    """Parse the request's multipart body, writing the ``file_field`` part to ``dest``.

    Raises InvalidRequest for a malformed form or a missing file part, and RequestTooLarge
    as soon as the declared length or the bytes received exceed ``max_size``.
    """
    ctype, params = parse_options_header(request.headers.get("content-type"))
    if ctype != b"multipart/form-data" or not params.get(b"boundary"):
        raise InvalidRequest(f"Expected a multipart/form-data body with a `{file_field}` part.")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_size + FORM_OVERHEAD:
        raise RequestTooLarge(f"Request exceeds the maximum file size of {max_size} bytes.")
    with dest.open("wb") as sink:
        receiver = _Receiver(file_field, sink, max_size)
        parser = MultipartParser(params[b"boundary"], receiver.callbacks())  # type: ignore[arg-type]
        try:
            async for chunk in request.stream():
                parser.write(chunk)
            parser.finalize()
        except FormParserError as exc:
            raise InvalidRequest(f"Malformed multipart body: {exc}") from None
    if receiver.upload.filename is None:
        raise InvalidRequest(f"Missing the `{file_field}` part (a file with a filename).")
    return receiver.upload


async def receive_body(request: Request, dest: Path, max_size: int) -> int:
    """Write the raw request body to ``dest`` as it arrives, at most ``max_size`` bytes
    (else RequestTooLarge); returns its size."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_size:
        raise RequestTooLarge(f"Request body exceeds the maximum size of {max_size} bytes.")
    size = 0
    with dest.open("wb") as sink:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_size:
                raise RequestTooLarge(f"Request body exceeds the maximum size of {max_size} bytes.")
            sink.write(chunk)
    return size
