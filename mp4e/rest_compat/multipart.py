"""Streaming multipart/form-data parsing for uploads.

Starlette's form parser spools every file to a temporary file first; this parser writes the
`file` part straight into the incoming directory as it arrives, so an upload costs one write
and a bounded amount of memory whatever its size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from python_multipart import MultipartParser
from python_multipart.multipart import parse_options_header
from starlette.requests import Request

from mp4e.errors import InvalidParameter
from mp4e.services.uploads import IncomingFile
from mp4e.storage import Storage

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

MAX_FIELD_BYTES = 64 * 1024


@dataclass
class UploadForm:
    fields: dict[str, str] = field(default_factory=dict)
    file_path: Path | None = None
    file_name: str | None = None


class _Collector:
    def __init__(self, storage: Storage, max_bytes: int) -> None:
        self.storage = storage
        self.max_bytes = max_bytes
        self.form = UploadForm()
        self.header_field = b""
        self.header_value = b""
        self.headers: dict[bytes, bytes] = {}
        self.part_name: str | None = None
        self.part_file_name: str | None = None
        self.value = bytearray()
        self.incoming: IncomingFile | None = None
        self.error: Exception | None = None

    def on_part_begin(self) -> None:
        self.headers = {}
        self.value = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[self.header_field.lower()] = self.header_value
        self.header_field = self.header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        self.part_name = options.get(b"name", b"").decode("utf-8", "replace")
        raw_file_name = options.get(b"filename")
        self.part_file_name = (
            raw_file_name.decode("utf-8", "replace") if raw_file_name is not None else None
        )
        if self.part_name == "file":
            if self.incoming is not None:
                raise InvalidParameter("Send exactly one 'file' part.", field="file")
            self.incoming = IncomingFile(self.storage, self.max_bytes)
            self.form.file_name = self.part_file_name

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.part_name == "file" and self.incoming is not None:
            self.incoming.write(data[start:end])
            return
        self.value += data[start:end]
        if len(self.value) > MAX_FIELD_BYTES:
            raise InvalidParameter(
                f"The form field '{self.part_name}' is too long.", field=self.part_name
            )

    def on_part_end(self) -> None:
        if self.part_name == "file" and self.incoming is not None:
            self.form.file_path = self.incoming.finish()
        elif self.part_name:
            self.form.fields[self.part_name] = self.value.decode("utf-8", "replace")


async def parse_upload(request: Request, storage: Storage, max_bytes: int) -> UploadForm:
    """Parse a multipart upload; the caller owns `form.file_path` and must delete it on error."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise InvalidParameter(
            "Send the upload as multipart/form-data with a 'file' field.", field="file"
        )
    collector = _Collector(storage, max_bytes)
    callbacks: MultipartCallbacks = {
        "on_part_begin": collector.on_part_begin,
        "on_header_field": collector.on_header_field,
        "on_header_value": collector.on_header_value,
        "on_header_end": collector.on_header_end,
        "on_headers_finished": collector.on_headers_finished,
        "on_part_data": collector.on_part_data,
        "on_part_end": collector.on_part_end,
    }
    parser = MultipartParser(boundary, callbacks)
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except BaseException:
        if collector.incoming is not None:
            collector.incoming.discard()
        if collector.form.file_path is not None:
            collector.form.file_path.unlink(missing_ok=True)
        raise
    return collector.form
