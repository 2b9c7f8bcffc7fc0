"""Tests of embedding the MP4E document in MP4, MOV and remuxed WebM files."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import uuid
import zlib
from pathlib import Path
from typing import Any

import av
import decord
import pytest

from mp4e.errors import CorruptMedia, InvalidParameter, MetadataCorrupt, UnsupportedMedia
from mp4e.vision.mp4box import (
    MP4E_UUID,
    Box,
    embed_metadata,
    list_top_level_boxes,
    read_metadata,
)

XMP_UUID = uuid.UUID("be7acfcb-97a9-42e8-9c71-999491e3afac")
FRAME_COUNT = 25
DOCUMENT_A = {"version": 1, "title": "first", "tracks": [{"id": 1, "frames": [0, 1, 2]}]}
DOCUMENT_B = {"version": 2, "title": "second", "tracks": []}
# Just over 4 GiB, so every chunk offset of the large sparse files needs 64 bits.
LARGE_HOLE_BYTES = (1 << 32) + (1 << 20)
_LAVFI_INPUTS = [
    "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25",
    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
    "-t", "1",
]  # fmt: skip


def _ffmpeg(*args: str | Path) -> None:
    command = ["ffmpeg", "-nostdin", "-v", "error", "-y", *map(str, args)]
    subprocess.run(command, check=True, capture_output=True)


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Make one-second 160x120 source videos, each with a video and an audio stream."""
    folder = tmp_path_factory.mktemp("sources")
    h264 = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"]
    vpx = ["-deadline", "realtime", "-cpu-used", "8"]
    paths = {
        "moov_last": folder / "moov_last.mp4",
        "faststart": folder / "faststart.mp4",
        "mov": folder / "clip.mov",
        "fragmented": folder / "fragmented.mp4",
        "vp9_opus": folder / "vp9_opus.webm",
        "vp8_opus": folder / "vp8_opus.webm",
        "vp9_vorbis": folder / "vp9_vorbis.webm",
    }
    _ffmpeg(*_LAVFI_INPUTS, *h264, paths["moov_last"])
    _ffmpeg("-i", paths["moov_last"], "-c", "copy", "-movflags", "+faststart", paths["faststart"])
    _ffmpeg("-i", paths["moov_last"], "-c", "copy", paths["mov"])
    fragment_flags = "frag_keyframe+empty_moov"
    _ffmpeg(
        "-i", paths["moov_last"], "-c", "copy", "-movflags", fragment_flags, paths["fragmented"]
    )
    _ffmpeg(*_LAVFI_INPUTS, "-c:v", "libvpx-vp9", *vpx, "-c:a", "libopus", paths["vp9_opus"])
    _ffmpeg(*_LAVFI_INPUTS, "-c:v", "libvpx", *vpx, "-c:a", "libopus", paths["vp8_opus"])
    _ffmpeg(*_LAVFI_INPUTS, "-c:v", "libvpx-vp9", *vpx, "-c:a", "libvorbis", paths["vp9_vorbis"])
    return paths


def _probe(path: Path) -> dict[str, Any]:
    """Return the streams (with decoded frame counts) and duration that ffprobe reports."""
    entries = (
        "stream=index,codec_type,codec_name,width,height,sample_rate,channels,nb_read_frames"
        ":format=duration"
    )
    command = ["ffprobe", "-v", "error", "-count_frames", "-show_entries", entries]
    completed = subprocess.run(
        [*command, "-of", "json", str(path)], check=True, capture_output=True, text=True
    )
    return json.loads(completed.stdout)


def _ffmpeg_decode_output(path: Path) -> str:
    """Decode every stream with ffmpeg and return what it printed at level error."""
    command = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "null", "-"]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    return completed.stdout + completed.stderr


def _decord_frame_count(path: Path) -> int:
    reader = decord.VideoReader(str(path))
    frames = reader.get_batch(list(range(len(reader)))).asnumpy()
    return int(frames.shape[0])


