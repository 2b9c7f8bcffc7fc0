"""Exports over REST and GraphQL, signed downloads, and importing an exported file."""

from __future__ import annotations

import asyncio
import calendar
import json
import os
import struct
import subprocess
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import av
import decord
import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.pool import NullPool
from sqlmodel import col

from mp4e.db import Database
from mp4e.models import Account, Video
from mp4e.vision.mp4box import MP4E_UUID, embed_metadata, list_top_level_boxes, read_metadata

XMP_UUID = uuid.UUID("be7acfcb-97a9-42e8-9c71-999491e3afac")
FRAME_COUNT = 10
# Just over 4 GiB, so the mdat needs a 64-bit size and moov starts past 4 GiB.
LARGE_HOLE_BYTES = (1 << 32) + (1 << 20)
# MP4 and WebM count the Opus pre-skip and the last packet differently. After a remux, the
# durations ffprobe reports may differ by a few tens of milliseconds, but every packet is kept.
WEBM_DURATION_TOLERANCE_S = 0.05

_LAVFI_INPUTS = [
    "-f", "lavfi", "-i", f"testsrc2=size=160x120:rate={FRAME_COUNT}:duration=1",
    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=1",
]  # fmt: skip
_VPX_FAST = ["-deadline", "realtime", "-cpu-used", "8"]


