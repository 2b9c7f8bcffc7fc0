"""Surface tracking over REST and GraphQL, from the upload to the stored track.

The accuracy tests render a real photo (graf1.png from the Debian package opencv-doc) onto a
panning background photo (building.jpg) under known, smoothly changing homographies. They
encode the frames with libx264 and upload the file. Then they mark the photo's true corners on
one frame and compare the corners that the server stores with the true ones.
"""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import cv2
import httpx
import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.pool import NullPool

from mp4e.db import Database
from mp4e.models import Job

WIDTH, HEIGHT = 640, 360
FPS = 25
SCENE_FRAMES = 100
MID_FRAME = 50
LEAVING_FRAME = 10
# In the leaving scene the photo slides out past the right edge on frames LEAVE_FROM to
# LEAVE_FROM + LEAVE_FRAMES and is back in place afterwards.
LEAVE_FROM = 20
LEAVE_FRAMES = 60

SQUARE = [{"x": 0.2, "y": 0.2}, {"x": 0.8, "y": 0.2}, {"x": 0.8, "y": 0.8}, {"x": 0.2, "y": 0.8}]

CREATE_MUTATION = (
    "mutation($video: ID!, $name: String!, $frame: Int!, $corners: [CornerInput!]!) "
    "{ createSurface(videoId: $video, name: $name, frame: $frame, corners: $corners) "
    "{ objectId jobId status trackedFrames version } }"
)
JOB_QUERY = (
    "query($video: ID!, $job: ID!) { videoJob(videoId: $video, jobId: $job) "
    "{ jobId kind status progress objectId trackedFrames version } }"
)


# Test photos --------------------------------------------------------------------------------


def _read_rgb(path: Path) -> np.ndarray:
    # PyAV decodes the photos, not cv2.imread: once decord 0.6.0 is loaded in the process
    # before cv2, OpenCV's PNG reader fails with "libpng error: bad parameters to zlib".
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return frame.to_ndarray(format="rgb24")


# Synthetic scenes ---------------------------------------------------------------------------


def true_corners_px(index: int, leave: bool) -> np.ndarray:
    """Return the photo's corners on frame `index` in pixels (TL, TR, BR, BL).

    Pixel centres are at integer coordinates, so a normalised x is (x_px + 0.5) / WIDTH.
    """
    t = index / (SCENE_FRAMES - 1)
    centre_x = WIDTH * (0.5 + 0.12 * math.sin(2 * math.pi * t))
    centre_y = HEIGHT * (0.5 + 0.06 * math.sin(2 * math.pi * 0.7 * t + 0.4))
    if leave and LEAVE_FROM <= index <= LEAVE_FROM + LEAVE_FRAMES:
        phase = 2 * math.pi * (index - LEAVE_FROM) / LEAVE_FRAMES
        centre_x += 1.4 * WIDTH * (1 - math.cos(phase)) / 2
    half_width = 0.2 * WIDTH * (1 + 0.1 * math.sin(2 * math.pi * 0.5 * t + 1.0))
    half_height = 0.75 * half_width
    angle = math.radians(8) * math.sin(2 * math.pi * 0.6 * t)

    square = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
    phases = np.array([0.0, 1.7, 3.1, 4.6])
    # Each corner moves on its own, so the warp is a changing perspective, not a similarity.
    skew = (
        0.025
        * WIDTH
        * np.stack(
            [np.sin(2 * math.pi * 0.8 * t + phases), np.cos(2 * math.pi * 0.6 * t + 2 * phases)],
            axis=1,
        )
    )
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return (square * [half_width, half_height] + skew) @ rotation.T + [centre_x, centre_y]