def _pyav_frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def _our_boxes(path: Path) -> list[Box]:
    return [box for box in list_top_level_boxes(path) if box.is_mp4e]


def _box_bytes(path: Path, box: Box) -> bytes:
    with path.open("rb") as file:
        file.seek(box.offset)
        return file.read(box.size)


def _uuid_box(user_type: uuid.UUID, payload: bytes) -> bytes:
    return struct.pack(">I4s", 24 + len(payload), b"uuid") + user_type.bytes + payload


def _handmade_mp4e_box(
    stored: bytes,
    *,
    version: int = 1,
    encoding: int = 0,
    reserved: int = 0,
    json_size: int | None = None,
) -> bytes:
    """Build our box byte by byte as docs/mp4e-format.md lays it out."""
    header = struct.pack(
        ">BBHQQ32s",
        version,
        encoding,
        reserved,
        len(stored),
        len(stored) if json_size is None else json_size,
        hashlib.sha256(stored).digest(),
    )
    return _uuid_box(MP4E_UUID, header + stored)


# --- playback after export ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["faststart", "moov_last", "mov", "fragmented"])
def test_embed_metadata_keeps_file_playable(
    sources: dict[str, Path], tmp_path: Path, name: str
) -> None:
    src = sources[name]
    out = tmp_path / f"out{src.suffix}"

    result = embed_metadata(src, out, DOCUMENT_A)

    assert _probe(out) == _probe(src)
    assert _ffmpeg_decode_output(out) == ""
    assert _decord_frame_count(out) == FRAME_COUNT
    assert _pyav_frame_count(out) == FRAME_COUNT
    assert read_metadata(out) == DOCUMENT_A
    assert result.size_bytes == out.stat().st_size
    assert result.fragmented is (name == "fragmented")


@pytest.mark.parametrize("name", ["faststart", "moov_last", "mov"])
def test_embed_metadata_copies_source_bytes_unchanged(
    sources: dict[str, Path], tmp_path: Path, name: str
) -> None:
    src = sources[name]
    out = tmp_path / f"out{src.suffix}"

    result = embed_metadata(src, out, DOCUMENT_A)

    source_bytes = src.read_bytes()
    assert out.read_bytes()[: len(source_bytes)] == source_bytes
    assert result.box_offset == len(source_bytes)
    assert result.size_bytes == len(source_bytes) + result.box_size_bytes


