"""Processing over HTTP: request checks, the real detector on real and synthetic footage,
cancelling, a killed worker, and reprocessing that keeps user edits.

The synthetic clips paste people cut out of vtest.avi onto an empty stretch of its road. The
real NanoDet finds them there, and the clip writer returns each person's box in every frame.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import cv2
import httpx
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
MODELS_DIR = Path(os.environ.get("MP4E_TEST_MODELS_DIR", REPO / "var" / "models"))
CHECKPOINT = MODELS_DIR / "nanodet" / "nanodet_g_416.pth"
VTEST = REPO / "var" / "samples" / "vtest.avi"
FIRST_BACKEND = os.environ.get("MP4E_TEST_BACKENDS", "sqlite,postgres").split(",")[0]

TERMINAL_STATUSES = ("completed", "failed", "cancelled")
JOB_TIMEOUT_S = 240

CLIP_WH = (320, 180)
CLIP_RATE = 10
# An empty stretch of road in vtest.avi (x, y, width, height): the synthetic clips' background.
ROAD_XYWH = (440, 190, 320, 180)
# NanoDet finds the pasted people at 1.3-1.5 times their size in vtest.avi (scores 0.7-0.8)
# but hardly at their own size (under 0.2), so they are scaled to this height.
PERSON_HEIGHT_PX = 110
CROP_MARGIN_PX = 3


@dataclass(frozen=True)
class Sprite:
    """A person cut out of vtest.avi: RGB pixels and the person's box inside them."""

    image: np.ndarray
    person_xyxy: tuple[float, float, float, float]


@dataclass(frozen=True)
class Street:
    background: np.ndarray
    people: list[Sprite]


@dataclass(frozen=True)
class Walker:
    """A person moving horizontally: the sprite's top-left corner at 0 s, and its speed."""

    person: int
    start_xy: tuple[float, float]
    velocity_x_px_s: float

    def top_left(self, time_s: float) -> tuple[int, int]:
        return round(self.start_xy[0] + self.velocity_x_px_s * time_s), round(self.start_xy[1])


# Person 0 walks out on the left, leaving the frame 2.5 s in; person 1 stays on the right.
LEFT_EXIT = (Walker(0, (150, 30), -80.0), Walker(1, (215, 45), 8.0))
LEFT_EXIT_SECONDS = 3.6
# Both stay in the frame, apart, while the second second of three is black.
BLACKOUT = (Walker(0, (40, 30), 20.0), Walker(1, (210, 45), 5.0))
BLACKOUT_SECONDS = 3.0
BLACK_FRAMES = range(10, 20)


def require_model_and_footage() -> None:
    missing = [str(path) for path in (CHECKPOINT, VTEST) if not path.is_file()]
    if missing:
        pytest.skip(
            f"{', '.join(missing)} missing; scripts/fetch_models and scripts/fetch_samples "
            "fetch the NanoDet model and vtest.avi"
        )


def _box_iou(a: np.ndarray, b: np.ndarray) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    intersection = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection
    return float(intersection / union) if union > 0 else 0.0


def _paste(canvas: np.ndarray, sprite: Sprite, top_left: tuple[int, int]) -> np.ndarray | None:
    """Paste `sprite` with its top-left corner at `top_left`, cut at the canvas edges.

    Returns the visible part of the person's box in canvas pixels, or None when none of it is
    visible.
    """
    height, width = canvas.shape[:2]
    sprite_h, sprite_w = sprite.image.shape[:2]
    x, y = top_left
    x1, y1, x2, y2 = max(0, x), max(0, y), min(width, x + sprite_w), min(height, y + sprite_h)
    if x1 < x2 and y1 < y2:
        canvas[y1:y2, x1:x2] = sprite.image[y1 - y : y2 - y, x1 - x : x2 - x]
    offset = np.array([x, y, x, y], dtype=np.float64)
    box = np.clip(np.array(sprite.person_xyxy) + offset, 0, [width, height, width, height])
    return box if box[2] - box[0] >= 1 and box[3] - box[1] >= 1 else None