def render_scene(photo_dir: Path, leave: bool) -> Iterator[np.ndarray]:
    """Yield the RGB frames of a scene: the photo warped over a darker, panning background."""
    photo = _read_rgb(photo_dir / "graf1.png")
    background = _read_rgb(photo_dir / "building.jpg")
    backdrop = cv2.resize(background, (WIDTH + 60, HEIGHT + 40), interpolation=cv2.INTER_AREA)
    backdrop = (cv2.GaussianBlur(backdrop, (0, 0), 1.2) * 0.6).astype(np.uint8)
    photo_h, photo_w = photo.shape[:2]
    photo_corners = np.array(
        [
            [-0.5, -0.5],
            [photo_w - 0.5, -0.5],
            [photo_w - 0.5, photo_h - 0.5],
            [-0.5, photo_h - 0.5],
        ],
        dtype=np.float32,
    )
    for index in range(SCENE_FRAMES):
        left, top = round(0.5 * index) % 60, round(0.2 * index) % 40
        frame = backdrop[top : top + HEIGHT, left : left + WIDTH].copy()
        corners = true_corners_px(index, leave).astype(np.float32)
        homography = cv2.getPerspectiveTransform(photo_corners, corners)
        cv2.warpPerspective(
            photo,
            homography,
            (WIDTH, HEIGHT),
            dst=frame,
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_TRANSPARENT,
        )
        yield frame


def write_h264(path: Path, frames: Iterator[np.ndarray]) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        # Keyframes every 32 frames, so reads of 64-frame chunks seek into the stream.
        stream.codec_context.gop_size = 32
        stream.options = {"crf": "18", "preset": "superfast"}
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="session")
def mid_scene(photo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 640x360 video of 100 frames in which the photo moves and tilts but stays in view."""
    folder = tmp_path_factory.mktemp("surface-mid")
    return write_h264(folder / "mid.mp4", render_scene(photo_dir, leave=False))


@pytest.fixture(scope="session")
def leaving_scene(photo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same scene, but the photo slides out of view on the right and comes back."""
    folder = tmp_path_factory.mktemp("surface-leave")
    return write_h264(folder / "leave.mp4", render_scene(photo_dir, leave=True))


@pytest.fixture(scope="session")
def long_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 320x240 test pattern of 1500 frames, long enough to cancel its tracking midway."""
    path = tmp_path_factory.mktemp("surface-long") / "long.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25:duration=60",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            str(path),
        ],
        check=True,
        timeout=120,
    )
    return path


@pytest.fixture(scope="session")
def flat_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-second uniform grey video: a surface marked on it has no texture to track."""
    path = tmp_path_factory.mktemp("surface-flat") / "flat.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "color=c=gray:size=160x120:rate=10:duration=1",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            str(path),
        ],
        check=True,
        timeout=120,
    )
    return path


# API helpers --------------------------------------------------------------------------------


def upload_ready(client: httpx.Client, path: Path, wait_for: Callable[..., Any]) -> str:
    """Upload a video and wait until its first metadata version exists."""
    with path.open("rb") as handle:
        response = client.post("/api/videos/upload", files={"file": (path.name, handle)})
    assert response.status_code == 201, response.text
    video_id: str = response.json()["id"]
    wait_for(lambda: client.get(f"/api/videos/{video_id}/metadata").status_code == 200, 60)
    return video_id


def marked_corners(index: int, leave: bool) -> list[dict[str, float]]:
    normalised = (true_corners_px(index, leave) + 0.5) / [WIDTH, HEIGHT]
    return [{"x": float(x), "y": float(y)} for x, y in normalised]


def create_surface(
    client: httpx.Client, video_id: str, frame: int, corners: Any, **query: Any
) -> httpx.Response:
    body = {"name": "Poster", "frame": frame, "corners": corners}
    return client.post(f"/api/videos/{video_id}/objects/surface", json=body, params=query)


def stored_object(client: httpx.Client, video_id: str, object_id: str) -> dict[str, Any]:
    document = client.get(f"/api/videos/{video_id}/metadata").json()
    obj: dict[str, Any] = document["objects"][object_id]
    return obj


def stored_corners_px(track: dict[str, Any]) -> np.ndarray:
    corners = np.asarray(track["corners"], dtype=np.float64).reshape(-1, 4, 2)
    return corners * [WIDTH, HEIGHT] - 0.5


def corner_errors_px(track: dict[str, Any], leave: bool) -> np.ndarray:
    """Return the largest corner error of every frame of a stored track, in pixels."""
    truth = np.stack([true_corners_px(i, leave) for i in track["frames"]])
    return np.linalg.norm(stored_corners_px(track) - truth, axis=2).max(axis=1)