def test_embed_metadata_keeps_mfra_last(sources: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"

    embed_metadata(sources["fragmented"], out, DOCUMENT_A)
    embed_metadata(out, out, DOCUMENT_B)

    types = [box.type for box in list_top_level_boxes(out)]
    assert types[-2:] == ["uuid", "mfra"]
    assert len(_our_boxes(out)) == 1
    assert read_metadata(out) == DOCUMENT_B
    assert _ffmpeg_decode_output(out) == ""


def test_embed_metadata_remuxes_vp9_opus_webm(sources: dict[str, Path], tmp_path: Path) -> None:
    src = sources["vp9_opus"]
    out = tmp_path / "out.mp4"

    result = embed_metadata(src, out, DOCUMENT_A)

    source_probe = _probe(src)
    out_probe = _probe(out)
    assert result.remuxed_from_webm is True
    assert list_top_level_boxes(out)[0].type == "ftyp"
    for source_stream, out_stream in zip(
        source_probe["streams"], out_probe["streams"], strict=True
    ):
        assert out_stream["codec_name"] == source_stream["codec_name"]
        assert out_stream["nb_read_frames"] == source_stream["nb_read_frames"]
    # MP4 counts the Opus pre-skip and last packet differently from WebM, so the container
    # durations differ by a few tens of milliseconds while every packet is kept.
    source_duration = float(source_probe["format"]["duration"])
    out_duration = float(out_probe["format"]["duration"])
    assert abs(out_duration - source_duration) < 0.05
    assert _ffmpeg_decode_output(out) == ""
    assert _decord_frame_count(out) == FRAME_COUNT
    assert _pyav_frame_count(out) == FRAME_COUNT
    assert read_metadata(out) == DOCUMENT_A


def test_embed_metadata_drops_webm_subtitles(
    sources: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    subtitles = tmp_path / "subtitles.vtt"
    subtitles.write_text("WEBVTT\n\n00:00.000 --> 00:00.900\nhello\n", encoding="utf-8")
    src = tmp_path / "subtitled.webm"
    _ffmpeg("-i", sources["vp9_opus"], "-i", subtitles, "-map", "0", "-map", "1", "-c", "copy", src)
    out = tmp_path / "out.mp4"

    embed_metadata(src, out, DOCUMENT_A)

    codec_types = [stream["codec_type"] for stream in _probe(out)["streams"]]
    assert codec_types == ["video", "audio"]
    assert "Dropping subtitle stream 2 (webvtt)" in caplog.text
    assert read_metadata(out) == DOCUMENT_A


@pytest.mark.parametrize(
    ("name", "codec"),
    [
        pytest.param("vp8_opus", "vp8", id="vp8-refused-by-ffmpeg"),
        pytest.param("vp9_vorbis", "vorbis", id="vorbis-private-in-mp4"),
    ],
)
def test_embed_metadata_rejects_webm_codec(
    sources: dict[str, Path], tmp_path: Path, name: str, codec: str
) -> None:
    out = tmp_path / "out.mp4"

    with pytest.raises(UnsupportedMedia) as caught:
        embed_metadata(sources[name], out, DOCUMENT_A)

    assert codec in caught.value.message
    assert caught.value.details["codecs"] == [codec]
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


# --- replacing an earlier document -------------------------------------------------------


def test_embed_metadata_twice_keeps_one_document(sources: dict[str, Path], tmp_path: Path) -> None:
    first = tmp_path / "first.mp4"
    second = tmp_path / "second.mp4"
    third = tmp_path / "third.mp4"

    embed_metadata(sources["faststart"], first, DOCUMENT_A)
    result = embed_metadata(first, second, DOCUMENT_B)
    embed_metadata(second, third, DOCUMENT_A)

    assert len(_our_boxes(second)) == 1
    assert read_metadata(second) == DOCUMENT_B
    assert result.replaced_documents == 1
    assert third.stat().st_size == first.stat().st_size
    assert third.read_bytes() == first.read_bytes()


def test_embed_metadata_in_place_replaces_document(
    sources: dict[str, Path], tmp_path: Path
) -> None:
    video = tmp_path / "video.mp4"
    shutil.copyfile(sources["moov_last"], video)

    sizes = []
    for _ in range(3):
        embed_metadata(video, video, DOCUMENT_A)
        sizes.append(video.stat().st_size)
    result = embed_metadata(video, video, DOCUMENT_B)

    assert read_metadata(video) == DOCUMENT_B
    assert len(_our_boxes(video)) == 1
    assert sizes[0] == sizes[1] == sizes[2]
    assert result.size_bytes == sources["moov_last"].stat().st_size + result.box_size_bytes
    assert [path.name for path in tmp_path.iterdir()] == ["video.mp4"]


def test_embed_metadata_frees_document_before_foreign_box(
    sources: dict[str, Path], tmp_path: Path
) -> None:
    # Given a document of ours that another tool has appended a box after
    exported = tmp_path / "exported.mp4"
    embed_metadata(sources["moov_last"], exported, DOCUMENT_A)
    old_box = _our_boxes(exported)[0]
    with exported.open("ab") as file:
        file.write(_uuid_box(XMP_UUID, b"<x:xmpmeta/>"))

    # When it is exported again, twice
    second = tmp_path / "second.mp4"
    third = tmp_path / "third.mp4"
    embed_metadata(exported, second, DOCUMENT_B)
    embed_metadata(second, third, DOCUMENT_B)

    # Then the old box became a zeroed free box and the size stops growing
    freed = next(box for box in list_top_level_boxes(second) if box.offset == old_box.offset)
    assert freed.type == "free"
    assert freed.size == old_box.size
    assert _box_bytes(second, freed)[8:] == bytes(old_box.size - 8)
    assert len(_our_boxes(second)) == 1
    assert read_metadata(second) == DOCUMENT_B
    assert third.stat().st_size == second.stat().st_size
    assert _probe(third) == _probe(sources["moov_last"])


# --- foreign boxes -----------------------------------------------------------------------


def test_read_metadata_ignores_foreign_uuid_box(sources: dict[str, Path], tmp_path: Path) -> None:
    video = tmp_path / "xmp.mp4"
    shutil.copyfile(sources["moov_last"], video)
    with video.open("ab") as file:
        file.write(_uuid_box(XMP_UUID, b"<x:xmpmeta xmlns:x='adobe:ns:meta/'/>"))

    document = read_metadata(video)

    assert document is None


def test_embed_metadata_preserves_foreign_boxes(sources: dict[str, Path], tmp_path: Path) -> None:
    video = tmp_path / "xmp.mp4"
    shutil.copyfile(sources["faststart"], video)
    xmp_box = _uuid_box(XMP_UUID, b"<x:xmpmeta xmlns:x='adobe:ns:meta/'/>")
    with video.open("ab") as file:
        file.write(xmp_box)
    out = tmp_path / "out.mp4"

    embed_metadata(video, out, DOCUMENT_A)

    boxes = {box.type: box for box in list_top_level_boxes(out) if not box.is_mp4e}
    source_boxes = {box.type: box for box in list_top_level_boxes(video)}
    assert _box_bytes(out, boxes["uuid"]) == xmp_box
    # moov carries ffmpeg's udta entries; none of it may change.
    assert _box_bytes(out, boxes["moov"]) == _box_bytes(video, source_boxes["moov"])
    assert read_metadata(out) == DOCUMENT_A


# --- damaged documents -------------------------------------------------------------------


def _flip_byte(path: Path, offset: int) -> None:
    with path.open("r+b") as file:
        file.seek(offset)
        value = file.read(1)[0]
        file.seek(offset)
        file.write(bytes([value ^ 0xFF]))


@pytest.mark.parametrize(
    ("damage", "reason_part"),
    [
        pytest.param("flip_last_payload_byte", "checksum", id="flipped-payload"),
        pytest.param("flip_stored_length", "payload bytes", id="flipped-length"),
        pytest.param("flip_version", "version", id="flipped-version"),
        pytest.param("truncate_payload", "truncated", id="truncated-payload"),
        pytest.param("truncate_uuid", "truncated", id="truncated-header"),
    ],
)
def test_read_metadata_damaged_box_raises(
    sources: dict[str, Path], tmp_path: Path, damage: str, reason_part: str
) -> None:
    video = tmp_path / "video.mp4"
    embed_metadata(sources["faststart"], video, DOCUMENT_A)
    box = _our_boxes(video)[0]
    if damage == "flip_last_payload_byte":
        _flip_byte(video, box.end - 1)
    elif damage == "flip_stored_length":
        _flip_byte(video, box.payload_offset + 11)
    elif damage == "flip_version":
        _flip_byte(video, box.payload_offset)
    elif damage == "truncate_payload":
        os.truncate(video, box.end - 5)
    else:
        os.truncate(video, box.offset + 12)

    with pytest.raises(MetadataCorrupt) as caught:
        read_metadata(video)

    assert caught.value.details["offset"] == box.offset
    assert reason_part in caught.value.details["reason"]


@pytest.mark.parametrize(
    ("box", "reason_part"),
    [
        pytest.param(_handmade_mp4e_box(b"{not json"), "invalid JSON", id="invalid-json"),
        pytest.param(_handmade_mp4e_box(b"[1, 2]"), "not an object", id="json-array"),
        pytest.param(_handmade_mp4e_box(b"\xff{}"), "invalid JSON", id="invalid-utf8"),
        pytest.param(_handmade_mp4e_box(b"{}", encoding=7), "encoding", id="unknown-encoding"),
        pytest.param(_handmade_mp4e_box(b"{}", reserved=1), "reserved", id="reserved-set"),
        pytest.param(_handmade_mp4e_box(b"{}", encoding=1), "zlib", id="zlib-flag-on-plain-json"),
        pytest.param(
            _handmade_mp4e_box(zlib.compress(b'{"a":1}'), encoding=1, json_size=3),
            "bytes",
            id="zlib-size-mismatch",
        ),
    ],
)
def test_read_metadata_invalid_payload_raises(
    sources: dict[str, Path], tmp_path: Path, box: bytes, reason_part: str
) -> None:
    video = tmp_path / "video.mp4"
    video.write_bytes(sources["faststart"].read_bytes() + box)

    with pytest.raises(MetadataCorrupt) as caught:
        read_metadata(video)

    assert reason_part in caught.value.details["reason"]


def test_read_metadata_handmade_box_matches_documented_layout(
    sources: dict[str, Path], tmp_path: Path
) -> None:
    document = {"title": "written by another implementation", "tracks": [1, 2]}
    compressed = zlib.compress(json.dumps(document).encode())
    json_size = len(json.dumps(document).encode())
    video = tmp_path / "video.mp4"
    box = _handmade_mp4e_box(compressed, encoding=1, json_size=json_size)
    video.write_bytes(sources["faststart"].read_bytes() + box)

    assert read_metadata(video) == document


def test_read_metadata_accepts_64bit_box_size(sources: dict[str, Path], tmp_path: Path) -> None:
    stored = b'{"title":"large form"}'
    header = struct.pack(
        ">BBHQQ32s", 1, 0, 0, len(stored), len(stored), hashlib.sha256(stored).digest()
    )
    body = MP4E_UUID.bytes + header + stored
    box = struct.pack(">I4sQ", 1, b"uuid", 16 + len(body)) + body
    video = tmp_path / "video.mp4"
    video.write_bytes(sources["faststart"].read_bytes() + box)

    document = read_metadata(video)

    assert document == {"title": "large form"}


def test_embed_metadata_overwrites_damaged_document(
    sources: dict[str, Path], tmp_path: Path
) -> None:
    video = tmp_path / "video.mp4"
    embed_metadata(sources["faststart"], video, DOCUMENT_A)
    _flip_byte(video, _our_boxes(video)[0].end - 1)

    embed_metadata(video, video, DOCUMENT_B)

    assert read_metadata(video) == DOCUMENT_B
    assert len(_our_boxes(video)) == 1


# --- documents and sources that are rejected ---------------------------------------------


def test_read_metadata_without_document_returns_none(sources: dict[str, Path]) -> None:
    assert read_metadata(sources["moov_last"]) is None


def test_read_metadata_webm_returns_none(sources: dict[str, Path]) -> None:
    assert read_metadata(sources["vp9_opus"]) is None


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(b"[1, 2]", id="json-array"),
        pytest.param(b"{not json", id="invalid-json"),
        pytest.param(b'{"a": NaN}', id="nan-constant"),
        pytest.param({"a": float("nan")}, id="nan-float"),
        pytest.param({"a": object()}, id="not-serializable"),
        pytest.param(42, id="wrong-type"),
    ],
)
def test_embed_metadata_invalid_document_raises(
    sources: dict[str, Path], tmp_path: Path, document: Any
) -> None:
    out = tmp_path / "out.mp4"

    with pytest.raises(InvalidParameter) as caught:
        embed_metadata(sources["faststart"], out, document)

    assert caught.value.field == "document"
    assert not out.exists()


