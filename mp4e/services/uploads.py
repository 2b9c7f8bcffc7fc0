"""Receiving upload bytes onto disk with bounded memory and a size limit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from mp4e.errors import PayloadTooLarge
from mp4e.storage import Storage


class IncomingFile:
    """A file being received into the incoming directory; deleted unless `keep()` is called."""

    def __init__(self, storage: Storage, max_bytes: int) -> None:
        self.path = storage.new_incoming_path()
        self.max_bytes = max_bytes
        self.size_bytes = 0
        self._handle: BinaryIO | None = self.path.open("wb")
        self._kept = False

    def write(self, chunk: bytes) -> None:
        if self._handle is None:
            raise RuntimeError("The incoming file is already closed.")
        self.size_bytes += len(chunk)
        if self.size_bytes > self.max_bytes:
            raise PayloadTooLarge(
                f"The upload exceeds the limit of {self.max_bytes} bytes.",
                field="file",
                details={"limit": self.max_bytes},
            )
        self._handle.write(chunk)

    def finish(self) -> Path:
        """Close the file and return its path, which the caller now owns."""
        self.close()
        self._kept = True
        return self.path

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def discard(self) -> None:
        self.close()
        if not self._kept:
            self.path.unlink(missing_ok=True)


async def receive_stream(storage: Storage, chunks: AsyncIterator[bytes], max_bytes: int) -> Path:
    """Write `chunks` to a new incoming file and return its path."""
    incoming = IncomingFile(storage, max_bytes)
    try:
        async for chunk in chunks:
            incoming.write(chunk)
        return incoming.finish()
    finally:
        incoming.discard()


def copy_file_object(storage: Storage, source: BinaryIO, max_bytes: int) -> Path:
    """Copy an already spooled upload (GraphQL multipart) into a new incoming file."""
    incoming = IncomingFile(storage, max_bytes)
    try:
        while chunk := source.read(1024 * 1024):
            incoming.write(chunk)
        return incoming.finish()
    finally:
        incoming.discard()


def remove_quietly(path: Path | None) -> None:
    if path is not None:
        path.unlink(missing_ok=True)
