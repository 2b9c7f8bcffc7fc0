"""Embed the MP4E metadata document in MP4 and MOV files, and read it back.

The document travels in one top-level `uuid` box whose user type is `MP4E_UUID`. Export puts
that box at the end of the file, or right before a trailing `mfra` box, so no media byte moves
and every chunk offset (`stco`, `co64`, `tfhd`, `sidx`, `tfra`) stays valid without being
rewritten. The byte layout is documented in docs/mp4e-format.md.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import logging
import os
import re
import stat
import struct
import subprocess
import tempfile
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from mp4e.errors import (
    CorruptMedia,
    InvalidParameter,
    MetadataCorrupt,
    NoVideoStream,
    PayloadTooLarge,
    UnsupportedMedia,
)

logger = logging.getLogger(__name__)

MP4E_UUID = uuid.UUID("06f44389-a12d-48e5-bfdb-13d7ab6c2284")
FORMAT_VERSION = 1
ENCODING_JSON = 0
ENCODING_ZLIB_JSON = 1
MAX_DOCUMENT_BYTES = 256 * 1024 * 1024
# Documents shorter than this are stored as plain JSON because zlib saves little on them.
COMPRESS_MIN_BYTES = 1024

# version u8, encoding u8, reserved u16, stored length u64, JSON length u64, SHA-256 of the
# stored bytes. All integers are big-endian, like every ISO BMFF field.
PAYLOAD_HEADER = struct.Struct(">BBHQQ32s")

_BOX_HEADER = struct.Struct(">I4s")
_LARGESIZE = struct.Struct(">Q")
_UUID_BOX_TYPE = b"uuid"
_EBML_MAGIC = b"\x1a\x45\xdf\xa3"
_COPY_CHUNK_BYTES = 1 << 30
_FALLBACK_BUFFER_BYTES = 8 * 1024 * 1024
# ffmpeg 5.1 writes Vorbis into MP4 with object type 0xDD, from the user-private range of
# MPEG-4 systems, so players outside the ffmpeg family cannot be expected to decode it.
_CODECS_REJECTED_IN_MP4 = frozenset({"vorbis"})


@dataclass(frozen=True, slots=True)
class Box:
    """Header of one ISO BMFF box (QuickTime calls it an atom), located in its file."""

    type: str
    offset: int
    size: int
    header_size: int
    extended_type: bytes | None = None
    runs_to_end: bool = False

    @property
    def end(self) -> int:
        return self.offset + self.size

    @property
    def payload_offset(self) -> int:
        return self.offset + self.header_size

    @property
    def is_mp4e(self) -> bool:
        return self.type == "uuid" and self.extended_type == MP4E_UUID.bytes


@dataclass(frozen=True, slots=True)
class EmbedResult:
    """Outcome of `embed_metadata`; sizes and offsets are in bytes of the written file."""

    path: Path
    size_bytes: int
    box_offset: int
    box_size_bytes: int
    document_bytes: int
    compressed: bool
    replaced_documents: int
    fragmented: bool
    remuxed_from_webm: bool


@dataclass(frozen=True, slots=True)
class _Splice:
    """Source range [start, end) replaced in the output by `data` and then `zero_fill` zeros."""

    start: int
    end: int
    data: bytes
    zero_fill: int = 0


class _TruncatedHeaderError(Exception):
    """Raised internally when the file ends inside a box header."""

    def __init__(self, offset: int, raw: bytes) -> None:
        super().__init__(f"box header at byte {offset} is cut off after {len(raw)} bytes")
        self.offset = offset
        self.raw = raw


# --- box parsing -------------------------------------------------------------------------


def _read_box_header(file: BinaryIO, offset: int, end: int) -> Box:
    """Read the box header at `offset` of a parent range that ends at `end`.

    A size field of 0 means the box runs to `end`. The returned box may end after `end`
    when the file is truncated, so callers compare `box.end` with the range they expect.
    """
    file.seek(offset)
    available = end - offset
    raw = file.read(min(_BOX_HEADER.size, available))
    if len(raw) < _BOX_HEADER.size:
        raise _TruncatedHeaderError(offset, raw)

    size, type_bytes = _BOX_HEADER.unpack(raw)
    header_size = _BOX_HEADER.size
    runs_to_end = False
    if size == 1:
        raw_large = file.read(_LARGESIZE.size)
        if len(raw_large) < _LARGESIZE.size or available < 16:
            raise _TruncatedHeaderError(offset, raw + raw_large)
        (size,) = _LARGESIZE.unpack(raw_large)
        header_size += _LARGESIZE.size
    elif size == 0:
        size = available
        runs_to_end = True

    extended_type = None
    if type_bytes == _UUID_BOX_TYPE:
        extended_type = file.read(16)
        if len(extended_type) < 16 or available < header_size + 16:
            raise _TruncatedHeaderError(offset, raw + extended_type)
        header_size += 16

    box_type = type_bytes.decode("latin-1")
    if size < header_size:
        raise CorruptMedia(
            f"The {box_type!r} box at byte {offset} declares {size} bytes, fewer than its "
            f"{header_size}-byte header.",
            details={"offset": offset, "box_type": box_type, "size": size},
        )
    return Box(box_type, offset, size, header_size, extended_type, runs_to_end)


def iter_child_boxes(file: BinaryIO, start: int, end: int) -> Iterator[Box]:
    """Yield the boxes laid out one after another in the byte range [start, end).

    The last box yielded may end after `end` when the file is truncated. Raises CorruptMedia
    when a header is cut off or declares a size smaller than itself.
    """
    offset = start
    while offset < end:
        try:
            box = _read_box_header(file, offset, end)
        except _TruncatedHeaderError as exc:
            raise _truncated_header_error(exc) from None
        yield box
        offset = box.end


def list_top_level_boxes(path: Path) -> list[Box]:
    """Return the top-level boxes of an MP4 or MOV file, reading only their headers.

    Raises CorruptMedia when the file is empty, not ISO BMFF, or ends inside a box header.
    """
    with path.open("rb") as file:
        file_size = os.fstat(file.fileno()).st_size
        boxes, truncated = _scan_top_level(file, file_size)
    if truncated is not None:
        raise _truncated_header_error(truncated)
    return boxes


def _scan_top_level(
    file: BinaryIO, file_size: int
) -> tuple[list[Box], _TruncatedHeaderError | None]:
    """Read top-level box headers until the end of the file or a cut-off header."""
    if file_size == 0:
        raise CorruptMedia("The file is empty, so it is not an MP4 or MOV file.")

    boxes: list[Box] = []
    offset = 0
    while offset < file_size:
        try:
            box = _read_box_header(file, offset, file_size)
        except _TruncatedHeaderError as exc:
            return boxes, exc
        _check_top_level_type(box)
        boxes.append(box)
        offset = box.end
    return boxes, None


def _check_top_level_type(box: Box) -> None:
    # Registered top-level types (ftyp, moov, mdat, free, wide, uuid, moof, ...) are printable
    # ASCII. Anything else means the bytes are not a box header, e.g. a WebM or a text file.
    if all(0x20 <= ord(char) <= 0x7E for char in box.type):
        return
    raise CorruptMedia(
        f"The bytes at offset {box.offset} are not an ISO BMFF box header, so the file is "
        "not an MP4 or MOV file.",
        details={"offset": box.offset},
    )


def _truncated_header_error(exc: _TruncatedHeaderError) -> CorruptMedia:
    return CorruptMedia(
        f"The file ends inside the box header at byte {exc.offset}; it is truncated.",
        details={"offset": exc.offset, "reason": "truncated box header"},
    )


def _is_fragmented(file: BinaryIO, boxes: list[Box]) -> bool:
    """Return whether the file is a fragmented MP4 (`moof` boxes, or `mvex` in `moov`)."""
    if any(box.type == "moof" for box in boxes):
        return True

    for moov in (box for box in boxes if box.type == "moov"):
        try:
            children = list(iter_child_boxes(file, moov.payload_offset, moov.end))
        except CorruptMedia:
            # The result only fills EmbedResult.fragmented, and our box goes to the same
            # place in both kinds of file, so a moov we cannot walk is no reason to fail.
            logger.debug("Cannot walk the moov box at byte %d", moov.offset)
            continue
        if any(child.type == "mvex" for child in children):
            return True
    return False


def _starts_with_ebml(file: BinaryIO) -> bool:
    file.seek(0)
    return file.read(len(_EBML_MAGIC)) == _EBML_MAGIC


# --- document encoding -------------------------------------------------------------------


def _reject_json_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _serialize_document(document: bytes | dict[str, Any]) -> bytes:
    """Return the document as UTF-8 JSON, validating that it is one JSON object."""
    if isinstance(document, dict):
        try:
            text = json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
            data = text.encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise InvalidParameter(
                f"The metadata document cannot be written as JSON: {exc}.", field="document"
            ) from exc
    elif isinstance(document, bytes | bytearray | memoryview):
        data = bytes(document)
        try:
            parsed = json.loads(data.decode("utf-8"), parse_constant=_reject_json_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise InvalidParameter(
                f"The metadata document is not valid UTF-8 JSON: {exc}.", field="document"
            ) from exc
        if not isinstance(parsed, dict):
            raise InvalidParameter(
                f"The metadata document must be a JSON object, not {type(parsed).__name__}.",
                field="document",
            )
    else:
        raise InvalidParameter(
            f"The metadata document must be a dict or JSON bytes, not {type(document).__name__}.",
            field="document",
        )

    if len(data) > MAX_DOCUMENT_BYTES:
        raise PayloadTooLarge(
            f"The metadata document has {len(data)} bytes of JSON; the maximum is "
            f"{MAX_DOCUMENT_BYTES}.",
            field="document",
            details={"size_bytes": len(data), "max_bytes": MAX_DOCUMENT_BYTES},
        )
    return data


def _build_metadata_box(document_json: bytes) -> tuple[bytes, bool]:
    """Return our `uuid` box for the document and whether its payload is compressed."""
    stored = document_json
    encoding = ENCODING_JSON
    if len(document_json) >= COMPRESS_MIN_BYTES:
        compressed = zlib.compress(document_json, 6)
        if len(compressed) < len(document_json):
            stored = compressed
            encoding = ENCODING_ZLIB_JSON

    header = PAYLOAD_HEADER.pack(
        FORMAT_VERSION,
        encoding,
        0,
        len(stored),
        len(document_json),
        hashlib.sha256(stored).digest(),
    )
    # MAX_DOCUMENT_BYTES keeps the box far below 4 GiB, so a 32-bit size always fits.
    box_size = _BOX_HEADER.size + 16 + len(header) + len(stored)
    box = _BOX_HEADER.pack(box_size, _UUID_BOX_TYPE) + MP4E_UUID.bytes + header + stored
    return box, encoding == ENCODING_ZLIB_JSON


def _decode_metadata_box(file: BinaryIO, box: Box, file_size: int) -> dict[str, Any]:
    """Decode our box into the document, raising MetadataCorrupt for any damage."""

    def corrupt(reason: str) -> MetadataCorrupt:
        return MetadataCorrupt(
            f"The MP4E metadata box at byte {box.offset} is damaged ({reason}); export the "
            "video again to rewrite it.",
            details={"offset": box.offset, "reason": reason},
        )

    if box.end > file_size:
        raise corrupt(f"truncated: the box declares {box.size} bytes but the file ends first")
    payload_size = box.size - box.header_size
    if payload_size < PAYLOAD_HEADER.size:
        raise corrupt(f"payload of {payload_size} bytes is shorter than its header")

    file.seek(box.payload_offset)
    version, encoding, reserved, stored_size, json_size, digest = PAYLOAD_HEADER.unpack(
        file.read(PAYLOAD_HEADER.size)
    )
    if version != FORMAT_VERSION:
        raise corrupt(f"unsupported format version {version}, expected {FORMAT_VERSION}")
    if encoding not in (ENCODING_JSON, ENCODING_ZLIB_JSON):
        raise corrupt(f"unknown encoding {encoding}")
    if reserved != 0:
        raise corrupt(f"reserved field is {reserved}, expected 0")
    if stored_size != payload_size - PAYLOAD_HEADER.size:
        raise corrupt(
            f"header declares {stored_size} payload bytes but the box contains "
            f"{payload_size - PAYLOAD_HEADER.size}"
        )
    if json_size > MAX_DOCUMENT_BYTES:
        raise corrupt(f"declared JSON size {json_size} is over the maximum {MAX_DOCUMENT_BYTES}")

    stored = file.read(stored_size)
    if hashlib.sha256(stored).digest() != digest:
        raise corrupt("SHA-256 checksum mismatch")
    document_json = _inflate(stored, json_size, corrupt) if encoding else stored
    if len(document_json) != json_size:
        raise corrupt(f"JSON has {len(document_json)} bytes, header declares {json_size}")

    try:
        document = json.loads(document_json.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise corrupt(f"invalid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise corrupt(f"JSON is a {type(document).__name__}, not an object")
    return document


def _inflate(stored: bytes, json_size: int, corrupt: Any) -> bytes:
    decompressor = zlib.decompressobj()
    try:
        # One byte past the declared size is enough to detect a mismatch and bounds memory.
        data = decompressor.decompress(stored, json_size + 1)
    except zlib.error as exc:
        raise corrupt(f"zlib stream is invalid: {exc}") from exc
    if not decompressor.eof or decompressor.unused_data:
        raise corrupt("zlib stream is incomplete or followed by extra bytes")
    return data


# --- reading -----------------------------------------------------------------------------


def read_metadata(path: Path) -> dict[str, Any] | None:
    """Return the MP4E document embedded in an MP4 or MOV file, or None if it has none.

    Only box headers are read while looking for our box, never the media data. A WebM or
    Matroska file returns None because it cannot contain our box. Boxes of other tools,
    including other `uuid` boxes, are skipped. If the file contains several of our boxes (only
    possible when another tool wrote them), the last one is returned.

    Raises:
        MetadataCorrupt: our box is truncated, fails its checksum or contains invalid JSON;
            `details` contains the box offset and the reason.
        CorruptMedia: the file is empty or not ISO BMFF.
    """
    with path.open("rb") as file:
        file_size = os.fstat(file.fileno()).st_size
        if file_size and _starts_with_ebml(file):
            return None

        boxes, truncated = _scan_top_level(file, file_size)
        if truncated is not None:
            _check_truncated_tail(truncated)
        ours = [box for box in boxes if box.is_mp4e]
        if not ours:
            return None
        if len(ours) > 1:
            logger.warning(
                "File has %d MP4E metadata boxes; reading the last one at byte %d",
                len(ours),
                ours[-1].offset,
            )
        return _decode_metadata_box(file, ours[-1], file_size)


def _check_truncated_tail(truncated: _TruncatedHeaderError) -> None:
    """Raise MetadataCorrupt if a cut-off header at the end of the file may be ours."""
    raw = truncated.raw
    extended_type_offset = 16 if raw[:4] == b"\x00\x00\x00\x01" else 8
    extended_type = raw[extended_type_offset : extended_type_offset + 16]
    if raw[4:8] == _UUID_BOX_TYPE and MP4E_UUID.bytes.startswith(extended_type):
        raise MetadataCorrupt(
            f"The MP4E metadata box at byte {truncated.offset} is damaged (truncated inside "
            "its header); export the video again to rewrite it.",
            details={"offset": truncated.offset, "reason": "truncated box header"},
        )
    logger.warning(
        "Ignoring %d bytes after the last complete box at byte %d",
        len(raw),
        truncated.offset,
    )


# --- writing -----------------------------------------------------------------------------


def embed_metadata(
    src: Path, dst: Path, document: bytes | dict[str, Any], *, durable: bool = False
) -> EmbedResult:
    """Write `src` to `dst` with `document` embedded, replacing any earlier MP4E document.

    The media is copied, never re-encoded. `src` may be MP4 (moov before or after mdat,
    32- or 64-bit sizes, fragmented) or MOV; a WebM source is first remuxed into MP4 with
    `remux_webm_to_mp4`. Untouched byte ranges are copied with `os.copy_file_range`, and holes
    of a sparse `src` stay holes. `dst` is written to a temporary file in its directory and
    then renamed, so readers never see a partial file. `src` and `dst` may be the same path.
    With `durable`, the file is fsynced before the rename and its directory after it.

    Raises:
        InvalidParameter: the document is not a JSON object.
        PayloadTooLarge: the JSON is over MAX_DOCUMENT_BYTES.
        CorruptMedia: `src` is not ISO BMFF, has no moov box, or is truncated.
        UnsupportedMedia: a WebM codec cannot go into MP4, or the last box runs to the end
            of the file with a size over 4 GiB and no room to write a 64-bit size.
    """
    document_json = _serialize_document(document)
    metadata_box, compressed = _build_metadata_box(document_json)

    with src.open("rb") as file:
        is_webm = _starts_with_ebml(file)
    if not is_webm:
        return _embed_box(src, dst, metadata_box, len(document_json), compressed, durable)

    fd, remuxed_name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".remux.mp4", dir=dst.parent)
    os.close(fd)
    remuxed = Path(remuxed_name)
    try:
        remux_webm_to_mp4(src, remuxed)
        result = _embed_box(remuxed, dst, metadata_box, len(document_json), compressed, durable)
    finally:
        remuxed.unlink(missing_ok=True)
    return dataclasses.replace(result, remuxed_from_webm=True)


def _embed_box(
    src: Path,
    dst: Path,
    metadata_box: bytes,
    document_bytes: int,
    compressed: bool,
    durable: bool,
) -> EmbedResult:
    with src.open("rb") as file:
        src_stat = os.fstat(file.fileno())
        boxes = _scan_for_export(file, src_stat.st_size)
        fragmented = _is_fragmented(file, boxes)
        splices, box_offset, replaced = _plan_export(file, boxes, metadata_box)
        size_bytes = _write_atomically(file.fileno(), src_stat, dst, splices, durable)

    logger.debug(
        "Embedded %d-byte MP4E box at byte %d of %s (replaced %d, fragmented %s)",
        len(metadata_box),
        box_offset,
        dst,
        replaced,
        fragmented,
    )
    return EmbedResult(
        path=dst,
        size_bytes=size_bytes,
        box_offset=box_offset,
        box_size_bytes=len(metadata_box),
        document_bytes=document_bytes,
        compressed=compressed,
        replaced_documents=replaced,
        fragmented=fragmented,
        remuxed_from_webm=False,
    )


def _scan_for_export(file: BinaryIO, file_size: int) -> list[Box]:
    """Return the top-level boxes, rejecting files that cannot be exported safely."""
    boxes, truncated = _scan_top_level(file, file_size)
    if truncated is not None:
        raise _truncated_header_error(truncated)
    last = boxes[-1]
    if last.end > file_size:
        raise CorruptMedia(
            f"The {last.type!r} box at byte {last.offset} declares {last.size} bytes but the "
            f"file ends after {file_size - last.offset}; the file is truncated.",
            details={"offset": last.offset, "box_type": last.type, "reason": "truncated box"},
        )
    if not any(box.type == "moov" for box in boxes):
        raise CorruptMedia(
            "The file has no moov box, so it is not a playable MP4 or MOV file.",
            details={"box_types": sorted({box.type for box in boxes})},
        )
    return boxes


def _plan_export(
    file: BinaryIO, boxes: list[Box], metadata_box: bytes
) -> tuple[list[_Splice], int, int]:
    """Return the export's splices, the offset of our box and the replaced document count.

    Our box goes to the end of the file, or before a trailing `mfra` box so that readers
    still find its `mfro` trailer at the end. Nothing before that point moves. Earlier boxes
    of ours right before that point are dropped. Any others become `free` boxes of the same
    size, filled with zeros, because removing them would move bytes that offsets point to.
    """
    insert_index = len(boxes) - 1 if boxes[-1].type == "mfra" else len(boxes)
    drop_index = insert_index
    while drop_index > 0 and boxes[drop_index - 1].is_mp4e:
        drop_index -= 1
    insert_offset = boxes[insert_index].offset if insert_index < len(boxes) else boxes[-1].end
    drop_offset = boxes[drop_index].offset if drop_index < insert_index else insert_offset

    splices = [_free_box_splice(box) for box in boxes[:drop_index] if box.is_mp4e]
    # Only the last box of a file can run to its end, and then our box would follow it.
    if drop_index > 0 and boxes[drop_index - 1].runs_to_end:
        splices.append(_explicit_size_splice(file, boxes, drop_index - 1))
    splices.append(_Splice(drop_offset, insert_offset, metadata_box))

    replaced = sum(box.is_mp4e for box in boxes)
    return splices, drop_offset, replaced


def _free_box_splice(box: Box) -> _Splice:
    if box.size <= 0xFFFFFFFF:
        header = _BOX_HEADER.pack(box.size, b"free")
    else:
        header = _BOX_HEADER.pack(1, b"free") + _LARGESIZE.pack(box.size)
    return _Splice(box.offset, box.end, header, zero_fill=box.size - len(header))


def _explicit_size_splice(file: BinaryIO, boxes: list[Box], index: int) -> _Splice:
    """Give the last box, whose size field is 0 ("to end of file"), an explicit size.

    Appending after such a box would make it swallow ours. A size under 4 GiB fits the
    32-bit field. A larger one needs a 64-bit size, which fits without moving the payload
    only when an 8-byte `free` or `skip` box right before can be merged into the header.
    """
    box = boxes[index]
    if box.size <= 0xFFFFFFFF:
        return _Splice(box.offset, box.offset + 4, struct.pack(">I", box.size))

    previous = boxes[index - 1] if index > 0 else None
    if previous is None or previous.type not in ("free", "skip") or previous.size != 8:
        raise UnsupportedMedia(
            f"The last box {box.type!r} runs to the end of the file and is over 4 GiB, so its "
            "size cannot be written without moving the media data. Remux the file with "
            "ffmpeg -c copy first.",
            details={"offset": box.offset, "box_type": box.type, "size": box.size},
        )
    file.seek(box.offset + 4)
    type_bytes = file.read(4)
    header = _BOX_HEADER.pack(1, type_bytes) + _LARGESIZE.pack(box.size + previous.size)
    return _Splice(previous.offset, box.offset + _BOX_HEADER.size, header)


def _write_atomically(
    src_fd: int, src_stat: os.stat_result, dst: Path, splices: list[_Splice], durable: bool
) -> int:
    """Write the source with `splices` applied to `dst` via a temporary file; return its size."""
    fd, temp_name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    try:
        size_bytes = _write_spliced(src_fd, src_stat.st_size, fd, splices)
        os.fchmod(fd, stat.S_IMODE(src_stat.st_mode))
        if durable:
            os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(temp_name, dst)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        Path(temp_name).unlink(missing_ok=True)
        raise

    if durable:
        _fsync_directory(dst.parent)
    return size_bytes


def _fsync_directory(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _write_spliced(src_fd: int, src_size: int, dst_fd: int, splices: list[_Splice]) -> int:
    src_pos = 0
    dst_pos = 0
    for splice in sorted(splices, key=lambda item: item.start):
        _copy_range(src_fd, dst_fd, src_pos, splice.start, dst_pos)
        dst_pos += splice.start - src_pos
        os.pwrite(dst_fd, splice.data, dst_pos)
        # Zero fill is left unwritten: a new file reads as zeros there, and stays sparse.
        dst_pos += len(splice.data) + splice.zero_fill
        src_pos = splice.end

    _copy_range(src_fd, dst_fd, src_pos, src_size, dst_pos)
    dst_pos += src_size - src_pos
    os.ftruncate(dst_fd, dst_pos)
    return dst_pos


def _copy_range(src_fd: int, dst_fd: int, start: int, end: int, dst_start: int) -> None:
    """Copy source bytes [start, end) to `dst_start`, skipping holes of a sparse source."""
    for data_start, data_end in _data_extents(src_fd, start, end):
        _copy_bytes(src_fd, dst_fd, data_start, data_end, dst_start + data_start - start)


def _data_extents(fd: int, start: int, end: int) -> Iterator[tuple[int, int]]:
    """Yield the ranges of [start, end) that hold data, per SEEK_DATA and SEEK_HOLE.

    A filesystem without SEEK_DATA support yields the whole range as data.
    """
    position = start
    while position < end:
        try:
            data_start = os.lseek(fd, position, os.SEEK_DATA)
            data_end = os.lseek(fd, data_start, os.SEEK_HOLE)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                return
            if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                yield position, end
                return
            raise
        if data_start >= end:
            return
        yield data_start, min(data_end, end)
        position = data_end


def _copy_bytes(src_fd: int, dst_fd: int, start: int, end: int, dst_start: int) -> None:
    offset = start
    dst_offset = dst_start
    while offset < end:
        count = min(end - offset, _COPY_CHUNK_BYTES)
        try:
            copied = os.copy_file_range(src_fd, dst_fd, count, offset, dst_offset)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            _copy_bytes_buffered(src_fd, dst_fd, offset, end, dst_offset)
            return
        if copied == 0:
            raise CorruptMedia(
                f"The source file ended at byte {offset} while being copied, so it changed "
                "during the export; export it again.",
                details={"offset": offset},
            )
        offset += copied
        dst_offset += copied


def _copy_bytes_buffered(src_fd: int, dst_fd: int, start: int, end: int, dst_start: int) -> None:
    offset = start
    while offset < end:
        chunk = os.pread(src_fd, min(end - offset, _FALLBACK_BUFFER_BYTES), offset)
        if not chunk:
            raise CorruptMedia(
                f"The source file ended at byte {offset} while being copied, so it changed "
                "during the export; export it again.",
                details={"offset": offset},
            )
        written = 0
        while written < len(chunk):
            written += os.pwrite(dst_fd, chunk[written:], dst_start + offset - start + written)
        offset += len(chunk)


# --- WebM remux --------------------------------------------------------------------------


def remux_webm_to_mp4(src: Path, dst: Path) -> None:
    """Remux the video and audio of a WebM file into an MP4 at `dst` with ffmpeg `-c copy`.

    The MP4 has its moov box first, and no stream is re-encoded. VP9 and AV1 video and Opus
    audio go into MP4. Subtitle and attachment streams are dropped with a warning, because
    ffmpeg 5.1 rejects WebVTT in MP4 under `-c copy`. `dst` is written via a temporary file
    and a rename.

    Raises:
        UnsupportedMedia: a stream uses a codec that MP4 cannot carry here, e.g. VP8 (which
            ffmpeg's MP4 muxer rejects) or Vorbis; the message names the codec.
        NoVideoStream: the file has no video stream.
        CorruptMedia: ffprobe or ffmpeg cannot read the file.
    """
    streams = _probe_streams(src)
    _check_streams_fit_mp4(streams)

    # NOTE: ffmpeg runs without a time limit. A stream copy is bounded by disk speed, but a
    # caller that must bound it runs this in a worker with its own time limit.

    fd, temp_name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    command = [
        "ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(src),
        "-map", "0:v", "-map", "0:a?", "-c", "copy",
        "-movflags", "+faststart", "-f", "mp4", temp_name,
    ]  # fmt: skip
    try:
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            raise _remux_error(completed.stderr)
        os.chmod(temp_name, stat.S_IMODE(src.stat().st_mode))
        os.replace(temp_name, dst)
    finally:
        Path(temp_name).unlink(missing_ok=True)


def _probe_streams(path: Path) -> list[dict[str, Any]]:
    command = [
        "ffprobe", "-v", "error", "-show_entries", "stream=index,codec_type,codec_name",
        "-of", "json", str(path),
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise CorruptMedia(
            "ffprobe cannot read the WebM file; it is damaged or not a media file.",
            details={"stderr": completed.stderr.strip()[-2000:]},
        )
    streams: list[dict[str, Any]] = json.loads(completed.stdout).get("streams", [])
    return streams


def _check_streams_fit_mp4(streams: list[dict[str, Any]]) -> None:
    if not any(stream.get("codec_type") == "video" for stream in streams):
        raise NoVideoStream("The WebM file has no video stream.")

    rejected = sorted(
        {stream.get("codec_name", "") for stream in streams} & _CODECS_REJECTED_IN_MP4
    )
    if rejected:
        raise UnsupportedMedia(
            f"The WebM file uses the {', '.join(rejected)} codec, which most MP4 players "
            "cannot decode; re-encode the audio to Opus or AAC first.",
            details={"codecs": rejected},
        )

    dropped = [stream for stream in streams if stream.get("codec_type") not in ("video", "audio")]
    for stream in dropped:
        logger.warning(
            "Dropping %s stream %s (%s) while remuxing WebM into MP4",
            stream.get("codec_type"),
            stream.get("index"),
            stream.get("codec_name"),
        )


def _remux_error(stderr: str) -> UnsupportedMedia | CorruptMedia:
    match = re.search(r"Could not find tag for codec (\S+)", stderr)
    if match is not None:
        codec = match.group(1)
        return UnsupportedMedia(
            f"The WebM file uses the {codec} codec, which ffmpeg cannot put into MP4 without "
            "re-encoding; re-encode it to VP9, AV1 or H.264 first.",
            details={"codecs": [codec]},
        )
    return CorruptMedia(
        "ffmpeg failed to remux the WebM file into MP4.",
        details={"stderr": stderr.strip()[-2000:]},
    )
