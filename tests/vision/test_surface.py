"""Tests of planar surface tracking.

The accuracy tests render a real photo (graf1.png from the Debian package opencv-doc) onto a
panning background photo under known homographies, encode the frames with libx264 at CRF 18,
and track the photo through frames decoded back from that file. The scene generator repeats
the one in scripts/bench_surface.py on purpose, because tests import nothing from scripts.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from mp4e.errors import Cancelled, CorruptMedia, InvalidParameter, InvalidQuad
from mp4e.vision.surface import CHUNK_FRAMES, SurfaceTrack, track_surface, validate_quad

WIDTH, HEIGHT = 1280, 720
FPS = 25
SCENE_FRAMES = 250
MID_START = 120
LEAVING_START = 40


def _load_rgb(path: Path) -> np.ndarray:
    # PyAV decodes the photos, not cv2.imread: once decord 0.6.0 is loaded in the process
    # before cv2, OpenCV's PNG reader fails with "libpng error: bad parameters to zlib".
    with av.open(str(path)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def _surface_corners_px(index: int, frame_count: int, leave: bool) -> np.ndarray:
    """Return the photo's true corners on frame `index` in pixels (TL, TR, BR, BL)."""
    t = index / (frame_count - 1)
    cx = WIDTH * (0.5 + 0.15 * math.sin(2 * math.pi * 1.2 * t))
    cy = HEIGHT * (0.5 + 0.07 * math.sin(2 * math.pi * 0.8 * t + 0.5))
    if leave and 70 <= index <= 190:
        # Slides out past the right edge, is fully out of view on frames 100..156, comes back.
        cx += 1.35 * WIDTH * (1 - math.cos(2 * math.pi * (index - 70) / 120)) / 2
    half_width = 0.17 * WIDTH * (1 + 0.12 * math.sin(2 * math.pi * 0.6 * t + 1.0))
    half_height = 0.8 * half_width
    angle = math.radians(10) * math.sin(2 * math.pi * 0.7 * t)

    base = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
    base *= [half_width, half_height]
    phases = np.array([0.0, 1.3, 2.9, 4.4])
    tilt = (
        0.03
        * WIDTH
        * np.stack(
            [np.sin(2 * math.pi * 0.9 * t + phases), np.cos(2 * math.pi * 0.7 * t + 2 * phases)],
            axis=1,
        )
    )
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return (base + tilt) @ rotation.T + [cx, cy]


def _render_scene(
    photo: np.ndarray, background: np.ndarray, frame_count: int, leave: bool
) -> Iterator[np.ndarray]:
    cover = cv2.resize(background, (WIDTH + 120, HEIGHT + 80), interpolation=cv2.INTER_AREA)
    cover = (cv2.GaussianBlur(cover, (0, 0), 1.5) * 0.6).astype(np.uint8)
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
    for index in range(frame_count):
        left, top = round(0.4 * index) % 120, round(0.15 * index) % 80
        frame = cover[top : top + HEIGHT, left : left + WIDTH].copy()
        corners = _surface_corners_px(index, frame_count, leave).astype(np.float32)
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


def _write_h264(path: Path, frames: Iterator[np.ndarray]) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.gop_size = 32
        stream.options = {"crf": "18", "preset": "superfast"}
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


class DecodedVideo:
    """Frame source over a video file that seeks to the keyframe before each new range."""

    def __init__(self, path: Path) -> None:
        self.container = av.open(str(path))
        self.stream = self.container.streams.video[0]
        pts = sorted(
            p.pts for p in self.container.demux(self.stream) if p.pts is not None and p.size > 0
        )
        self.pts = pts
        self.index_of_pts = {value: i for i, value in enumerate(pts)}
        self.frame_count = len(pts)
        self.frame_size_wh = (self.stream.width, self.stream.height)
        self.timestamps = (np.array(pts, dtype=np.float64) - pts[0]) * float(self.stream.time_base)
        self.next_index = -1
        self.decoded: Iterator[av.VideoFrame] | None = None

    def read(self, start: int, stop: int) -> list[np.ndarray]:
        if start != self.next_index or self.decoded is None:
            self.container.seek(self.pts[start], stream=self.stream, backward=True)
            self.decoded = self.container.decode(self.stream)
        frames = []
        for frame in self.decoded:
            index = self.index_of_pts[frame.pts]
            if index >= start:
                frames.append(frame.to_ndarray(format="rgb24"))
            if index == stop - 1:
                break
        self.next_index = stop
        return frames

    def close(self) -> None:
        self.container.close()