def _ffmpeg(*args: str | Path) -> None:
    command = ["ffmpeg", "-nostdin", "-v", "error", "-y", *map(str, args)]
    subprocess.run(command, check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One-second 160x120 videos with a video and an audio stream, keyed by container kind."""
    folder = tmp_path_factory.mktemp("export-media")
    paths = {
        "moov_last": folder / "moov_last.mp4",
        "faststart": folder / "faststart.mp4",
        "mov": folder / "clip.mov",
        "webm_vp9": folder / "vp9.webm",
        "webm_vp8": folder / "vp8.webm",
    }
    h264 = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"]
    _ffmpeg(*_LAVFI_INPUTS, *h264, paths["moov_last"])
    _ffmpeg("-i", paths["moov_last"], "-c", "copy", "-movflags", "+faststart", paths["faststart"])
    _ffmpeg("-i", paths["moov_last"], "-c", "copy", paths["mov"])
    _ffmpeg(*_LAVFI_INPUTS, "-c:v", "libvpx-vp9", *_VPX_FAST, "-c:a", "libopus", paths["webm_vp9"])
    _ffmpeg(*_LAVFI_INPUTS, "-c:v", "libvpx", *_VPX_FAST, "-c:a", "libopus", paths["webm_vp8"])
    return paths


# --- helpers -----------------------------------------------------------------------------


def _upload(client: httpx.Client, path: Path, name: str | None = None) -> str:
    data = {"name": name} if name else {}
    with path.open("rb") as handle:
        response = client.post("/api/videos/upload", files={"file": (path.name, handle)}, data=data)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _wait_ready(client: httpx.Client, video_id: str, wait_for: Callable[..., Any]) -> dict:
    def settled() -> dict | None:
        body = client.get(f"/api/videos/{video_id}").json()
        return body if body["status"] in ("ready", "failed") else None

    details: dict = wait_for(settled)
    assert details["status"] == "ready", details
    return details


def _export(client: httpx.Client, video_id: str, export_format: str | None = None) -> dict:
    params = {"format": export_format} if export_format else {}
    response = client.get(f"/api/videos/{video_id}/export", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _download(url: str, target: Path) -> httpx.Response:
    """Fetch a download URL without an API key into `target`."""
    with httpx.Client(timeout=60) as anonymous:
        response = anonymous.get(url)
    assert response.status_code == 200, response.text
    target.write_bytes(response.content)
    return response


def _export_dir(server: Any, video_id: str) -> Path:
    return Path(server.data_dir) / "exports" / video_id


def _export_files(server: Any, video_id: str) -> list[str]:
    folder = _export_dir(server, video_id)
    return sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []


def _insert_uploading_video(server: Any, account_name: str) -> str:
    """Insert a video row that ingest has not reached, as a real upload looks at first."""

    async def insert() -> str:
        database = Database(server.database_url, poolclass=NullPool)
        try:
            async with database.serialized() as session:
                query = select(Account).where(col(Account.name) == account_name)
                account = (await session.execute(query)).scalar_one()
                video = Video(
                    account_id=account.id, name="pending", file_name="source.mp4", size_bytes=1
                )
                session.add(video)
            return video.id
        finally:
            await database.dispose()

    return asyncio.run(insert())


def _canonical(document: Any) -> str:
    """JSON text that compares documents as JSON: key order ignored, 1 and 1.0 kept apart."""
    return json.dumps(document, sort_keys=True)


def _probe(path: Path) -> dict[str, Any]:
    """Return the streams, decoded frame counts and durations that ffprobe reports."""
    entries = (
        "stream=index,codec_type,codec_name,width,height,sample_rate,channels,duration,"
        "nb_read_frames:format=duration"
    )
    command = ["ffprobe", "-v", "error", "-count_frames", "-show_entries", entries, "-of", "json"]
    completed = subprocess.run(
        [*command, str(path)], check=True, capture_output=True, text=True, timeout=60
    )
    return dict(json.loads(completed.stdout))


def _ffmpeg_decode_output(path: Path) -> str:
    command = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "null", "-"]
    completed = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    return completed.stdout + completed.stderr


def _decord_frame_count(path: Path) -> int:
    reader = decord.VideoReader(str(path))
    return int(reader.get_batch(list(range(len(reader)))).asnumpy().shape[0])


def _pyav_frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def _without_durations(probe: dict[str, Any]) -> dict[str, Any]:
    streams = [
        {key: value for key, value in stream.items() if key != "duration"}
        for stream in probe["streams"]
    ]
    return {"streams": streams}


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def _uuid_box(user_type: uuid.UUID, payload: bytes) -> bytes:
    return struct.pack(">I4s", 24 + len(payload), b"uuid") + user_type.bytes + payload


def _flip_last_byte(path: Path) -> None:
    with path.open("r+b") as file:
        file.seek(-1, os.SEEK_END)
        value = file.read(1)[0]
        file.seek(-1, os.SEEK_END)
        file.write(bytes([value ^ 0xFF]))


def _edited_document() -> dict[str, Any]:
    """A valid document with a tracked and a manual object, an overlay, a rule and more."""
    return {
        "schemaVersion": "2.0",
        "videoDetails": {"totalFrames": 999, "fps": 1.0, "width": 1, "height": 1, "duration": 1},
        "objects": {
            "obj_ai": {
                "id": "obj_ai",
                "label": "person",
                "userLabel": None,
                "confidence": 0.9,
                "firstFrame": 0,
                "lastFrame": 2,
                "frameCount": 3,
                "customData": {},
                "kind": "box",
                "source": "ai",
                "track": {
                    "frames": [0, 1, 2],
                    "times": [0.0, 0.1, 0.2],
                    "boxes": [0.1, 0.1, 0.5, 0.5, 0.2, 0.1, 0.6, 0.5, 0.3, 0.1, 0.7, 0.5],
                    "scores": [0.9, 0.9, 0.9],
                },
            },
            "obj_manual": {
                "id": "obj_manual",
                "label": "shelf",
                "userLabel": "Top shelf",
                "kind": "box",
                "source": "manual",
                "customData": {"sku": "A-100"},
            },
        },
        "groups": [],
        "layers": [
            {
                "id": "layer_main",
                "name": "Main",
                "overlays": [
                    {
                        "id": "overlay_cta",
                        "name": "Buy",
                        "position": {"x": 0.9, "y": 0.1},
                        "plugin": {"type": "core:button", "config": {"text": "Shop Now"}},
                        "objectId": "obj_manual",
                    }
                ],
            },
            {"id": "layer_extra", "name": "Extra", "overlays": []},
        ],
        "variables": [{"id": "var_clicks", "type": "number", "value": 0}],
        "rules": [
            {
                "id": "rule_click",
                "trigger": {"type": "click", "overlayId": "overlay_cta"},
                "conditions": [],
                "actions": [{"type": "increment", "variableId": "var_clicks"}],
            }
        ],
        "scenes": [{"id": "scene_intro", "name": "Intro", "start": 0.0, "end": 0.5}],
        "settings": {"restrictions": {"seek": False}},
        "futureKey": {"kept": True},
    }


# --- exports of each container kind ------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "suffix"),
    [
        pytest.param("faststart", ".mp4", id="mp4-faststart"),
        pytest.param("moov_last", ".mp4", id="mp4-moov-last"),
        pytest.param("mov", ".mov", id="mov"),
        pytest.param("webm_vp9", ".mp4", id="webm-vp9"),
    ],
)
def test_export_mp4e_keeps_media_intact(server, fresh_key, media, wait_for, tmp_path, kind, suffix):  # type: ignore[no-untyped-def]
    source = media[kind]
    with server.client(fresh_key()) as client:
        video_id = _upload(client, source, name="Demo clip")
        details = _wait_ready(client, video_id, wait_for)
        exported = _export(client, video_id)
    out = tmp_path / f"export{suffix}"

    response = _download(exported["downloadUrl"], out)

    source_probe = _probe(source)
    out_probe = _probe(out)
    assert out.stat().st_size == exported["fileSize"]
    assert response.headers["content-disposition"] == (
        f"attachment; filename*=utf-8''Demo%20clip{suffix}"
    )
    assert _without_durations(out_probe) == _without_durations(source_probe)
    if kind.startswith("webm"):
        assert float(out_probe["format"]["duration"]) == pytest.approx(
            float(source_probe["format"]["duration"]), abs=WEBM_DURATION_TOLERANCE_S
        )
    else:
        assert out_probe == source_probe
    assert _ffmpeg_decode_output(out) == ""
    assert _decord_frame_count(out) == FRAME_COUNT
    assert _pyav_frame_count(out) == FRAME_COUNT
    assert read_metadata(out) == details["metadata"]
    assert _export_files(server, video_id) == [f"v1{suffix}"]


def test_export_json_is_metadata_document(server, fresh_key, sample_video, wait_for, tmp_path):  # type: ignore[no-untyped-def]
    with server.client(fresh_key()) as client:
        video_id = _upload(client, sample_video, name="Démo")
        details = _wait_ready(client, video_id, wait_for)
        exported = _export(client, video_id, "json")
        embedded = _export(client, video_id, "mp4e")

    response = _download(exported["downloadUrl"], tmp_path / "export.json")
    _download(embedded["downloadUrl"], tmp_path / "export.mp4")

    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["content-disposition"] == "attachment; filename*=utf-8''D%C3%A9mo.json"
    assert len(response.content) == exported["fileSize"]
    assert response.json() == details["metadata"]
    assert read_metadata(tmp_path / "export.mp4") == response.json()
    assert _export_files(server, video_id) == ["v1.json", "v1.mp4"]


def test_export_response_shape(server, fresh_key, sample_video, wait_for):  # type: ignore[no-untyped-def]
    with server.client(fresh_key()) as client:
        video_id = _upload(client, sample_video)
        _wait_ready(client, video_id, wait_for)
        before = time.time()
        body = _export(client, video_id)

    expires_at = calendar.timegm(time.strptime(body["expiresAt"], "%Y-%m-%dT%H:%M:%SZ"))
    assert set(body) == {"downloadUrl", "expiresAt", "fileSize"}
    assert body["downloadUrl"].startswith(f"{server.base_url}/files/exports/{video_id}/v1.mp4?")
    assert isinstance(body["fileSize"], int)
    assert expires_at == pytest.approx(before + 24 * 3600, abs=30)


def test_export_graphql_mutation(server, fresh_key, sample_video, wait_for, tmp_path):  # type: ignore[no-untyped-def]
    mutation = (
        "mutation($id: ID!) { exportVideo(videoId: $id, format: MP4E) "
        "{ downloadUrl expiresAt fileSize } }"
    )
    with server.client(fresh_key()) as client:
        video_id = _upload(client, sample_video)
        details = _wait_ready(client, video_id, wait_for)
        body = client.post("/graphql", json={"query": mutation, "variables": {"id": video_id}})
        rest = _export(client, video_id)

    result = body.json()["data"]["exportVideo"]
    _download(result["downloadUrl"], tmp_path / "export.mp4")
    assert "errors" not in body.json()
    assert result["fileSize"] == rest["fileSize"]
    assert result["expiresAt"].endswith(("Z", "+00:00"))
    assert read_metadata(tmp_path / "export.mp4") == details["metadata"]


def test_export_reuses_file_of_same_version(server, fresh_key, sample_video, wait_for):  # type: ignore[no-untyped-def]
    with server.client(fresh_key()) as client:
        video_id = _upload(client, sample_video)
        _wait_ready(client, video_id, wait_for)
        first = _export(client, video_id)
        built = (_export_dir(server, video_id) / "v1.mp4").stat()
        second = _export(client, video_id)

    reused = (_export_dir(server, video_id) / "v1.mp4").stat()
    assert second["fileSize"] == first["fileSize"]
    assert (reused.st_ino, reused.st_mtime_ns) == (built.st_ino, built.st_mtime_ns)
    assert _export_files(server, video_id) == ["v1.mp4"]


def test_export_concurrent_requests_build_once(server, fresh_key, sample_video, wait_for):  # type: ignore[no-untyped-def]
    key = fresh_key()
    with server.client(key) as client:
        video_id = _upload(client, sample_video)
        _wait_ready(client, video_id, wait_for)

    def request_export(_: int) -> httpx.Response:
        with server.client(key) as client:
            return client.get(f"/api/videos/{video_id}/export")

    with ThreadPoolExecutor(max_workers=4) as pool:
        responses = list(pool.map(request_export, range(4)))

    log = (Path(server.log_dir) / "serve.log").read_text()
    assert [response.status_code for response in responses] == [200] * 4
    assert len({response.json()["fileSize"] for response in responses}) == 1
    assert log.count(f"Built mp4e export of video {video_id} version 1") == 1
    assert _export_files(server, video_id) == ["v1.mp4"]


def test_export_rebuilds_missing_file(server, fresh_key, sample_video, wait_for, tmp_path):  # type: ignore[no-untyped-def]
    with server.client(fresh_key()) as client:
        video_id = _upload(client, sample_video)
        details = _wait_ready(client, video_id, wait_for)
        first = _export(client, video_id)
        (_export_dir(server, video_id) / "v1.mp4").unlink()
        second = _export(client, video_id)

    _download(second["downloadUrl"], tmp_path / "export.mp4")
    assert second["fileSize"] == first["fileSize"]
    assert read_metadata(tmp_path / "export.mp4") == details["metadata"]


# --- download links ----------------------------------------------------------------------


def test_export_download_serves_ranges(server, fresh_key, sample_video, wait_for, tmp_path):  # type: ignore[no-untyped-def]
    with server.client(fresh_key()) as client:
        video_id = _upload(client, sample_video)
        _wait_ready(client, video_id, wait_for)
        exported = _export(client, video_id)
    whole = _download(exported["downloadUrl"], tmp_path / "export.mp4").content
    size = exported["fileSize"]

    with httpx.Client(timeout=30) as anonymous:
        head = anonymous.get(exported["downloadUrl"], headers={"Range": "bytes=0-99"})
        tail = anonymous.get(exported["downloadUrl"], headers={"Range": "bytes=-200"})
        beyond = anonymous.get(exported["downloadUrl"], headers={"Range": f"bytes={size}-"})

    assert len(whole) == size
    assert head.status_code == 206
    assert head.headers["content-range"] == f"bytes 0-99/{size}"
    assert head.content == whole[:100]
    assert tail.status_code == 206
    assert tail.content == whole[-200:]
    assert beyond.status_code == 416


@pytest.mark.parametrize(
    "alter",
    [
        pytest.param(lambda url: _with_query(url, signature="0" * 64), id="signature"),
        pytest.param(lambda url: _with_query(url, expires="9999999999"), id="expiry"),
        pytest.param(lambda url: _with_query(url, filename="other.mp4"), id="filename"),
        pytest.param(lambda url: url.replace("/v1.mp4?", "/v1.json?"), id="path"),
        pytest.param(lambda url: url.split("?")[0], id="no-query"),
    ],
)
def test_export_download_altered_link_is_403(server, fresh_key, sample_video, wait_for, alter):  # type: ignore[no-untyped-def]
    with server.client(fresh_key()) as client:
        video_id = _upload(client, sample_video)
        _wait_ready(client, video_id, wait_for)
        url = _export(client, video_id)["downloadUrl"]

    with httpx.Client(timeout=30) as anonymous:
        response = anonymous.get(alter(url))

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "INVALID_SIGNATURE"
    assert response.json()["error"]["message"]


def test_export_download_expired_link_is_403(server_factory, sample_video, wait_for):  # type: ignore[no-untyped-def]
    short_lived = server_factory("sqlite", MP4E_EXPORT_URL_TTL_S="1")
    with short_lived.client(short_lived.create_key("*")) as client:
        video_id = _upload(client, sample_video)
        _wait_ready(client, video_id, wait_for)
        url = _export(client, video_id)["downloadUrl"]

    with httpx.Client(timeout=30) as anonymous:
        expired = wait_for(lambda: (r := anonymous.get(url)).status_code == 403 and r, 10)

    assert expired.json()["error"]["code"] == "LINK_EXPIRED"
    assert "expired" in expired.json()["error"]["message"]


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["mp5", "", "MP4E"])
def test_export_unknown_format_is_400(server, fresh_key, sample_video, wait_for, value):  # type: ignore[no-untyped-def]
    with server.client(fresh_key()) as client:
        video_id = _upload(client, sample_video)
        _wait_ready(client, video_id, wait_for)
        response = client.get(f"/api/videos/{video_id}/export", params={"format": value})

    error = response.json()["error"]
    assert response.status_code == 400
    assert error["code"] == "INVALID_PARAMETER"
    assert error["field"] == "format"
    assert error["details"] == {"allowed": ["mp4e", "json"], "provided": value}


def test_export_unknown_video_is_404(server, fresh_key):  # type: ignore[no-untyped-def]
    with server.client(fresh_key()) as client:
        response = client.get("/api/videos/video_0000000000000000/export")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


def test_export_video_without_metadata_is_409(server):  # type: ignore[no-untyped-def]
    account = f"export-pending-{uuid.uuid4().hex[:8]}"
    key = server.create_key("*", account=account)
    video_id = _insert_uploading_video(server, account)

    with server.client(key) as client:
        response = client.get(f"/api/videos/{video_id}/export")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "NOT_READY"
    assert response.json()["error"]["details"] == {"status": "uploading"}
    assert _export_files(server, video_id) == []


def test_export_vp8_webm_is_422(server, fresh_key, media, wait_for):  # type: ignore[no-untyped-def]
    with server.client(fresh_key()) as client:
        video_id = _upload(client, media["webm_vp8"])
        _wait_ready(client, video_id, wait_for)
        response = client.get(f"/api/videos/{video_id}/export")

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "UNSUPPORTED_MEDIA"
    assert "vp8" in response.json()["error"]["message"]
    assert _export_files(server, video_id) == []


# --- large sparse source -------------------------------------------------------------------


def _build_sparse_large_mp4(small: Path, out: Path) -> None:
    """Write `small` (ftyp, free, mdat, moov) as a file over 4 GiB that is mostly a hole.

    The mdat gets a 64-bit size and a hole after its samples, so no chunk offset changes
    and moov starts past 4 GiB.
    """
    data = small.read_bytes()
    ftyp, free, mdat, moov = list_top_level_boxes(small)
    assert (free.type, free.size, mdat.header_size) == ("free", 8, 8)
    samples = data[mdat.payload_offset : mdat.end]

    with out.open("wb") as file:
        file.write(data[: ftyp.end])
        # The 8-byte free box and the 8-byte mdat header become one 16-byte mdat header.
        file.write(struct.pack(">I4sQ", 1, b"mdat", 16 + len(samples) + LARGE_HOLE_BYTES))
        file.write(samples)
        file.seek(LARGE_HOLE_BYTES, os.SEEK_CUR)
        file.write(data[moov.offset : moov.end])


def _allocated_bytes(path: Path) -> int:
    return path.stat().st_blocks * 512


def test_export_sparse_source_over_4gib(server, fresh_key, media, wait_for, tmp_path):  # type: ignore[no-untyped-def]
    large = tmp_path / "large.mp4"
    _build_sparse_large_mp4(media["moov_last"], large)
    if _allocated_bytes(large) > 8 << 20:
        pytest.skip("The filesystem of the temporary directory does not keep holes.")
    with server.client(fresh_key()) as client:
        video_id = _upload(client, media["moov_last"])
        details = _wait_ready(client, video_id, wait_for)
        # The stored source is swapped for its sparse 4 GiB form, which carries the same media.
        stored = Path(server.data_dir) / "videos" / video_id / "source.mp4"
        os.replace(large, stored)
        exported = _export(client, video_id)
    out = _export_dir(server, video_id) / "v1.mp4"

    with httpx.Client(timeout=30) as anonymous:
        tail = anonymous.get(exported["downloadUrl"], headers={"Range": "bytes=-4096"})

    boxes = list_top_level_boxes(out)
    assert exported["fileSize"] == out.stat().st_size
    assert exported["fileSize"] > 1 << 32
    assert _allocated_bytes(out) < 8 << 20
    assert [box.type for box in boxes] == ["ftyp", "mdat", "moov", "uuid"]
    assert boxes[1].header_size == 16
    assert MP4E_UUID.bytes in tail.content
    assert read_metadata(out) == details["metadata"]
    assert _probe(out) == _probe(media["moov_last"])
    assert _ffmpeg_decode_output(out) == ""


# --- import ----------------------------------------------------------------------------------


def test_upload_with_embedded_document_imports_it(server, fresh_key, media, wait_for, tmp_path):  # type: ignore[no-untyped-def]
    document = _edited_document()
    source = tmp_path / "with_metadata.mp4"
    embed_metadata(media["faststart"], source, document)

    with server.client(fresh_key()) as client:
        video_id = _upload(client, source)
        details = _wait_ready(client, video_id, wait_for)
        imported = client.get(f"/api/videos/{video_id}/metadata").json()
        versions = client.get(f"/api/videos/{video_id}/versions").json()

    assert imported["videoDetails"]["totalFrames"] == FRAME_COUNT
    assert imported["videoDetails"]["width"] == 160
    assert _canonical({**imported, "videoDetails": None}) == _canonical(
        {**document, "videoDetails": None}
    )
    assert details["warnings"] == []
    assert versions["currentVersion"] == 1
    assert "Imported" in versions["versions"][0]["description"]


def test_upload_with_damaged_metadata_box_warns(server, fresh_key, media, wait_for, tmp_path):  # type: ignore[no-untyped-def]
    source = tmp_path / "damaged.mp4"
    embed_metadata(media["moov_last"], source, _edited_document())
    _flip_last_byte(source)

    with server.client(fresh_key()) as client:
        video_id = _upload(client, source)
        details = _wait_ready(client, video_id, wait_for)

    assert details["metadata"]["layers"] == [{"id": "layer_main", "name": "Main", "overlays": []}]
    assert details["metadata"]["objects"] == {}
    assert len(details["warnings"]) == 1
    assert "damaged" in details["warnings"][0]
    assert "not imported" in details["warnings"][0]


def test_upload_with_invalid_embedded_document_warns(server, fresh_key, media, wait_for, tmp_path):  # type: ignore[no-untyped-def]
    source = tmp_path / "invalid.mp4"
    embed_metadata(media["faststart"], source, {"schemaVersion": "2.0", "layers": "none"})

    with server.client(fresh_key()) as client:
        video_id = _upload(client, source)
        details = _wait_ready(client, video_id, wait_for)

    assert details["metadata"]["layers"] == [{"id": "layer_main", "name": "Main", "overlays": []}]
    assert len(details["warnings"]) == 1
    assert "'layers'" in details["warnings"][0]


def test_upload_ignores_other_uuid_boxes(server, fresh_key, media, wait_for, tmp_path):  # type: ignore[no-untyped-def]
    xmp = _uuid_box(XMP_UUID, b"<x:xmpmeta xmlns:x='adobe:ns:meta/'></x:xmpmeta>")
    plain = tmp_path / "xmp_only.mp4"
    plain.write_bytes(media["faststart"].read_bytes() + xmp)
    both = tmp_path / "xmp_and_ours.mp4"
    embed_metadata(plain, both, _edited_document())
    both.write_bytes(both.read_bytes() + xmp)

    with server.client(fresh_key()) as client:
        plain_details = _wait_ready(client, _upload(client, plain), wait_for)
        both_details = _wait_ready(client, _upload(client, both), wait_for)

    assert plain_details["warnings"] == []
    assert plain_details["metadata"]["objects"] == {}
    assert both_details["warnings"] == []
    assert both_details["metadata"]["variables"] == _edited_document()["variables"]


# --- round trip ------------------------------------------------------------------------------

ROUND_TRIP_PATCH: dict[str, Any] = {
    "objects": {
        "obj_manual": {
            "id": "obj_manual",
            "label": "shelf",
            "userLabel": "Top shelf",
            "kind": "box",
            "source": "manual",
            "customData": {"sku": "A-100", "price": 9.5},
        }
    },
    "layers": [
        {
            "id": "layer_main",
            "overlays": [
                {
                    "id": "overlay_cta",
                    "name": "Buy",
                    "position": {"x": 0.9, "y": 0.1},
                    "plugin": {"type": "core:button", "config": {"text": "Shop Now"}},
                    "objectId": "obj_manual",
                    "start": 0.0,
                    "end": 0.5,
                }
            ],
        },
        {"id": "layer_extra", "name": "Extra", "overlays": []},
    ],
    "variables": [{"id": "var_clicks", "type": "number", "value": 0}],
    "rules": [
        {
            "id": "rule_click",
            "trigger": {"type": "click", "overlayId": "overlay_cta"},
            "conditions": [{"variableId": "var_clicks", "op": "<", "value": 3}],
            "actions": [{"type": "increment", "variableId": "var_clicks"}],
        }
    ],
    "scenes": [{"id": "scene_intro", "name": "Intro", "start": 0.0, "end": 0.5}],
    "settings": {"restrictions": {"seek": False}},
}


def _our_box_count(path: Path) -> int:
    return sum(box.is_mp4e for box in list_top_level_boxes(path))


def test_export_import_round_trip(server, fresh_key, sample_video, wait_for, tmp_path):  # type: ignore[no-untyped-def]
    exported_file = tmp_path / "exported.mp4"
    reexported_file = tmp_path / "reexported.mp4"
    with server.client(fresh_key()) as client:
        original_id = _upload(client, sample_video, name="Original")
        original = _wait_ready(client, original_id, wait_for)
        patched = client.patch(f"/api/videos/{original_id}/metadata", json=ROUND_TRIP_PATCH)
        edited = client.get(f"/api/videos/{original_id}/metadata").json()
        _download(_export(client, original_id)["downloadUrl"], exported_file)

        copy_id = _upload(client, exported_file, name="Copy")
        copy = _wait_ready(client, copy_id, wait_for)
        restored = client.get(f"/api/videos/{copy_id}/metadata")
        versions = client.get(f"/api/videos/{copy_id}/versions").json()
        _download(_export(client, copy_id)["downloadUrl"], reexported_file)

    assert patched.status_code == 200, patched.text
    assert patched.json()["version"] == 2
    assert _canonical(restored.json()) == _canonical(edited)
    assert restored.headers["etag"] == '"1"'
    assert copy_id != original_id
    assert copy["name"] == "Copy"
    assert copy["warnings"] == []
    assert copy["fileSize"] == exported_file.stat().st_size
    assert copy["fileSize"] != original["fileSize"]
    assert [item["version"] for item in versions["versions"]] == [1]
    assert _our_box_count(reexported_file) == 1
    assert read_metadata(reexported_file) == edited


def test_export_after_edit_replaces_document(server, fresh_key, sample_video, wait_for, tmp_path):  # type: ignore[no-untyped-def]
    out = tmp_path / "second.mp4"
    with server.client(fresh_key()) as client:
        video_id = _upload(client, sample_video)
        _wait_ready(client, video_id, wait_for)
        first = _export(client, video_id)
        client.patch(
            f"/api/videos/{video_id}/metadata", json={"variables": ROUND_TRIP_PATCH["variables"]}
        )
        second = _export(client, video_id)
        edited = client.get(f"/api/videos/{video_id}/metadata").json()
    _download(second["downloadUrl"], out)

    with httpx.Client(timeout=30) as anonymous:
        outdated = anonymous.get(first["downloadUrl"])

    assert read_metadata(out) == edited
    assert edited["variables"] == ROUND_TRIP_PATCH["variables"]
    assert _our_box_count(out) == 1
    assert _export_files(server, video_id) == ["v2.mp4"]
    assert outdated.status_code == 404
    assert outdated.json()["error"]["code"] == "NOT_FOUND"