def test_embed_metadata_stores_json_bytes_as_given(
    sources: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out.mp4"
    document_json = b'{ "title" : "spaced",\n "n": 1 }'

    embed_metadata(sources["faststart"], out, document_json)

    box = _our_boxes(out)[0]
    assert _box_bytes(out, box).endswith(document_json)
    assert read_metadata(out) == {"title": "spaced", "n": 1}


def test_embed_metadata_compresses_large_document(sources: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    frames = [{"frame": i, "box_xyxy": [i, i + 1, i + 20, i + 30]} for i in range(20000)]
    document = {"tracks": [{"id": 1, "frames": frames}]}

    result = embed_metadata(sources["faststart"], out, document)

    assert result.compressed is True
    assert result.box_size_bytes < result.document_bytes / 4
    assert read_metadata(out) == document


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x00\x01\x02 plain bytes, not a box" * 10, id="not-bmff"),
    ],
)
def test_embed_metadata_non_mp4_raises(tmp_path: Path, content: bytes) -> None:
    src = tmp_path / "src.mp4"
    src.write_bytes(content)

    with pytest.raises(CorruptMedia):
        embed_metadata(src, tmp_path / "out.mp4", DOCUMENT_A)


def test_embed_metadata_truncated_source_raises(sources: dict[str, Path], tmp_path: Path) -> None:
    src = tmp_path / "truncated.mp4"
    src.write_bytes(sources["faststart"].read_bytes()[:-100])

    with pytest.raises(CorruptMedia) as caught:
        embed_metadata(src, tmp_path / "out.mp4", DOCUMENT_A)

    assert caught.value.details["box_type"] == "mdat"