@dataclass
class SceneRun:
    track: SurfaceTrack
    truth_px: np.ndarray
    start: int
    track_s: float

    def errors_px(self, frames: slice) -> np.ndarray:
        """Return the largest corner error of each visible frame in `frames`."""
        estimate = self.track.corners_norm.astype(np.float64) * [WIDTH, HEIGHT] - 0.5
        errors = np.linalg.norm(estimate - self.truth_px, axis=2).max(axis=1)
        return errors[frames][self.track.visible[frames]]

    def true_visible_share(self) -> np.ndarray:
        """Return, per frame, the share of the true quad's area inside the frame."""
        frame = np.array(
            [[-0.5, -0.5], [WIDTH - 0.5, -0.5], [WIDTH - 0.5, HEIGHT - 0.5], [-0.5, HEIGHT - 0.5]],
            dtype=np.float32,
        )
        shares = []
        for quad in self.truth_px.astype(np.float32):
            overlap, _ = cv2.intersectConvexConvex(quad, frame)
            shares.append(overlap / cv2.contourArea(quad))
        return np.array(shares)


def _run_scene(photo_dir: Path, folder: Path, start: int, leave: bool) -> SceneRun:
    photo = _load_rgb(photo_dir / "graf1.png")
    background = _load_rgb(photo_dir / "building.jpg")
    path = folder / "scene.mp4"
    _write_h264(path, _render_scene(photo, background, SCENE_FRAMES, leave))
    truth_px = np.stack([_surface_corners_px(i, SCENE_FRAMES, leave) for i in range(SCENE_FRAMES)])
    source = DecodedVideo(path)
    corners_norm = (truth_px[start] + 0.5) / [WIDTH, HEIGHT]

    began = time.perf_counter()
    track = track_surface(source, start, corners_norm)
    track_s = time.perf_counter() - began
    source.close()
    return SceneRun(track, truth_px, start, track_s)


