"""Videos over REST and GraphQL: upload, list, details, delete, stream, bad input."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import httpx
import pytest

BAD_CASES = [
    pytest.param("empty", 400, "EMPTY_FILE", id="empty"),
    pytest.param("audio_only", 415, "NO_VIDEO_STREAM", id="audio-only"),
    pytest.param("cover_art_only", 415, "NO_VIDEO_STREAM", id="cover-art-only"),
    pytest.param("text_named_mp4", 422, "CORRUPT_MEDIA", id="not-media"),
    pytest.param("index_missing", 422, "CORRUPT_MEDIA", id="index-missing"),
]

UPLOAD_MUTATION = (
    "mutation($file: Upload!, $name: String) "
    "{ uploadVideo(file: $file, name: $name) { id name status uploadProgress } }"
)


def upload_rest(client: httpx.Client, path: Path, **fields: str) -> httpx.Response:
    with path.open("rb") as handle:
        return client.post("/api/videos/upload", files={"file": (path.name, handle)}, data=fields)


def upload_graphql(client: httpx.Client, path: Path, name: str | None = None) -> httpx.Response:
    operations = {"query": UPLOAD_MUTATION, "variables": {"file": None, "name": name}}
    with path.open("rb") as handle:
        return client.post(
            "/graphql",
            data={
                "operations": json.dumps(operations),
                "map": json.dumps({"0": ["variables.file"]}),
            },
            files={"0": (path.name, handle)},
        )


def stored_files(server) -> set[str]:  # type: ignore[no-untyped-def]
    root = server.data_dir
    return {
        str(p.relative_to(root))
        for sub in ("videos", "incoming", "exports")
        for p in (root / sub).rglob("*")
        if p.is_file()
    }


def count_video_rows(server, account_videos: int | None = None) -> int:  # type: ignore[no-untyped-def]
    if server.backend == "sqlite":
        with sqlite3.connect(server.data_dir / "mp4e.db") as connection:
            return int(connection.execute("SELECT count(*) FROM videos").fetchone()[0])
    database = server.env["MP4E_TEST_DATABASE_NAME"]
    result = subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            database,
            "-tAc",
            "SELECT count(*) FROM videos",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(result.stdout.strip())


def wait_ready(client: httpx.Client, video_id: str, wait_for) -> dict:  # type: ignore[no-untyped-def]
    def ready() -> dict | None:
        body = client.get(f"/api/videos/{video_id}").json()
        return body if body["status"] in ("ready", "failed") else None

    return wait_for(ready)


@pytest.mark.parametrize(("case", "status", "code"), BAD_CASES)
def test_upload_rest_rejects_bad_file_and_leaves_nothing(
    server, fresh_key, bad_media, case, status, code
):  # type: ignore[no-untyped-def]
    key = fresh_key()
    files_before = stored_files(server)
    rows_before = count_video_rows(server)

    with server.client(key) as client:
        response = upload_rest(client, bad_media[case])
        listing = client.get("/api/videos").json()

    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    assert listing["total"] == 0
    assert count_video_rows(server) == rows_before
    assert stored_files(server) == files_before


@pytest.mark.parametrize(("case", "status", "code"), BAD_CASES)
def test_upload_graphql_rejects_bad_file_and_leaves_nothing(
    server, fresh_key, bad_media, case, status, code
):  # type: ignore[no-untyped-def]
    key = fresh_key()
    files_before = stored_files(server)
    rows_before = count_video_rows(server)

    with server.client(key) as client:
        response = upload_graphql(client, bad_media[case])
        listing = client.get("/api/videos").json()

    body = response.json()
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == code
    assert listing["total"] == 0
    assert count_video_rows(server) == rows_before
    assert stored_files(server) == files_before


def test_upload_over_limit_is_413(server_factory, sample_video, tmp_path):  # type: ignore[no-untyped-def]
    limited = server_factory("sqlite", MP4E_MAX_UPLOAD_BYTES="20000")
    key = limited.create_key("*")
    big = tmp_path / "big.mp4"
    big.write_bytes(sample_video.read_bytes() + os.urandom(30000))

    with limited.client(key) as client:
        rest = upload_rest(client, big)
        graphql = upload_graphql(client, big)
        listing = client.get("/api/videos").json()

    assert rest.status_code == 413
    assert rest.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert graphql.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
    assert listing["total"] == 0
    assert stored_files(limited) == set()


def test_upload_rest_ingests_video(server, fresh_key, sample_video, wait_for):  # type: ignore[no-untyped-def]
    with server.client(fresh_key()) as client:
        response = upload_rest(client, sample_video, name="Product Demo")
        video_id = response.json()["id"]
        details = wait_ready(client, video_id, wait_for)

    assert response.status_code == 201
    assert response.json()["status"] == "uploading"
    assert response.json()["name"] == "Product Demo"
    assert details["status"] == "ready"
    assert details["width"] == 160
    assert details["height"] == 120
    assert details["duration"] == pytest.approx(1.0, abs=0.05)
    assert details["fps"] == pytest.approx(10.0, abs=0.1)
    assert details["fileSize"] == sample_video.stat().st_size
    assert details["metadata"]["schemaVersion"] == "2.0"
    assert details["metadata"]["videoDetails"]["totalFrames"] == 10
    assert details["thumbnail"].startswith(server.base_url)


def test_upload_graphql_ingests_video(server, fresh_key, sample_video, wait_for):  # type: ignore[no-untyped-def]
    with server.client(fresh_key()) as client:
        response = upload_graphql(client, sample_video, name="Via GraphQL")
        video_id = response.json()["data"]["uploadVideo"]["id"]
        details = wait_ready(client, video_id, wait_for)

    assert response.json()["data"]["uploadVideo"]["status"] == "uploading"
    assert details["name"] == "Via GraphQL"
    assert details["status"] == "ready"


def test_list_videos_pages_newest_first(server, fresh_key, sample_video):  # type: ignore[no-untyped-def]
    with server.client(fresh_key()) as client:
        ids = [upload_rest(client, sample_video, name=f"v{i}").json()["id"] for i in range(3)]
        first = client.get("/api/videos", params={"page": 1, "pageSize": 2}).json()
        second = client.get("/api/videos", params={"page": 2, "pageSize": 2}).json()
        too_big = client.get("/api/videos", params={"pageSize": 101})

    assert [v["id"] for v in first["videos"]] == [ids[2], ids[1]]
    assert [v["id"] for v in second["videos"]] == [ids[0]]
    assert first["total"] == 3
    assert first["pageSize"] == 2
    assert second["page"] == 2
    assert too_big.status_code == 400
    assert too_big.json()["error"]["code"] == "INVALID_PARAMETER"
    assert too_big.json()["error"]["field"] == "pageSize"


def test_delete_video_removes_rows_and_files(server, fresh_key, sample_video, wait_for):  # type: ignore[no-untyped-def]
    with server.client(fresh_key()) as client:
        video_id = upload_rest(client, sample_video).json()["id"]
        wait_ready(client, video_id, wait_for)
        files_during = {f for f in stored_files(server) if video_id in f}
        deleted = client.delete(f"/api/videos/{video_id}")
        after = client.get(f"/api/videos/{video_id}")

    assert files_during
    assert deleted.json() == {"success": True}
    assert after.status_code == 404
    assert {f for f in stored_files(server) if video_id in f} == set()


def test_stream_url_serves_ranges(server, fresh_key, sample_video, wait_for):  # type: ignore[no-untyped-def]
    size = sample_video.stat().st_size
    content = sample_video.read_bytes()
    with server.client(fresh_key()) as client:
        video_id = upload_rest(client, sample_video).json()["id"]
        url = wait_ready(client, video_id, wait_for)["streamUrl"]
    with httpx.Client(timeout=30) as anonymous:
        whole = anonymous.get(url)
        head = anonymous.get(url, headers={"Range": "bytes=0-99"})
        suffix = anonymous.get(url, headers={"Range": "bytes=-100"})
        open_range = anonymous.get(url, headers={"Range": f"bytes={size - 10}-"})
        beyond = anonymous.get(url, headers={"Range": f"bytes={size + 10}-"})
        stale = anonymous.get(url, headers={"Range": "bytes=0-9", "If-Range": '"stale-etag"'})
        tampered = anonymous.get(url.replace("signature=", "signature=0"))

    assert whole.status_code == 200
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.content == content
    assert head.status_code == 206
    assert head.headers["content-range"] == f"bytes 0-99/{size}"
    assert head.content == content[:100]
    assert suffix.content == content[-100:]
    assert open_range.content == content[-10:]
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{size}"
    assert stale.status_code == 200
    assert tampered.status_code == 403


TRICKY_CASES = [
    pytest.param("vfr_mp4", 70, 4.0, True, (160, 120), id="variable-frame-rate"),
    pytest.param("live_webm", 50, 2.0, False, (160, 120), id="live-webm-no-duration"),
    pytest.param("long_audio_mp4", 25, 1.0, False, (160, 120), id="audio-longer-than-video"),
    pytest.param("one_frame_mp4", 1, 0.04, False, (160, 120), id="one-frame"),
    pytest.param("sar_mp4", 25, 1.0, False, (320, 120), id="non-square-pixels"),
]


@pytest.mark.parametrize(("fixture", "frames", "duration_s", "variable", "size"), TRICKY_CASES)
def test_upload_reports_true_frames_and_duration(
    server, fresh_key, request, wait_for, fixture, frames, duration_s, variable, size
):  # type: ignore[no-untyped-def]
    path: Path = request.getfixturevalue(fixture)

    with server.client(fresh_key()) as client:
        video_id = upload_rest(client, path).json()["id"]
        details = wait_ready(client, video_id, wait_for)

    video_details = details["metadata"]["videoDetails"]
    assert details["status"] == "ready"
    assert details["duration"] > 0
    assert video_details["variableFrameRate"] is variable
    if frames is not None:
        assert video_details["totalFrames"] == frames
        assert details["fps"] == pytest.approx(frames / duration_s, rel=0.05)
        assert details["duration"] == pytest.approx(duration_s, abs=0.05)
    if size is not None:
        assert (details["width"], details["height"]) == size