def write_walkers_clip(
    path: Path,
    street: Street,
    walkers: tuple[Walker, ...],
    seconds: float,
    black_frames: range = range(0),
) -> dict[int, dict[int, np.ndarray]]:
    """Write an H.264 clip of `walkers` on the street, and return where each one is.

    The result maps a frame index to {walker index: visible person box in pixels}. Frames in
    `black_frames` are black and show nobody.
    """
    truth: dict[int, dict[int, np.ndarray]] = {}
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=CLIP_RATE)
        stream.width, stream.height = CLIP_WH
        stream.pix_fmt = "yuv420p"
        for index in range(round(seconds * CLIP_RATE)):
            canvas = street.background.copy()
            truth[index] = {}
            if index in black_frames:
                canvas[:] = 0
            else:
                for number, walker in enumerate(walkers):
                    sprite = street.people[walker.person]
                    box = _paste(canvas, sprite, walker.top_left(index / CLIP_RATE))
                    if box is not None:
                        truth[index][number] = box
            frame = av.VideoFrame.from_ndarray(canvas, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return truth


def _isolated_people(detector: Any, image: np.ndarray) -> Iterator[Sprite]:
    """Cut out confidently detected people who overlap no other detection."""
    found = detector.detect(image)
    others = found.boxes_xyxy[found.scores >= 0.3]
    height, width = image.shape[:2]
    for box, score, name in zip(found.boxes_xyxy, found.scores, found.label_names(), strict=True):
        x1, y1, x2, y2 = (int(v) for v in np.round(box))
        if name != "person" or score < 0.7 or y2 - y1 < 70:
            continue
        grown = np.array([x1 - 12, y1 - 12, x2 + 12, y2 + 12])
        if sum(_box_iou(grown, other) > 0 for other in others) > 1:
            continue
        margin = CROP_MARGIN_PX
        if x1 < margin or y1 < margin or x2 + margin > width or y2 + margin > height:
            continue
        scale = PERSON_HEIGHT_PX / (y2 - y1)
        cut = image[y1 - margin : y2 + margin, x1 - margin : x2 + margin]
        crop = cv2.resize(cut, None, fx=scale, fy=scale)
        right, bottom = x2 - x1 + margin, y2 - y1 + margin
        inner = (margin * scale, margin * scale, right * scale, bottom * scale)
        yield Sprite(np.ascontiguousarray(crop), inner)


def _found_on(detector: Any, background: np.ndarray, sprite: Sprite) -> bool:
    """Tell whether the detector finds `sprite` pasted in the middle of `background`."""
    canvas = background.copy()
    top_left = (
        (canvas.shape[1] - sprite.image.shape[1]) // 2,
        (canvas.shape[0] - sprite.image.shape[0]) // 2,
    )
    truth = _paste(canvas, sprite, top_left)
    found = detector.detect(canvas)
    return any(
        name == "person" and score >= 0.5 and _box_iou(box, truth) >= 0.5
        for box, score, name in zip(
            found.boxes_xyxy, found.scores, found.label_names(), strict=True
        )
    )


@pytest.fixture(scope="session")
def street() -> Street:
    """The road of vtest.avi without people (a per-pixel median), and two people from it."""
    require_model_and_footage()
    import torch

    from mp4e.vision.decode import iter_sampled_frames
    from mp4e.vision.detection import load_detector

    with iter_sampled_frames(VTEST, 0.5) as frames:
        images = [frame.image for frame in frames]
    x, y, width, height = ROAD_XYWH
    road = np.stack([image[y : y + height, x : x + width] for image in images])
    background = np.ascontiguousarray(np.median(road, axis=0).astype(np.uint8))

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the test servers' workers need the other core
    try:
        detector = load_detector(None, None, "cpu", MODELS_DIR)
        people: list[Sprite] = []
        for image in images[::5]:
            people += [
                s for s in _isolated_people(detector, image) if _found_on(detector, background, s)
            ]
            if len(people) >= 2:
                break
    finally:
        torch.set_num_threads(threads)
    assert len(people) >= 2, "fewer than two people of vtest.avi are found on the empty road"
    return Street(background, people[:2])


@pytest.fixture(scope="session")
def left_exit_clip(
    street: Street, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[int, dict[int, np.ndarray]]]:
    path = tmp_path_factory.mktemp("walkers") / "left-exit.mp4"
    return path, write_walkers_clip(path, street, LEFT_EXIT, LEFT_EXIT_SECONDS)


@pytest.fixture(scope="session")
def blackout_clip(
    street: Street, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[int, dict[int, np.ndarray]]]:
    path = tmp_path_factory.mktemp("walkers") / "blackout.mp4"
    return path, write_walkers_clip(path, street, BLACKOUT, BLACKOUT_SECONDS, BLACK_FRAMES)


@pytest.fixture(scope="session")
def long_clip(make_video: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 s at 10 fps: processing every frame keeps a worker busy for a minute or more."""
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    return make_video(path, seconds=60, size="320x180", rate=10, extra=["-preset", "ultrafast"])


# --- HTTP steps ---


def upload(client: httpx.Client, path: Path, **fields: str) -> str:
    with path.open("rb") as handle:
        response = client.post(
            "/api/videos/upload", files={"file": (path.name, handle)}, data=fields
        )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def upload_ready(client: httpx.Client, path: Path, wait_for: Callable[..., Any]) -> str:
    """Upload a video and wait until ingest has finished."""
    video_id = upload(client, path)

    def ingested() -> str | None:
        status: str = client.get(f"/api/videos/{video_id}").json()["status"]
        return None if status == "uploading" else status

    assert wait_for(ingested, 60) == "ready"
    return video_id


def job_status(client: httpx.Client, video_id: str) -> dict[str, Any]:
    response = client.get(f"/api/videos/{video_id}/process/status")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_job_end(
    client: httpx.Client,
    video_id: str,
    wait_for: Callable[..., Any],
    timeout_s: float = JOB_TIMEOUT_S,
) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        response = client.get(f"/api/videos/{video_id}/process/status")
        if response.status_code != 200:
            return None
        body: dict[str, Any] = response.json()
        return body if body["status"] in TERMINAL_STATUSES else None

    result: dict[str, Any] = wait_for(ended, timeout_s, 0.3)
    return result


def wait_status(
    client: httpx.Client, video_id: str, status: str, wait_for: Callable[..., Any], timeout_s: float
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        body = job_status(client, video_id)
        return body if body["status"] == status else None

    result: dict[str, Any] = wait_for(reached, timeout_s, 0.2)
    return result


def wait_frames_processed(
    client: httpx.Client, video_id: str, wait_for: Callable[..., Any]
) -> dict[str, Any]:
    """Wait until the job runs and has finished a sampled frame, so the model is loaded."""

    def running() -> dict[str, Any] | None:
        body = job_status(client, video_id)
        assert body["status"] not in TERMINAL_STATUSES, body
        return body if body["status"] == "processing" and body["currentFrame"] > 0 else None

    result: dict[str, Any] = wait_for(running, 120, 0.1)
    return result


def process(
    client: httpx.Client, video_id: str, wait_for: Callable[..., Any], **params: Any
) -> dict[str, Any]:
    response = client.post(f"/api/videos/{video_id}/process", json=params)
    assert response.status_code == 200, response.text
    status = wait_job_end(client, video_id, wait_for)
    assert status["status"] == "completed", status
    return status


def cancel_quietly(client: httpx.Client, video_id: str) -> None:
    """Free the worker after a test that leaves a long job behind."""
    client.post(f"/api/videos/{video_id}/process/cancel")


def document(client: httpx.Client, video_id: str) -> dict[str, Any]:
    response = client.get(f"/api/videos/{video_id}/metadata")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def boxes_by_frame(obj: dict[str, Any]) -> dict[int, np.ndarray]:
    """An object's track as {frame index: box in clip pixels}."""
    track = obj["track"]
    scale = np.array([*CLIP_WH, *CLIP_WH], dtype=np.float64)
    boxes = np.asarray(track["boxes"], dtype=np.float64).reshape(-1, 4) * scale
    return dict(zip(track["frames"], boxes, strict=True))


def matching_object(
    objects: dict[str, Any], truth: dict[int, dict[int, np.ndarray]], walker: int
) -> tuple[dict[str, Any], int]:
    """The person object that covers walker `walker` in the most frames (IoU >= 0.5)."""
    best: tuple[dict[str, Any] | None, int] = (None, 0)
    for obj in objects.values():
        if obj.get("label") != "person" or "track" not in obj:
            continue
        hits = sum(
            walker in truth[frame] and _box_iou(box, truth[frame][walker]) >= 0.5
            for frame, box in boxes_by_frame(obj).items()
        )
        if hits > best[1]:
            best = (obj, hits)
    assert best[0] is not None, f"no person track follows walker {walker}"
    return best[0], best[1]


# --- request checks ---


@pytest.fixture(scope="module")
def ready_video(server, admin_key, sample_video, wait_for) -> str:  # type: ignore[no-untyped-def]
    with server.client(admin_key) as client:
        return upload_ready(client, sample_video, wait_for)


INVALID_REQUESTS = [
    pytest.param({"fps": 60}, "fps", {"min": 1, "max": 30, "provided": 60}, id="fps-60"),
    pytest.param({"fps": 0}, "fps", {"min": 1, "max": 30, "provided": 0}, id="fps-0"),
    pytest.param({"fps": "5"}, "fps", {"min": 1, "max": 30, "provided": "5"}, id="fps-string"),
    pytest.param({"fps": True}, "fps", {"min": 1, "max": 30, "provided": True}, id="fps-bool"),
    pytest.param(
        {"confidence": 1.5}, "confidence", {"min": 0, "max": 1, "provided": 1.5}, id="conf-1.5"
    ),
    pytest.param(
        {"confidence": -0.1}, "confidence", {"min": 0, "max": 1, "provided": -0.1}, id="conf-neg"
    ),
    pytest.param({"confidence": 0}, "confidence", None, id="confidence-0"),
    pytest.param({"labels": "person"}, "labels", {"provided": "person"}, id="labels-string"),
    pytest.param({"labels": ["person", ""]}, "labels", None, id="labels-empty-string"),
    pytest.param({"labels": [f"l{i}" for i in range(51)]}, "labels", None, id="labels-51"),
    pytest.param({"labels": ["product"]}, "labels", None, id="label-needs-clip"),
    pytest.param({"enableClip": "yes"}, "enableClip", {"provided": "yes"}, id="clip-string"),
    pytest.param({"enableClip": True}, "enableClip", None, id="clip-not-configured"),
    pytest.param({"speed": 2}, "speed", None, id="unknown-parameter"),
]


@pytest.mark.parametrize(("body", "field", "details"), INVALID_REQUESTS)
def test_process_rejects_invalid_request(server, admin_key, ready_video, body, field, details):  # type: ignore[no-untyped-def]
    with server.client(admin_key) as client:
        response = client.post(f"/api/videos/{ready_video}/process", json=body)
        status = client.get(f"/api/videos/{ready_video}/process/status")

    error = response.json()["error"]
    assert response.status_code == 400
    assert error["code"] == "INVALID_PARAMETER"
    assert error["field"] == field
    assert error["message"]
    if details is not None:
        assert {key: error["details"].get(key) for key in details} == details
    assert status.status_code == 404


def test_process_fps_60_message_names_range(server, admin_key, ready_video) -> None:  # type: ignore[no-untyped-def]
    with server.client(admin_key) as client:
        response = client.post(f"/api/videos/{ready_video}/process", json={"fps": 60})

    assert response.json()["error"]["message"] == "The 'fps' parameter must be between 1 and 30."


def test_process_rejects_body_that_is_not_object(server, admin_key, ready_video) -> None:  # type: ignore[no-untyped-def]
    with server.client(admin_key) as client:
        response = client.post(f"/api/videos/{ready_video}/process", json=[{"fps": 5}])
        status = client.get(f"/api/videos/{ready_video}/process/status")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_PARAMETER"
    assert status.status_code == 404


def test_process_unknown_video_is_not_found(server, admin_key) -> None:  # type: ignore[no-untyped-def]
    with server.client(admin_key) as client:
        response = client.post("/api/videos/video_0000000000000000/process", json={"fps": 5})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


def test_cancel_without_job_is_conflict(server, admin_key, ready_video) -> None:  # type: ignore[no-untyped-def]
    with server.client(admin_key) as client:
        response = client.post(f"/api/videos/{ready_video}/process/cancel")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "NO_ACTIVE_JOB"


# --- cancelling a long job ---


def test_cancel_stops_long_job_and_keeps_version(server, admin_key, long_clip, wait_for) -> None:  # type: ignore[no-untyped-def]
    with server.client(admin_key) as client:
        video_id = upload_ready(client, long_clip, wait_for)
        before = client.get(f"/api/videos/{video_id}/metadata")
        versions_before = client.get(f"/api/videos/{video_id}/versions").json()
        started = client.post(f"/api/videos/{video_id}/process", json={"fps": 10})
        try:
            second = client.post(f"/api/videos/{video_id}/process", json={"fps": 5})
            running = wait_frames_processed(client, video_id, wait_for)

            requested_at = time.monotonic()
            cancelled = client.post(f"/api/videos/{video_id}/process/cancel")
            while job_status(client, video_id)["status"] != "cancelled":
                assert time.monotonic() - requested_at < 10, "the job was not cancelled in 10 s"
                time.sleep(0.05)
            cancel_s = time.monotonic() - requested_at
        finally:
            cancel_quietly(client, video_id)
        stopped = job_status(client, video_id)
        time.sleep(5)  # longer than the lease (4 s): a retry would have started by now
        later = job_status(client, video_id)
        after = client.get(f"/api/videos/{video_id}/metadata")
        versions_after = client.get(f"/api/videos/{video_id}/versions").json()
        video = client.get(f"/api/videos/{video_id}").json()

    job_id = started.json()["jobId"]
    assert started.status_code == 200
    assert started.json()["status"] == "queued"
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "JOB_ACTIVE"
    assert second.json()["error"]["details"]["jobId"] == job_id
    assert job_id in second.json()["error"]["message"]
    assert running["jobId"] == job_id
    assert cancelled.status_code == 200
    assert cancelled.json() == {"success": True, "status": "cancelled", "jobId": job_id}
    assert cancel_s <= 2.0
    assert stopped["currentFrame"] < stopped["totalFrames"]
    assert later["status"] == "cancelled"
    assert later["currentFrame"] == stopped["currentFrame"]
    assert versions_after["currentVersion"] == versions_before["currentVersion"]
    assert after.headers["etag"] == before.headers["etag"]
    assert after.json() == before.json()
    assert video["status"] == "ready"


# --- the real detector on synthetic footage ---


def test_upload_auto_process_starts_after_ingest(
    server, admin_key, left_exit_clip, wait_for
) -> None:  # type: ignore[no-untyped-def]
    path, _ = left_exit_clip
    with server.client(admin_key) as client:
        video_id = upload(client, path, autoProcess="true")
        status = wait_job_end(client, video_id, wait_for)
        versions = client.get(f"/api/videos/{video_id}/versions").json()
        video = client.get(f"/api/videos/{video_id}").json()

    assert status["status"] == "completed"
    assert versions["currentVersion"] == 2
    assert versions["versions"][0]["description"].startswith("Processed at 5 fps")
    assert video["status"] == "processed"


def test_process_person_leaving_left_ends_at_edge(
    server, admin_key, left_exit_clip, wait_for
) -> None:  # type: ignore[no-untyped-def]
    path, truth = left_exit_clip
    with server.client(admin_key) as client:
        video_id = upload_ready(client, path, wait_for)
        process(client, video_id, wait_for, fps=5)
        objects = document(client, video_id)["objects"]

    leaver, hits = matching_object(objects, truth, 0)
    leaver_boxes = boxes_by_frame(leaver)
    last_frame = max(leaver_boxes)
    sampled_while_visible = [f for f in range(0, len(truth), 2) if 0 in truth[f]]
    gone_frames = [f for f in range(0, len(truth), 2) if f > max(sampled_while_visible)]
    all_boxes = [
        box for obj in objects.values() if "track" in obj for box in boxes_by_frame(obj).values()
    ]
    left_half_after_exit = [
        (obj["id"], frame)
        for obj in objects.values()
        if obj.get("label") == "person" and "track" in obj
        for frame, box in boxes_by_frame(obj).items()
        if frame in gone_frames and box[2] < CLIP_WH[0] / 2
    ]
    assert hits >= len(sampled_while_visible) - 3
    assert leaver_boxes[last_frame][0] <= 2.0
    assert last_frame >= sampled_while_visible[-2]
    assert min(box[0] for box in all_boxes) >= 0
    assert gone_frames
    assert left_half_after_exit == []


def test_process_black_second_has_no_boxes(server, admin_key, blackout_clip, wait_for) -> None:  # type: ignore[no-untyped-def]
    path, truth = blackout_clip
    with server.client(admin_key) as client:
        video_id = upload_ready(client, path, wait_for)
        process(client, video_id, wait_for, fps=5)
        objects = document(client, video_id)["objects"]

    frames = [
        frame for obj in objects.values() if "track" in obj for frame in obj["track"]["frames"]
    ]
    people = [obj for obj in objects.values() if obj.get("label") == "person"]
    person_frames = [frame for obj in people for frame in obj["track"]["frames"]]
    assert [frame for frame in frames if frame in BLACK_FRAMES] == []
    assert any(frame < BLACK_FRAMES.start for frame in person_frames)
    assert any(frame >= BLACK_FRAMES.stop for frame in person_frames)
    for walker in (0, 1):
        _, hits = matching_object(objects, truth, walker)
        assert hits >= 6, f"walker {walker} is matched in {hits} sampled frames"


def test_reprocess_keeps_user_edits_and_overlay(
    server, admin_key, left_exit_clip, wait_for
) -> None:  # type: ignore[no-untyped-def]
    path, truth = left_exit_clip
    overlay = {
        "id": "overlay_follow",
        "name": "Follows the walker",
        "position": {"x": 0.5, "y": 0.5},
        "plugin": {"type": "core:button", "config": {"text": "Buy"}},
    }
    with server.client(admin_key) as client:
        video_id = upload_ready(client, path, wait_for)
        process(client, video_id, wait_for, fps=5)
        stayer, _ = matching_object(document(client, video_id)["objects"], truth, 1)
        object_id = stayer["id"]
        edited = client.patch(
            f"/api/videos/{video_id}/objects/{object_id}",
            json={"userLabel": "Walker", "customData": {"sku": "W-1", "price": 19.5}},
        )
        bound = client.patch(
            f"/api/videos/{video_id}/metadata",
            json={
                "layers": [
                    {
                        "id": "layer_main",
                        "name": "Main",
                        "overlays": [{**overlay, "objectId": object_id}],
                    }
                ]
            },
        )
        version_before = client.get(f"/api/videos/{video_id}/versions").json()["currentVersion"]
        process(client, video_id, wait_for, fps=5)
        after = document(client, video_id)
        version_after = client.get(f"/api/videos/{video_id}/versions").json()["currentVersion"]

    kept = after["objects"].get(object_id)
    overlays = [o for layer in after["layers"] for o in layer["overlays"]]
    assert edited.status_code == 200, edited.text
    assert bound.status_code == 200, bound.text
    assert version_after == version_before + 1
    assert kept is not None
    assert kept["label"] == "person"
    assert kept["userLabel"] == "Walker"
    assert kept["customData"] == {"sku": "W-1", "price": 19.5}
    assert matching_object(after["objects"], truth, 1)[0]["id"] == object_id
    assert [o.get("objectId") for o in overlays if o["id"] == "overlay_follow"] == [object_id]


# --- the acceptance run on vtest.avi ---


def longest_sampled_run(frames: list[int], sampled: list[int]) -> int:
    """The most consecutive sampled frames that a track covers without a gap."""
    position = {frame: i for i, frame in enumerate(sampled)}
    longest = run = 0
    previous = None
    for frame in frames:
        run = run + 1 if previous is not None and position[frame] == position[previous] + 1 else 1
        longest = max(longest, run)
        previous = frame
    return longest


@pytest.mark.slow
def test_process_vtest_tracks_people_and_vehicle(server, admin_key, wait_for) -> None:  # type: ignore[no-untyped-def]
    require_model_and_footage()
    if server.backend != FIRST_BACKEND:
        pytest.skip(
            f"vtest.avi runs once, on {FIRST_BACKEND}: the detector does not depend on the backend"
        )
    with server.client(admin_key) as client:
        video_id = upload_ready(client, VTEST, wait_for)
        process(client, video_id, wait_for, fps=5)
        body = document(client, video_id)

    details = body["videoDetails"]
    sampled = list(range(0, details["totalFrames"], 2))  # 10 fps sampled at 5 fps
    objects = list(body["objects"].values())
    runs = sorted(
        (
            longest_sampled_run(obj["track"]["frames"], sampled)
            for obj in objects
            if obj["label"] == "person"
        ),
        reverse=True,
    )
    vehicles = [obj for obj in objects if obj["label"] in ("car", "truck", "bus")]
    assert details["fps"] == 10
    assert {frame for obj in objects for frame in obj["track"]["frames"]} <= set(sampled)
    assert len([run for run in runs if run >= 20]) >= 5, runs
    assert vehicles, sorted({obj["label"] for obj in objects})
    assert max(len(obj["track"]["frames"]) for obj in vehicles) >= 20


# --- a worker killed mid-job (PostgreSQL + Redis, separate workers) ---


def test_killed_worker_job_requeued_once_then_failed(server_factory, long_clip, wait_for) -> None:  # type: ignore[no-untyped-def]
    require_model_and_footage()
    instance = server_factory("postgres", MP4E_JOB_LEASE_S="3")
    key = instance.create_key("*", account="kill")
    with instance.client(key) as client:
        video_id = upload_ready(client, long_clip, wait_for)
        job_id = client.post(f"/api/videos/{video_id}/process", json={"fps": 10}).json()["jobId"]
        wait_frames_processed(client, video_id, wait_for)
        first_worker = instance.processes[1]

        os.kill(first_worker.pid, signal.SIGKILL)
        first_worker.wait(timeout=10)
        requeued = wait_status(client, video_id, "queued", wait_for, 30)
        second_worker = instance.start_worker()
        claimed = wait_status(client, video_id, "processing", wait_for, 60)
        os.kill(second_worker.pid, signal.SIGKILL)
        second_worker.wait(timeout=10)
        final = wait_job_end(client, video_id, wait_for, 30)
        video = client.get(f"/api/videos/{video_id}").json()

    assert requeued["jobId"] == job_id
    assert claimed["jobId"] == job_id
    assert final["jobId"] == job_id
    assert final["status"] == "failed"
    assert "lease" in final["error"]
    assert "2 time(s)" in final["error"]
    assert video["status"] == "ready"