def test_embed_metadata_keeps_permission_bits(sources: dict[str, Path], tmp_path: Path) -> None:
    src = tmp_path / "src.mp4"
    shutil.copyfile(sources["faststart"], src)
    src.chmod(0o640)
    out = tmp_path / "out.mp4"

    embed_metadata(src, out, DOCUMENT_A)

    assert out.stat().st_mode & 0o777 == 0o640


# --- size fields ---------------------------------------------------------------------------


def test_embed_metadata_mdat_to_end_gets_explicit_size(
    sources: dict[str, Path], tmp_path: Path
) -> None:
    src = tmp_path / "to_end.mp4"
    shutil.copyfile(sources["faststart"], src)
    mdat = list_top_level_boxes(src)[-1]
    with src.open("r+b") as file:
        file.seek(mdat.offset)
        file.write(struct.pack(">I", 0))
    out = tmp_path / "out.mp4"

    embed_metadata(src, out, DOCUMENT_A)

    out_mdat = next(box for box in list_top_level_boxes(out) if box.type == "mdat")
    assert list_top_level_boxes(src)[-1].runs_to_end is True
    assert out_mdat.runs_to_end is False
    assert out_mdat.size == mdat.size
    assert _probe(out) == _probe(sources["faststart"])
    assert read_metadata(out) == DOCUMENT_A