@pytest.fixture(scope="session")
def mid_video_run(photo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> SceneRun:
    """Track the photo from frame 120 of a 250-frame 720p video, with the photo always in view."""
    return _run_scene(photo_dir, tmp_path_factory.mktemp("surface_mid"), MID_START, leave=False)


@pytest.fixture(scope="session")
def leaving_run(photo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> SceneRun:
    """Track the photo from frame 40 of a 720p video where it leaves and comes back."""
    return _run_scene(photo_dir, tmp_path_factory.mktemp("surface_leave"), LEAVING_START, True)


@pytest.mark.slow
def test_track_surface_forward_accuracy(mid_video_run: SceneRun) -> None:
    forward = slice(MID_START + 1, SCENE_FRAMES)

    errors = mid_video_run.errors_px(forward)

    assert mid_video_run.track.visible[forward].all()
    assert np.median(errors) <= 1.5
    assert errors.max() <= 5.0


@pytest.mark.slow
def test_track_surface_backward_accuracy(mid_video_run: SceneRun) -> None:
    backward = slice(0, MID_START)

    errors = mid_video_run.errors_px(backward)

    assert mid_video_run.track.visible[backward].all()
    assert np.median(errors) <= 1.5
    assert errors.max() <= 5.0


@pytest.mark.slow
def test_track_surface_corrects_drift(mid_video_run: SceneRun) -> None:
    # With the match against the reference disabled, frame-to-frame flow alone gave a median
    # of 0.64 px and a maximum of 2.09 px on this scene, so these bounds need that match.
    errors = mid_video_run.errors_px(slice(0, SCENE_FRAMES))

    assert np.median(errors) <= 0.25
    assert errors.max() <= 0.8


@pytest.mark.slow
def test_track_surface_keeps_marked_corners(mid_video_run: SceneRun) -> None:
    marked = (mid_video_run.truth_px[MID_START] + 0.5) / [WIDTH, HEIGHT]

    stored = mid_video_run.track.corners_norm[MID_START]

    assert mid_video_run.track.visible[MID_START]
    np.testing.assert_allclose(stored, marked, atol=1e-6)


@pytest.mark.slow
def test_track_surface_result_covers_every_frame(mid_video_run: SceneRun) -> None:
    track = mid_video_run.track

    assert np.array_equal(track.frames, np.arange(SCENE_FRAMES))
    assert track.times_s.shape == (SCENE_FRAMES,)
    np.testing.assert_allclose(np.diff(track.times_s), 1 / FPS, atol=1e-6)
    assert track.corners_norm.shape == (SCENE_FRAMES, 4, 2)
    assert track.corners_norm.dtype == np.float32
    assert track.tracked_frames == SCENE_FRAMES


@pytest.mark.slow
def test_track_surface_hides_surface_out_of_view(leaving_run: SceneRun) -> None:
    out_of_view = leaving_run.true_visible_share() == 0

    assert out_of_view.sum() >= 40
    assert not leaving_run.track.visible[out_of_view].any()


@pytest.mark.slow
def test_track_surface_reacquires_returning_surface(leaving_run: SceneRun) -> None:
    share = leaving_run.true_visible_share()
    after_return = np.arange(SCENE_FRAMES) > 160

    returned = leaving_run.track.visible[after_return & (share >= 0.9)]

    assert returned.size > 0
    assert returned.all()


@pytest.mark.slow
def test_track_surface_leaving_keeps_visible_frames_accurate(leaving_run: SceneRun) -> None:
    errors = leaving_run.errors_px(slice(0, SCENE_FRAMES))

    assert np.median(errors) <= 1.5
    assert errors.max() <= 8.0


@pytest.mark.slow
def test_track_surface_leaving_stores_defined_corners(leaving_run: SceneRun) -> None:
    track = leaving_run.track
    hidden = track.corners_norm[~track.visible]

    assert np.isfinite(track.corners_norm).all()
    assert hidden.size > 0
    assert hidden.min() >= 0.0
    assert hidden.max() <= 1.0
    assert track.tracked_frames == np.count_nonzero(track.visible)
    assert track.tracked_frames <= SCENE_FRAMES - 40


class FrameList:
    """Frame source over frames held in memory, which records each `read` range."""

    def __init__(self, frames: list[np.ndarray], fps: float = 25.0) -> None:
        self.frames = frames
        self.frame_count = len(frames)
        height, width = frames[0].shape[:2]
        self.frame_size_wh = (width, height)
        self.timestamps = np.arange(len(frames), dtype=np.float64) / fps
        self.reads: list[tuple[int, int]] = []

    def read(self, start: int, stop: int) -> list[np.ndarray]:
        self.reads.append((start, stop))
        return self.frames[start:stop]


class ShortFrameList(FrameList):
    """Frame source that returns one frame less than asked for from frame 100 on."""

    def read(self, start: int, stop: int) -> list[np.ndarray]:
        frames = super().read(start, stop)
        return frames[:-1] if stop > 100 else frames


SMALL_W, SMALL_H = 320, 240
SMALL_QUAD_NORM = np.array([[0.25, 0.25], [0.65, 0.25], [0.65, 0.7], [0.25, 0.7]])


def _small_scene(frame_count: int) -> list[np.ndarray]:
    """Return 320x240 frames of a noise texture that drifts 0.3 px right, 0.1 px down a frame."""
    rng = np.random.default_rng(7)
    noise = rng.uniform(0, 255, (SMALL_H, SMALL_W)).astype(np.float32)
    texture = cv2.normalize(cv2.GaussianBlur(noise, (0, 0), 2), None, 0, 255, cv2.NORM_MINMAX)
    frames = []
    for index in range(frame_count):
        shift = np.array([[1.0, 0.0, 0.3 * index], [0.0, 1.0, 0.1 * index]])
        plane = cv2.warpAffine(
            texture.astype(np.uint8), shift, (SMALL_W, SMALL_H), borderMode=cv2.BORDER_REFLECT
        )
        frames.append(np.repeat(plane[:, :, None], 3, axis=2))
    return frames


def _small_scene_truth(start: int, frame_count: int) -> np.ndarray:
    steps = np.arange(frame_count, dtype=np.float64) - start
    offsets = np.stack([0.3 * steps / SMALL_W, 0.1 * steps / SMALL_H], axis=1)
    return SMALL_QUAD_NORM[None, :, :] + offsets[:, None, :]


def _fading_scene(frame_count: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Return 320x240 frames of a turning, tilted texture whose contrast fades to half.

    Also return the true corners in pixels. The texture's gain falls linearly from 1 to 0.5
    while the background stays at the same grey level.
    """
    rng = np.random.default_rng(3)
    noise = rng.uniform(0, 255, (SMALL_H, SMALL_W)).astype(np.float32)
    texture = cv2.normalize(cv2.GaussianBlur(noise, (0, 0), 5), None, 0, 255, cv2.NORM_MINMAX)
    texture_corners = np.array(
        [
            [-0.5, -0.5],
            [SMALL_W - 0.5, -0.5],
            [SMALL_W - 0.5, SMALL_H - 0.5],
            [-0.5, SMALL_H - 0.5],
        ],
        dtype=np.float32,
    )
    frames, truth = [], []
    for index in range(frame_count):
        t = index / (frame_count - 1)
        angle = math.radians(8) * math.sin(2 * math.pi * t)
        half_width = 72 * (1 + 0.1 * math.sin(2 * math.pi * t))
        base = np.array([[-0.9, -0.75], [0.9, -0.75], [1, 0.75], [-1, 0.75]]) * half_width
        rotation = np.array(
            [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
        )
        centre = [160 + 30 * math.sin(2 * math.pi * t), 120 + 15 * math.sin(2 * math.pi * t)]
        corners = base @ rotation.T + centre
        homography = cv2.getPerspectiveTransform(texture_corners, corners.astype(np.float32))
        frame = np.full((SMALL_H, SMALL_W), 90, dtype=np.float32)
        cv2.warpPerspective(
            texture * (1 - 0.5 * t),
            homography,
            (SMALL_W, SMALL_H),
            dst=frame,
            borderMode=cv2.BORDER_TRANSPARENT,
        )
        gray = np.clip(frame, 0, 255).astype(np.uint8)
        frames.append(np.repeat(gray[:, :, None], 3, axis=2))
        truth.append(corners)
    return frames, np.stack(truth)


@pytest.fixture(scope="module")
def small_frames() -> list[np.ndarray]:
    return _small_scene(150)


def test_track_surface_reads_bounded_chunks(small_frames: list[np.ndarray]) -> None:
    source = FrameList(small_frames)
    start = 100

    track_surface(source, start, SMALL_QUAD_NORM)

    assert all(stop - begin <= CHUNK_FRAMES for begin, stop in source.reads)
    assert source.reads == [(100, 150), (36, 100), (0, 36)]


def test_track_surface_reads_smaller_chunks_of_large_frames() -> None:
    rng = np.random.default_rng(5)
    frame = np.zeros((2160, 3840, 3), dtype=np.uint8)
    frame[1000:1300, 1800:2200] = rng.integers(0, 255, (300, 400, 1), dtype=np.uint8)
    source = FrameList([frame] * 25)
    quad = [
        (1820 / 3840, 1020 / 2160),
        (2180 / 3840, 1020 / 2160),
        (2180 / 3840, 1280 / 2160),
        (1820 / 3840, 1280 / 2160),
    ]

    track = track_surface(source, 0, quad)

    assert source.reads == [(0, 10), (10, 20), (20, 25)]
    assert track.tracked_frames == 25


def test_track_surface_follows_small_scene(small_frames: list[np.ndarray]) -> None:
    source = FrameList(small_frames)
    start = 100
    truth = _small_scene_truth(start, 150)

    track = track_surface(source, start, SMALL_QUAD_NORM)

    errors_px = np.abs(track.corners_norm - truth) * [SMALL_W, SMALL_H]
    assert track.tracked_frames == 150
    assert errors_px.max() <= 1.0


def test_track_surface_follows_fading_surface() -> None:
    frames, truth_px = _fading_scene(120)
    marked = (truth_px[0] + 0.5) / [SMALL_W, SMALL_H]

    track = track_surface(FrameList(frames), 0, marked)

    estimate = track.corners_norm.astype(np.float64) * [SMALL_W, SMALL_H] - 0.5
    errors_px = np.linalg.norm(estimate - truth_px, axis=2)
    assert track.tracked_frames == 120
    assert errors_px.max() <= 1.0


def test_track_surface_reports_progress(small_frames: list[np.ndarray]) -> None:
    calls: list[tuple[int, int]] = []

    track_surface(
        FrameList(small_frames), 100, SMALL_QUAD_NORM, progress=lambda d, t: calls.append((d, t))
    )

    done = [d for d, _ in calls]
    assert len(calls) >= 3
    assert done == sorted(done)
    assert all(total == 150 for _, total in calls)
    assert calls[-1] == (150, 150)


def test_track_surface_cancels_when_asked(small_frames: list[np.ndarray]) -> None:
    source = FrameList(small_frames)
    answers = iter([False, True])

    with pytest.raises(Cancelled):
        track_surface(source, 10, SMALL_QUAD_NORM, should_stop=lambda: next(answers))

    assert source.reads == [(10, 10 + CHUNK_FRAMES)]


@pytest.mark.parametrize(
    "start_frame",
    [
        pytest.param(-1, id="negative"),
        pytest.param(150, id="past-end"),
        pytest.param(2.0, id="float"),
        pytest.param(True, id="bool"),
    ],
)
def test_track_surface_rejects_bad_start_frame(
    small_frames: list[np.ndarray], start_frame: object
) -> None:
    with pytest.raises(InvalidParameter) as caught:
        track_surface(FrameList(small_frames), start_frame, SMALL_QUAD_NORM)

    assert caught.value.field == "frame"


def test_track_surface_rejects_textureless_surface() -> None:
    flat = [np.full((SMALL_H, SMALL_W, 3), 128, dtype=np.uint8) for _ in range(5)]

    with pytest.raises(InvalidQuad) as caught:
        track_surface(FrameList(flat), 2, SMALL_QUAD_NORM)

    assert caught.value.details["test"] == "texture"


def test_track_surface_raises_on_short_read(small_frames: list[np.ndarray]) -> None:
    with pytest.raises(CorruptMedia) as caught:
        track_surface(ShortFrameList(small_frames), 90, SMALL_QUAD_NORM)

    assert caught.value.details["returned"] == 59


def test_track_surface_validates_corners(small_frames: list[np.ndarray]) -> None:
    with pytest.raises(InvalidParameter) as caught:
        track_surface(FrameList(small_frames), 0, np.array([[0.1, 0.1], [0.5, 0.1], [0.5, 0.5]]))

    assert caught.value.field == "corners"


SQUARE = [(0.2, 0.2), (0.8, 0.2), (0.8, 0.8), (0.2, 0.8)]
SMALLEST = [(0.5, 0.5), (0.5106, 0.5), (0.5106, 0.5106), (0.5, 0.5106)]


@pytest.mark.parametrize(
    ("corners", "expected"),
    [
        pytest.param(SQUARE, SQUARE, id="clockwise-tuples"),
        pytest.param(SQUARE[::-1], SQUARE[::-1], id="counter-clockwise"),
        pytest.param([{"x": x, "y": y} for x, y in SQUARE], SQUARE, id="mappings"),
        pytest.param(np.array(SQUARE, dtype=np.float32), SQUARE, id="ndarray"),
        pytest.param([(0, 0), (1, 0), (1, 1), (0, 1)], [(0, 0), (1, 0), (1, 1), (0, 1)], id="ints"),
        pytest.param(SMALLEST, SMALLEST, id="area-just-above-limit"),
    ],
)
def test_validate_quad_accepts_convex_quad(
    corners: object, expected: list[tuple[float, float]]
) -> None:
    quad = validate_quad(corners)

    assert quad.shape == (4, 2)
    assert quad.dtype == np.float64
    np.testing.assert_allclose(quad, np.array(expected), atol=1e-7)


@pytest.mark.parametrize(
    ("corners", "field", "detail"),
    [
        pytest.param(SQUARE[:3], "corners", {"count": 3, "expected": 4}, id="three-corners"),
        pytest.param(
            [*SQUARE, (0.5, 0.5)], "corners", {"count": 5, "expected": 4}, id="five-corners"
        ),
        pytest.param(
            [(0.2, 0.2), (0.8, 0.2), (1.2, 0.8), (0.2, 0.8)],
            "corners[2].x",
            {"value": "1.2"},
            id="x-above-one",
        ),
        pytest.param(
            [(0.2, 0.2), (math.nan, 0.2), (0.8, 0.8), (0.2, 0.8)],
            "corners[1].x",
            {"value": "nan"},
            id="nan",
        ),
        pytest.param(
            [(0.2, 0.2), (0.8, 0.2), (0.8, 0.8), (0.2, -math.inf)],
            "corners[3].y",
            {"value": "-inf"},
            id="infinite",
        ),
        pytest.param(
            [(0.2, 0.2), (0.8, 0.2), (0.8, 0.8), {"x": 0.2}], "corners[3].y", {}, id="missing-y"
        ),
        pytest.param(
            [(0.2, "0.2"), (0.8, 0.2), (0.8, 0.8), (0.2, 0.8)],
            "corners[0].y",
            {"value": "'0.2'"},
            id="string",
        ),
    ],
)
def test_validate_quad_rejects_bad_values(
    corners: object, field: str, detail: dict[str, object]
) -> None:
    with pytest.raises(InvalidParameter) as caught:
        validate_quad(corners)

    assert type(caught.value) is InvalidParameter
    assert caught.value.field == field
    assert detail.items() <= caught.value.details.items()


@pytest.mark.parametrize(
    ("corners", "test", "detail"),
    [
        pytest.param(
            [(0.1, 0.1), (0.5, 0.1), (0.9, 0.1), (0.5, 0.6)],
            "collinear",
            {"corners": [0, 1, 2]},
            id="collinear",
        ),
        pytest.param(
            [(0.1, 0.1), (0.3, 0.1), (0.5, 0.1), (0.7, 0.1)],
            "collinear",
            {},
            id="all-on-one-line",
        ),
        pytest.param(
            [(0.1, 0.1), (0.1, 0.1), (0.9, 0.9), (0.1, 0.9)],
            "repeated_corner",
            {"corners": [0, 1]},
            id="repeated-corner",
        ),
        pytest.param(
            [(0.1, 0.1), (0.9, 0.9), (0.9, 0.1), (0.1, 0.9)],
            "self_intersecting",
            {},
            id="bow-tie",
        ),
        pytest.param([(0.1, 0.1), (0.9, 0.1), (0.5, 0.3), (0.5, 0.9)], "not_convex", {}, id="dart"),
        pytest.param(
            [(0.5, 0.5), (0.505, 0.5), (0.505, 0.505), (0.5, 0.505)],
            "near_zero_area",
            {"min_area": 1e-4},
            id="near-zero-area",
        ),
    ],
)
def test_validate_quad_rejects_bad_geometry(
    corners: list[tuple[float, float]], test: str, detail: dict[str, object]
) -> None:
    with pytest.raises(InvalidQuad) as caught:
        validate_quad(corners)

    assert caught.value.field == "corners"
    assert caught.value.details["test"] == test
    assert detail.items() <= caught.value.details.items()