def true_visible_share(index: int, leave: bool) -> float:
    """Return the share of the photo's true area that lies inside the frame."""
    quad = true_corners_px(index, leave).astype(np.float32)
    frame = np.array(
        [[-0.5, -0.5], [WIDTH - 0.5, -0.5], [WIDTH - 0.5, HEIGHT - 0.5], [-0.5, HEIGHT - 0.5]],
        dtype=np.float32,
    )
    overlap, _ = cv2.intersectConvexConvex(quad, frame)
    return float(overlap) / cv2.contourArea(quad)


def graphql(client: httpx.Client, query: str, **variables: Any) -> dict[str, Any]:
    response = client.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def count_surface_jobs(server, video_id: str) -> int:  # type: ignore[no-untyped-def]
    """Count the surface jobs of a video in the server's database."""

    async def count() -> int:
        database = Database(server.database_url, poolclass=NullPool)
        try:
            async with database.session() as session:
                query = (
                    select(func.count())
                    .select_from(Job)
                    .where(Job.video_id == video_id, Job.kind == "surface")
                )
                return int((await session.execute(query)).scalar_one())
        finally:
            await database.dispose()

    return asyncio.run(count())


def wait_job(
    client: httpx.Client, video_id: str, job_id: str, wait_for: Callable[..., Any], *statuses: str
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        body: dict[str, Any] = client.get(f"/api/videos/{video_id}/jobs/{job_id}").json()
        return body if body["status"] in statuses else None

    result: dict[str, Any] = wait_for(reached, 90)
    return result


@pytest.fixture
def client(server, fresh_key) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    with server.client(fresh_key()) as api_client:
        yield api_client


# Accuracy -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mid_surface(server, mid_scene, wait_for) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Track the photo of the mid scene from frame 50 and return what the API then reports.

    The values are read right after tracking, so tests that change the video later (such as
    processing it) leave them as they are.
    """
    key = server.create_key("*", account="surface-mid")
    with server.client(key) as api_client:
        video_id = upload_ready(api_client, mid_scene, wait_for)
        response = create_surface(api_client, video_id, MID_FRAME, marked_corners(MID_FRAME, False))
        return {
            "key": key,
            "video_id": video_id,
            "status": response.status_code,
            "etag": response.headers.get("ETag"),
            "body": response.json(),
            "object": stored_object(api_client, video_id, "surface_001"),
            "objects": api_client.get(f"/api/videos/{video_id}/objects").json()["objects"],
            "versions": api_client.get(f"/api/videos/{video_id}/versions").json(),
        }


def test_create_surface_tracks_plane_both_directions(mid_surface):  # type: ignore[no-untyped-def]
    track = mid_surface["object"]["track"]

    errors = corner_errors_px(track, leave=False)
    forward, backward = errors[MID_FRAME + 1 :], errors[:MID_FRAME]

    assert mid_surface["status"] == 200, mid_surface["body"]
    assert mid_surface["body"]["success"] is True
    assert mid_surface["body"]["objectId"] == "surface_001"
    assert mid_surface["body"]["trackedFrames"] == SCENE_FRAMES
    assert track["frames"] == list(range(SCENE_FRAMES))
    assert all(track["visible"])
    assert np.median(forward) <= 1.5
    assert forward.max() <= 5.0
    assert np.median(backward) <= 1.5
    assert backward.max() <= 5.0


def test_create_surface_stores_object_summary(mid_surface):  # type: ignore[no-untyped-def]
    version = mid_surface["body"]["version"]
    obj = mid_surface["object"]
    history = mid_surface["versions"]

    assert mid_surface["etag"] == f'"{version}"'
    assert history["currentVersion"] == version == 2
    assert "surface_001" in history["versions"][0]["description"]
    assert obj["kind"] == "surface"
    assert obj["source"] == "surface"
    assert obj["name"] == "Poster"
    assert obj["label"] == "surface"
    assert obj["userLabel"] is None
    assert obj["customData"] == {}
    assert (obj["firstFrame"], obj["lastFrame"], obj["frameCount"]) == (0, 99, 100)
    np.testing.assert_allclose(np.diff(obj["track"]["times"]), 1 / FPS, atol=1e-5)
    assert [item["id"] for item in mid_surface["objects"]] == ["surface_001"]
    assert mid_surface["objects"][0]["frameCount"] == SCENE_FRAMES


def test_create_surface_hides_plane_out_of_view(client, leaving_scene, wait_for):  # type: ignore[no-untyped-def]
    video_id = upload_ready(client, leaving_scene, wait_for)
    shares = np.array([true_visible_share(i, leave=True) for i in range(SCENE_FRAMES)])

    response = create_surface(client, video_id, LEAVING_FRAME, marked_corners(LEAVING_FRAME, True))
    track = stored_object(client, video_id, "surface_001")["track"]
    visible = np.asarray(track["visible"], dtype=bool)
    corners = np.asarray(track["corners"]).reshape(-1, 4, 2)
    errors = corner_errors_px(track, leave=True)
    returned = (np.arange(SCENE_FRAMES) > LEAVE_FROM + LEAVE_FRAMES // 2) & (shares >= 0.9)

    assert response.status_code == 200, response.text
    assert response.json()["trackedFrames"] == int(visible.sum())
    assert (shares == 0).sum() >= 15
    assert not visible[shares == 0].any()
    assert visible[returned].all()
    assert corners[~visible].min() >= 0.0
    assert corners[~visible].max() <= 1.0
    assert np.median(errors[visible]) <= 1.5
    assert errors[visible].max() <= 5.0


# Input checks -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_video(server, sample_video, wait_for) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """A 10-frame video on its own account: (API key, video id)."""
    key = server.create_key("*", account="surface-inputs")
    with server.client(key) as api_client:
        return key, upload_ready(api_client, sample_video, wait_for)


BAD_REQUESTS = [
    pytest.param(
        {"corners": [SQUARE[0], SQUARE[2], SQUARE[1], SQUARE[3]]},
        422,
        "INVALID_QUAD",
        "corners",
        id="bow-tie",
    ),
    pytest.param(
        {"corners": [{"x": 0.1, "y": 0.1}, {"x": 0.5, "y": 0.1}, {"x": 0.9, "y": 0.1}, SQUARE[3]]},
        422,
        "INVALID_QUAD",
        "corners",
        id="collinear",
    ),
    pytest.param(
        {"corners": [SQUARE[0], SQUARE[0], SQUARE[2], SQUARE[3]]},
        422,
        "INVALID_QUAD",
        "corners",
        id="repeated-corner",
    ),
    pytest.param(
        {
            "corners": [
                {"x": 0.5, "y": 0.5},
                {"x": 0.505, "y": 0.5},
                {"x": 0.505, "y": 0.505},
                {"x": 0.5, "y": 0.505},
            ]
        },
        422,
        "INVALID_QUAD",
        "corners",
        id="near-zero-area",
    ),
    pytest.param({"corners": SQUARE[:3]}, 400, "INVALID_PARAMETER", "corners", id="3-corners"),
    pytest.param({"corners": SQUARE * 2}, 400, "INVALID_PARAMETER", "corners", id="8-corners"),
    pytest.param(
        {"corners": [SQUARE[0], {"x": 1.2, "y": 0.2}, SQUARE[2], SQUARE[3]]},
        400,
        "INVALID_PARAMETER",
        "corners[1].x",
        id="corner-outside-frame",
    ),
    pytest.param(
        {"corners": [SQUARE[0], {"x": 0.8}, SQUARE[2], SQUARE[3]]},
        400,
        "INVALID_PARAMETER",
        "corners[1].y",
        id="corner-without-y",
    ),
    pytest.param({"corners": "0.2,0.2"}, 400, "INVALID_PARAMETER", "corners", id="corners-text"),
    pytest.param({"frame": 10}, 400, "INVALID_PARAMETER", "frame", id="frame-past-end"),
    pytest.param({"frame": -1}, 400, "INVALID_PARAMETER", "frame", id="frame-negative"),
    pytest.param({"frame": 2.5}, 400, "INVALID_PARAMETER", "frame", id="frame-fraction"),
    pytest.param({"frame": True}, 400, "INVALID_PARAMETER", "frame", id="frame-boolean"),
    pytest.param({"name": ""}, 400, "INVALID_PARAMETER", "name", id="name-empty"),
    pytest.param({"name": "x" * 256}, 400, "INVALID_PARAMETER", "name", id="name-too-long"),
    pytest.param({"name": 5}, 400, "INVALID_PARAMETER", "name", id="name-number"),
    pytest.param({"name": None}, 400, "INVALID_PARAMETER", "name", id="name-missing"),
    pytest.param({"label": "tv"}, 400, "INVALID_PARAMETER", "label", id="unknown-field"),
]


@pytest.mark.parametrize(("change", "status", "code", "field"), BAD_REQUESTS)
def test_create_surface_rejects_bad_input_without_job(
    server, small_video, change, status, code, field
):  # type: ignore[no-untyped-def]
    key, video_id = small_video
    body = {"name": "Screen", "frame": 0, "corners": SQUARE, **change}

    with server.client(key) as api_client:
        response = api_client.post(f"/api/videos/{video_id}/objects/surface", json=body)
        versions = api_client.get(f"/api/videos/{video_id}/versions").json()

    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["field"] == field
    assert versions["currentVersion"] == 1
    assert count_surface_jobs(server, video_id) == 0


def test_create_surface_frame_error_names_range(server, small_video):  # type: ignore[no-untyped-def]
    key, video_id = small_video
    body = {"name": "Screen", "frame": 12, "corners": SQUARE}

    with server.client(key) as api_client:
        response = api_client.post(f"/api/videos/{video_id}/objects/surface", json=body)

    assert response.json()["error"]["details"] == {"min": 0, "max": 9, "provided": 12}


def test_create_surface_bow_tie_names_test(server, small_video):  # type: ignore[no-untyped-def]
    key, video_id = small_video
    body = {"name": "Screen", "frame": 0, "corners": [SQUARE[0], SQUARE[2], SQUARE[1], SQUARE[3]]}

    with server.client(key) as api_client:
        response = api_client.post(f"/api/videos/{video_id}/objects/surface", json=body)

    assert response.json()["error"]["details"]["test"] == "self_intersecting"


@pytest.mark.parametrize(
    ("wait", "provided"),
    [pytest.param("-1", "-1", id="negative"), pytest.param("abc", "abc", id="not-a-number")],
)
def test_create_surface_rejects_bad_wait(server, small_video, wait, provided):  # type: ignore[no-untyped-def]
    key, video_id = small_video

    with server.client(key) as api_client:
        response = create_surface(api_client, video_id, 0, SQUARE, wait=wait)

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "wait"
    assert response.json()["error"]["details"]["provided"] == provided


def test_create_surface_other_account_not_found(server, small_video, fresh_key):  # type: ignore[no-untyped-def]
    _, video_id = small_video

    with server.client(fresh_key()) as stranger:
        response = create_surface(stranger, video_id, 0, SQUARE)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"
    assert count_surface_jobs(server, video_id) == 0


def test_create_surface_without_scope_forbidden(server, small_video):  # type: ignore[no-untyped-def]
    _, video_id = small_video
    key = server.create_key("metadata:write", account="surface-inputs")

    with server.client(key) as api_client:
        response = create_surface(api_client, video_id, 0, [])

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "FORBIDDEN"


# Jobs ---------------------------------------------------------------------------------------


def test_create_surface_without_wait_returns_job(client, sample_video, wait_for):  # type: ignore[no-untyped-def]
    video_id = upload_ready(client, sample_video, wait_for)

    response = create_surface(client, video_id, 5, SQUARE, wait="0")
    body = response.json()
    finished = wait_job(client, video_id, body["jobId"], wait_for, "completed", "failed")
    obj = stored_object(client, video_id, body["objectId"])

    assert response.status_code == 202, response.text
    assert body["status"] in ("queued", "processing")
    assert body["objectId"] == "surface_001"
    assert response.headers["Location"] == f"/api/videos/{video_id}/jobs/{body['jobId']}"
    assert finished["status"] == "completed", finished
    assert finished["kind"] == "surface"
    assert finished["progress"] == 100
    assert finished["objectId"] == "surface_001"
    assert finished["trackedFrames"] == obj["frameCount"]
    assert finished["version"] == 2
    assert obj["name"] == "Poster"


def test_create_surface_numbers_second_surface(client, sample_video, wait_for):  # type: ignore[no-untyped-def]
    video_id = upload_ready(client, sample_video, wait_for)
    wide_quad = [
        {"x": 0.1, "y": 0.1},
        {"x": 0.9, "y": 0.1},
        {"x": 0.9, "y": 0.9},
        {"x": 0.1, "y": 0.9},
    ]

    first = create_surface(client, video_id, 0, SQUARE)
    second = create_surface(client, video_id, 9, wide_quad)
    document = client.get(f"/api/videos/{video_id}/metadata").json()

    assert first.json()["objectId"] == "surface_001"
    assert second.json()["objectId"] == "surface_002"
    assert second.json()["version"] == 3
    assert set(document["objects"]) == {"surface_001", "surface_002"}


def test_create_surface_moves_off_taken_id(client, mid_scene, wait_for):  # type: ignore[no-untyped-def]
    video_id = upload_ready(client, mid_scene, wait_for)
    manual = {"id": "surface_001", "name": "Hand-made", "kind": "surface", "source": "manual"}

    started = create_surface(client, video_id, MID_FRAME, SQUARE, wait="0").json()
    patch = client.patch(
        f"/api/videos/{video_id}/metadata", json={"objects": {"surface_001": manual}}
    )
    finished = wait_job(client, video_id, started["jobId"], wait_for, "completed", "failed")
    document = client.get(f"/api/videos/{video_id}/metadata").json()

    assert started["objectId"] == "surface_001"
    assert patch.status_code == 200, patch.text
    assert finished["status"] == "completed", finished
    assert finished["objectId"] == "surface_002"
    assert document["objects"]["surface_001"]["source"] == "manual"
    assert document["objects"]["surface_002"]["source"] == "surface"
    assert document["objects"]["surface_002"]["name"] == "Poster"


def test_create_surface_textureless_fails_with_invalid_quad(client, flat_video, wait_for):  # type: ignore[no-untyped-def]
    video_id = upload_ready(client, flat_video, wait_for)

    response = create_surface(client, video_id, 3, SQUARE)
    error = response.json()["error"]
    versions = client.get(f"/api/videos/{video_id}/versions").json()
    job = client.get(f"/api/videos/{video_id}/jobs/{error['details']['jobId']}").json()

    assert response.status_code == 422, response.text
    assert error["code"] == "INVALID_QUAD"
    assert error["details"]["test"] == "texture"
    assert versions["currentVersion"] == 1
    assert job["status"] == "failed"
    assert job["error"]


def test_cancel_surface_job_keeps_version(server, client, long_video, wait_for):  # type: ignore[no-untyped-def]
    video_id = upload_ready(client, long_video, wait_for)

    started = create_surface(client, video_id, 700, SQUARE, wait="0").json()
    wait_job(client, video_id, started["jobId"], wait_for, "processing", "completed")
    second = create_surface(client, video_id, 0, SQUARE, wait="0")
    cancel = client.post(f"/api/videos/{video_id}/jobs/{started['jobId']}/cancel")
    finished = wait_job(client, video_id, started["jobId"], wait_for, "cancelled", "completed")
    again = client.post(f"/api/videos/{video_id}/jobs/{started['jobId']}/cancel")
    versions = client.get(f"/api/videos/{video_id}/versions").json()

    assert second.status_code == 409
    assert second.json()["error"]["code"] == "JOB_ACTIVE"
    assert cancel.status_code == 200, cancel.text
    assert finished["status"] == "cancelled"
    assert finished["progress"] < 100
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "NO_ACTIVE_JOB"
    assert versions["currentVersion"] == 1
    assert count_surface_jobs(server, video_id) == 1


def test_job_status_of_other_video_not_found(client, sample_video, wait_for, fresh_key, server):  # type: ignore[no-untyped-def]
    video_id = upload_ready(client, sample_video, wait_for)
    other_id = upload_ready(client, sample_video, wait_for)
    job_id = create_surface(client, video_id, 0, SQUARE).json()["jobId"]

    with server.client(fresh_key()) as stranger:
        stranger_response = stranger.get(f"/api/videos/{video_id}/jobs/{job_id}")
    other_video_response = client.get(f"/api/videos/{other_id}/jobs/{job_id}")
    unknown_response = client.get(f"/api/videos/{video_id}/jobs/job_unknown")

    assert stranger_response.status_code == 404
    assert other_video_response.status_code == 404
    assert unknown_response.status_code == 404
    assert unknown_response.json()["error"]["field"] == "jobId"


def test_reprocess_keeps_surface(server, mid_surface, wait_for):  # type: ignore[no-untyped-def]
    models_dir = Path(
        os.environ.get("MP4E_TEST_MODELS_DIR", Path(__file__).parents[2] / "var/models")
    )
    if not models_dir.is_dir():
        pytest.skip(
            f"Processing needs the detector weights in {models_dir} (scripts/fetch_models)."
        )
    video_id = mid_surface["video_id"]

    with server.client(mid_surface["key"]) as client:
        process = client.post(f"/api/videos/{video_id}/process", json={"fps": 1})
        wait_job(client, video_id, process.json()["jobId"], wait_for, "completed", "failed")
        status = client.get(f"/api/videos/{video_id}/process/status").json()
        after = stored_object(client, video_id, "surface_001")
        versions = client.get(f"/api/videos/{video_id}/versions").json()

    assert process.status_code == 200, process.text
    assert status["status"] == "completed", status
    assert versions["currentVersion"] == 3
    assert after == mid_surface["object"]


# GraphQL ------------------------------------------------------------------------------------


def test_graphql_create_surface_and_read_job(client, sample_video, wait_for):  # type: ignore[no-untyped-def]
    video_id = upload_ready(client, sample_video, wait_for)

    created = graphql(
        client, CREATE_MUTATION, video=video_id, name="Screen", frame=4, corners=SQUARE
    )
    result = created["data"]["createSurface"]
    job = graphql(client, JOB_QUERY, video=video_id, job=result["jobId"])["data"]["videoJob"]
    obj = stored_object(client, video_id, result["objectId"])

    assert "errors" not in created, created
    assert result["status"] == "completed"
    assert result["objectId"] == "surface_001"
    assert result["trackedFrames"] == obj["frameCount"]
    assert result["version"] == 2
    assert job["kind"] == "surface"
    assert job["status"] == "completed"
    assert job["trackedFrames"] == result["trackedFrames"]
    assert obj["name"] == "Screen"


def test_graphql_create_surface_rejects_bow_tie(server, small_video):  # type: ignore[no-untyped-def]
    key, video_id = small_video
    bow_tie = [SQUARE[0], SQUARE[2], SQUARE[1], SQUARE[3]]

    with server.client(key) as api_client:
        body = graphql(
            api_client, CREATE_MUTATION, video=video_id, name="S", frame=0, corners=bow_tie
        )

    assert body["errors"][0]["extensions"]["code"] == "INVALID_QUAD"
    assert body["errors"][0]["extensions"]["field"] == "corners"
    assert count_surface_jobs(server, video_id) == 0


def test_graphql_create_surface_frame_out_of_range(server, small_video):  # type: ignore[no-untyped-def]
    key, video_id = small_video

    with server.client(key) as api_client:
        body = graphql(
            api_client, CREATE_MUTATION, video=video_id, name="S", frame=99, corners=SQUARE
        )

    assert body["errors"][0]["extensions"]["code"] == "INVALID_PARAMETER"
    assert body["errors"][0]["extensions"]["field"] == "frame"


@pytest.mark.parametrize(
    ("scope", "account", "code"),
    [
        pytest.param("metadata:write", "surface-inputs", "FORBIDDEN", id="missing-scope"),
        pytest.param("*", "surface-stranger", "NOT_FOUND", id="other-account"),
    ],
)
def test_graphql_create_surface_access(server, small_video, scope, account, code):  # type: ignore[no-untyped-def]
    _, video_id = small_video
    key = server.create_key(scope, account=account)

    with server.client(key) as api_client:
        body = graphql(
            api_client, CREATE_MUTATION, video=video_id, name="S", frame=0, corners=SQUARE
        )

    assert body["errors"][0]["extensions"]["code"] == code
    assert count_surface_jobs(server, video_id) == 0


def test_graphql_video_job_other_account(server, client, sample_video, wait_for, fresh_key):  # type: ignore[no-untyped-def]
    video_id = upload_ready(client, sample_video, wait_for)
    job_id = create_surface(client, video_id, 0, SQUARE, wait="0").json()["jobId"]

    with server.client(fresh_key()) as stranger:
        body = graphql(stranger, JOB_QUERY, video=video_id, job=job_id)
        cancel = graphql(
            stranger,
            "mutation($video: ID!, $job: ID!) { cancelJob(videoId: $video, jobId: $job) "
            "{ status } }",
            video=video_id,
            job=job_id,
        )

    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert cancel["errors"][0]["extensions"]["code"] == "NOT_FOUND"