def _split_boxes(data: bytes) -> list[tuple[bytes, bytes]]:
    boxes = []
    offset = 0
    while offset < len(data):
        size, box_type = struct.unpack(">I4s", data[offset : offset + 8])
        boxes.append((box_type, data[offset + 8 : offset + size]))
        offset += size
    return boxes


def _pack_box(box_type: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), box_type) + payload


def _shift_to_co64(boxes_data: bytes, shift: int) -> bytes:
    """Rewrite every `stco` under moov as a `co64` whose offsets are moved by `shift`."""
    out = b""
    for box_type, payload in _split_boxes(boxes_data):
        if box_type in (b"moov", b"trak", b"mdia", b"minf", b"stbl"):
            payload = _shift_to_co64(payload, shift)
        elif box_type == b"stco":
            version_flags, count = struct.unpack(">4sI", payload[:8])
            offsets = struct.unpack(f">{count}I", payload[8 : 8 + 4 * count])
            shifted = struct.pack(f">{count}Q", *(offset + shift for offset in offsets))
            box_type = b"co64"
            payload = version_flags + struct.pack(">I", count) + shifted
        out += _pack_box(box_type, payload)
    return out


def _build_sparse_large_mp4(small: Path, out: Path, mdat_header: str) -> None:
    """Write `small` (moov first, mdat last) as a file over 4 GiB that is mostly a hole.

    The mdat starts with LARGE_HOLE_BYTES of hole and ends with the real samples, so every
    chunk offset is above 4 GiB and moov uses `co64`. `mdat_header` picks the size field:
    "largesize" (size 1 plus a 64-bit size), "to_end_after_free" (size 0 after an 8-byte
    free box, as ffmpeg lays out its files) or "to_end" (size 0, no free box).
    """
    data = small.read_bytes()
    boxes = dict(_split_boxes(data))
    mdat = next(box for box in list_top_level_boxes(small) if box.type == "mdat")
    ftyp = _pack_box(b"ftyp", boxes[b"ftyp"])
    moov_size = len(_shift_to_co64(_pack_box(b"moov", boxes[b"moov"]), 0))
    samples = data[mdat.payload_offset : mdat.end]

    header_sizes = {"largesize": 16, "to_end_after_free": 16, "to_end": 8}
    samples_start = len(ftyp) + moov_size + header_sizes[mdat_header] + LARGE_HOLE_BYTES
    moov = _shift_to_co64(_pack_box(b"moov", boxes[b"moov"]), samples_start - mdat.payload_offset)
    mdat_size = header_sizes[mdat_header] + LARGE_HOLE_BYTES + len(samples)
    if mdat_header == "largesize":
        header = struct.pack(">I4sQ", 1, b"mdat", mdat_size)
    elif mdat_header == "to_end_after_free":
        header = struct.pack(">I4sI4s", 8, b"free", 0, b"mdat")
    else:
        header = struct.pack(">I4s", 0, b"mdat")

    with out.open("wb") as file:
        file.write(ftyp + moov + header)
        file.seek(samples_start)
        file.write(samples)


def _allocated_bytes(path: Path) -> int:
    return path.stat().st_blocks * 512


@pytest.fixture(scope="module")
def supports_sparse_files(tmp_path_factory: pytest.TempPathFactory) -> None:
    probe = tmp_path_factory.mktemp("sparse") / "probe"
    with probe.open("wb") as file:
        file.truncate(1 << 30)
    if _allocated_bytes(probe) > 1 << 20:
        pytest.skip("The filesystem of the temporary directory does not keep holes.")


@pytest.mark.usefixtures("supports_sparse_files")
@pytest.mark.parametrize("mdat_header", ["largesize", "to_end_after_free"])
def test_embed_metadata_sparse_file_over_4gib(
    sources: dict[str, Path], tmp_path: Path, mdat_header: str
) -> None:
    src = tmp_path / "large.mp4"
    _build_sparse_large_mp4(sources["faststart"], src, mdat_header)
    out = tmp_path / "out.mp4"

    result = embed_metadata(src, out, DOCUMENT_A)

    out_mdat = next(box for box in list_top_level_boxes(out) if box.type == "mdat")
    assert src.stat().st_size > 1 << 32
    assert _probe(src) == _probe(sources["faststart"])
    assert _probe(out) == _probe(sources["faststart"])
    assert _ffmpeg_decode_output(out) == ""
    assert read_metadata(out) == DOCUMENT_A
    assert out_mdat.header_size == 16
    assert out_mdat.end == result.box_offset
    assert _allocated_bytes(out) < 8 << 20


@pytest.mark.usefixtures("supports_sparse_files")
def test_embed_metadata_large_mdat_to_end_raises(sources: dict[str, Path], tmp_path: Path) -> None:
    src = tmp_path / "large.mp4"
    _build_sparse_large_mp4(sources["faststart"], src, "to_end")
    out = tmp_path / "out.mp4"

    with pytest.raises(UnsupportedMedia) as caught:
        embed_metadata(src, out, DOCUMENT_A)

    assert caught.value.details["box_type"] == "mdat"
    assert not out.exists()
