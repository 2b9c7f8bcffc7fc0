"""Tests of `track_objects`: a synthetic clip with known trajectories, and the real footage."""

from __future__ import annotations

import itertools
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import motmetrics
import numpy as np
import pytest

from mp4e.errors import Cancelled, InvalidParameter
from mp4e.vision.detection import Detections, Detector
from mp4e.vision.pipeline import MIN_TRACK_SAMPLES, ObjectTrack, track_objects

logger = logging.getLogger(__name__)

# Importing MMDetection runs code that torch 2.13 and mmcv 2.1 flag as deprecated.
pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.interface` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings(
        "ignore:``MultiScaleDeformableAttention`` has been moved:ImportWarning"
    ),
]

REPO = Path(__file__).resolve().parents[2]
DATA_DIR = Path(os.environ.get("MP4E_DATA_DIR", REPO / "var"))
MODELS_DIR = DATA_DIR / "models"
VTEST = DATA_DIR / "samples" / "vtest.avi"
CHECKPOINT = MODELS_DIR / "nanodet" / "nanodet_g_416.pth"

FRAME_WH = (640, 360)
FRAME_COUNT = 60
FPS = 10.0
BLACK_FRAMES = range(25, 35)  # the middle second of the six-second clip
CLASS_NAMES = ("person", "bicycle", "car")


@dataclass(frozen=True)
class Frame:
    index: int
    time_s: float
    image: np.ndarray


@dataclass(frozen=True)
class Mover:
    """A rectangle moving on a smooth path: centre (x, y) in pixels at sample i."""

    object_id: int
    label: int
    size_wh: tuple[int, int]
    colour: tuple[int, int, int]
    centre_x: tuple[float, float, float, float]  # x0 + vx * i + amplitude * sin(i / period)
    centre_y: tuple[float, float, float, float]

    def box_xyxy(self, i: int) -> np.ndarray:
        x = _path(self.centre_x, i)
        y = _path(self.centre_y, i)
        width, height = self.size_wh
        return np.array([x - width / 2, y - height / 2, x + width / 2, y + height / 2])


def _path(coefficients: tuple[float, float, float, float], i: int) -> float:
    start, velocity, amplitude, period = coefficients
    return start + velocity * i + amplitude * math.sin(i / period)


MOVERS = (
    # Leaves the frame on the left from sample 43 on; gone after sample 52.
    Mover(1, 0, (50, 110), (220, 40, 40), (330, -7, 0, 1), (200, 0, 10, 6)),
    # Crosses the blue one around sample 29.
    Mover(2, 0, (50, 100), (40, 200, 40), (60, 9, 0, 1), (150, 0, 20, 10)),
    Mover(3, 0, (60, 120), (40, 60, 220), (560, -8, 0, 1), (170, 0.5, 0, 1)),
    Mover(4, 0, (40, 80), (230, 210, 40), (150, 2, 15, 8), (80, 3, 0, 1)),
    Mover(5, 2, (120, 60), (200, 200, 200), (520, -3, 0, 1), (310, 0, 0, 1)),
)


def _visible_box(box: np.ndarray) -> np.ndarray | None:
    width, height = FRAME_WH
    clipped = np.clip(box, [0, 0, 0, 0], [width, height, width, height])
    if clipped[2] - clipped[0] < 4 or clipped[3] - clipped[1] < 4:
        return None
    return clipped


@dataclass
class SyntheticClip:
    """Frames with movers drawn on a grey background, and the truth for each frame."""

    frames: list[Frame]
    truth: list[dict[int, tuple[int, np.ndarray]]]  # per frame: object id -> (label, box)


def make_clip(
    black_frames: range = range(0), sprites: dict[int, np.ndarray] | None = None
) -> SyntheticClip:
    """Draw the movers; `sprites` (object id -> RGB image) replaces a mover's flat colour."""
    width, height = FRAME_WH
    frames, truth = [], []
    for i in range(FRAME_COUNT):
        image = np.full((height, width, 3), 110, dtype=np.uint8)
        visible: dict[int, tuple[int, np.ndarray]] = {}
        if i not in black_frames:
            for mover in MOVERS:
                box = mover.box_xyxy(i)
                shown = _visible_box(box)
                if shown is None:
                    continue
                _draw(image, box, mover, sprites)
                visible[mover.object_id] = (mover.label, shown)
        else:
            image[:] = 0
        frames.append(Frame(index=i, time_s=i / FPS, image=image))
        truth.append(visible)
    return SyntheticClip(frames, truth)


def _draw(
    image: np.ndarray, box: np.ndarray, mover: Mover, sprites: dict[int, np.ndarray] | None
) -> None:
    import cv2

    x1, y1, x2, y2 = np.round(box).astype(int)
    height, width = image.shape[:2]
    if sprites and mover.object_id in sprites:
        patch = cv2.resize(sprites[mover.object_id], (x2 - x1, y2 - y1))
    else:
        patch = np.empty((y2 - y1, x2 - x1, 3), dtype=np.uint8)
        patch[:] = mover.colour
    top, left = max(y1, 0), max(x1, 0)
    bottom, right = min(y2, height), min(x2, width)
    image[top:bottom, left:right] = patch[top - y1 : bottom - y1, left - x1 : right - x1]


@dataclass
class StubDetector:
    """Returns each frame's true boxes with noise and misses, in the order frames arrive.

    Black frames give no detections. `extra` adds the same boxes to every frame (with the
    given label and score), e.g. degenerate ones.
    """

    clip: SyntheticClip
    noise_px: float = 1.5
    miss_rate: float = 0.05
    seed: int = 7
    extra: list[tuple[list[float], int, float]] = field(default_factory=list)
    calls: int = 0

    @property
    def class_names(self) -> tuple[str, ...]:
        return CLASS_NAMES

    def detect(self, image_rgb: np.ndarray) -> Detections:
        rng = np.random.default_rng(self.seed + self.calls)
        truth = self.clip.truth[self.calls]
        self.calls += 1
        boxes, scores, labels = [], [], []
        for label, box in truth.values():
            if rng.random() < self.miss_rate:
                continue
            boxes.append(box + rng.normal(0, self.noise_px, 4))
            scores.append(rng.uniform(0.55, 0.95))
            labels.append(label)
        for box, label, score in self.extra:
            boxes.append(box)
            scores.append(score)
            labels.append(label)
        return Detections(np.array(boxes).reshape(-1, 4), scores, labels, CLASS_NAMES)


def idf1(truth: list[dict[int, tuple[int, np.ndarray]]], tracks: list[ObjectTrack]) -> float:
    """Return the IDF1 of `tracks` against the truth, matching at IoU >= 0.5."""
    width, height = FRAME_WH
    scale = np.array([width, height, width, height], dtype=np.float64)
    hypotheses: dict[int, dict[int, np.ndarray]] = {}
    for track in tracks:
        for frame, box in zip(track.frames, track.boxes_norm, strict=True):
            hypotheses.setdefault(frame, {})[track.track_id] = box * scale

    accumulator = motmetrics.MOTAccumulator(auto_id=True)
    for frame, visible in enumerate(truth):
        found = hypotheses.get(frame, {})
        distances = motmetrics.distances.iou_matrix(
            _xywh([box for _, box in visible.values()]), _xywh(list(found.values())), max_iou=0.5
        )
        accumulator.update(list(visible), list(found), distances)
    summary = motmetrics.metrics.create().compute(accumulator, metrics=["idf1"], name="clip")
    return float(summary["idf1"].iloc[0])


def _xywh(boxes: list[np.ndarray]) -> np.ndarray:
    array = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    array[:, 2:] -= array[:, :2]
    return array


@pytest.mark.parametrize("tracker_kind", ["bytetrack", "ocsort"])
def test_track_objects_follows_synthetic_movers(tracker_kind: str) -> None:
    clip = make_clip()

    tracks = track_objects(clip.frames, StubDetector(clip), tracker_kind=tracker_kind)

    score = idf1(clip.truth, tracks)
    logger.info("IDF1 of %s with the stub detector: %.3f", tracker_kind, score)
    assert score >= 0.9
    assert {track.label for track in tracks} == {"person", "car"}


def test_track_objects_ends_track_of_object_leaving_left() -> None:
    clip = make_clip()

    tracks = track_objects(clip.frames, StubDetector(clip, miss_rate=0.0))

    leaving = [track for track in tracks if track.boxes_norm[-1][0] < 0.01]
    assert len(leaving) == 1
    assert leaving[0].frames[0] == 0
    assert 45 <= leaving[0].frames[-1] <= 52
    assert leaving[0].boxes_norm[-1][2] < 0.05


def test_track_objects_survives_black_second() -> None:
    clip = make_clip(black_frames=BLACK_FRAMES)
    seen_progress: list[int] = []

    tracks = track_objects(
        clip.frames,
        StubDetector(clip),
        progress=lambda done, time_s: seen_progress.append(done),
    )

    assert seen_progress == list(range(1, FRAME_COUNT + 1))
    assert not any(frame in BLACK_FRAMES for track in tracks for frame in track.frames)
    assert any(track.frames[0] < BLACK_FRAMES.start for track in tracks)
    assert any(track.frames[-1] >= BLACK_FRAMES.stop for track in tracks)


def test_track_objects_sanitises_degenerate_detections() -> None:
    clip = make_clip()
    degenerate = [
        ([100.0, 100.0, 100.0, 180.0], 0, 0.9),  # zero width
        ([400.0, 100.0, 440.0, 100.0], 0, 0.9),  # zero height: LinAlgError in the Kalman update
        ([300.0, 200.0, 250.0, 150.0], 0, 0.9),  # negative size
        ([math.nan, 10.0, 50.0, 60.0], 0, 0.9),
        ([10.0, 10.0, math.inf, 60.0], 0, 0.9),
        ([700.0, 400.0, 800.0, 500.0], 0, 0.9),  # outside the frame
        ([-50.0, -50.0, -10.0, -10.0], 0, 0.9),
    ]

    tracks = track_objects(clip.frames, StubDetector(clip, extra=degenerate))

    assert idf1(clip.truth, tracks) >= 0.9
    boxes = np.concatenate([track.boxes_norm for track in tracks])
    assert np.isfinite(boxes).all()
    assert (boxes[:, 2] > boxes[:, 0]).all()
    assert (boxes[:, 3] > boxes[:, 1]).all()


def test_track_objects_drops_short_tracks() -> None:
    clip = make_clip()
    # A false detection in the first two frames only.
    for visible in clip.truth[:2]:
        visible[99] = (0, np.array([580.0, 20.0, 620.0, 90.0]))

    tracks = track_objects(clip.frames, StubDetector(clip, miss_rate=0.0))

    assert all(len(track.frames) >= MIN_TRACK_SAMPLES for track in tracks)
    assert not any(
        track.boxes_norm[0][0] > 0.9 and track.boxes_norm[0][1] < 0.1 for track in tracks
    )


def test_track_objects_reports_frames_times_and_confidence() -> None:
    clip = make_clip()

    tracks = track_objects(clip.frames, StubDetector(clip))

    for track in tracks:
        assert track.times_s == [frame / FPS for frame in track.frames]
        assert len(track.boxes_norm) == len(track.frames)
        assert ((track.boxes_norm >= 0) & (track.boxes_norm <= 1)).all()
        assert track.confidence == pytest.approx(float(np.mean(track.scores)))


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        pytest.param(["car"], {"car"}, id="detector-class"),
        pytest.param(["Person"], {"Person"}, id="case-insensitive"),
        pytest.param(["vehicle"], {"vehicle"}, id="alias"),
        pytest.param(["person", "car"], {"person", "car"}, id="two-classes"),
        pytest.param(["bicycle"], set(), id="absent-class"),
    ],
)
def test_track_objects_filters_labels(labels: list[str], expected: set[str]) -> None:
    clip = make_clip()

    tracks = track_objects(clip.frames, StubDetector(clip), labels=labels)

    assert {track.label for track in tracks} == expected


def test_track_objects_rejects_unknown_label_without_clip() -> None:
    clip = make_clip()

    with pytest.raises(InvalidParameter) as caught:
        track_objects(clip.frames, StubDetector(clip), labels=["product"])

    assert caught.value.field == "labels"
    assert "product" in caught.value.message


@pytest.mark.parametrize("confidence", [0.0, -0.5, 1.5])
def test_track_objects_rejects_invalid_confidence(confidence: float) -> None:
    clip = make_clip()

    with pytest.raises(InvalidParameter) as caught:
        track_objects(clip.frames, StubDetector(clip), confidence=confidence)

    assert caught.value.field == "confidence"


def test_track_objects_raises_cancelled_when_stopped() -> None:
    clip = make_clip()
    detector = StubDetector(clip)

    with pytest.raises(Cancelled):
        track_objects(clip.frames, detector, should_stop=lambda: detector.calls >= 5)

    assert detector.calls == 5


def test_track_objects_scales_frames_of_another_size() -> None:
    import cv2

    clip = make_clip()
    # From frame 30 on, the stream is half as large, and the detector gets the small images.
    half = [
        Frame(frame.index, frame.time_s, cv2.resize(frame.image, (320, 180)))
        if frame.index >= 30
        else frame
        for frame in clip.frames
    ]
    detector = HalvingDetector(clip)

    tracks = track_objects(half, detector)

    assert idf1(clip.truth, tracks) >= 0.9


class HalvingDetector(StubDetector):
    """A `StubDetector` whose boxes are in the pixels of 320x180 images from frame 30 on."""

    def detect(self, image_rgb: np.ndarray) -> Detections:
        found = super().detect(image_rgb)
        if image_rgb.shape[1] == FRAME_WH[0]:
            return found
        return Detections(found.boxes_xyxy / 2, found.scores, found.labels, CLASS_NAMES)


def test_track_objects_rejects_grey_frames() -> None:
    clip = make_clip()
    grey = [Frame(0, 0.0, np.zeros((360, 640), dtype=np.uint8))]

    with pytest.raises(InvalidParameter, match="not an RGB image"):
        track_objects(grey, StubDetector(clip))


# --- the real NanoDet detector -----------------------------------------------------------

requires_real_model = pytest.mark.skipif(
    not CHECKPOINT.is_file(),
    reason=f"{CHECKPOINT} is missing; run scripts/fetch_models to convert NanoDet",
)
requires_footage = pytest.mark.skipif(
    not VTEST.is_file(), reason=f"{VTEST} is missing; run scripts/fetch_samples"
)


@pytest.fixture(scope="module")
def nanodet() -> Iterator[Detector]:
    """Load the converted NanoDet and run torch on one thread while the module's tests run.

    On a machine whose cores are busy, two intra-op threads made a NanoDet forward pass about
    11 times slower than one thread (0.84 s against 0.075 s per 768x576 frame, measured with
    two cores under a load average of 6.5).
    """
    import torch

    from mp4e.vision.detection import load_detector

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_detector(None, None, "cpu", MODELS_DIR)
    torch.set_num_threads(threads)


def vtest_frames(step: int) -> Iterator[Frame]:
    """Decode vtest.avi (10 fps) with PyAV and yield every `step`-th frame."""
    with av.open(str(VTEST)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index % step == 0:
                yield Frame(
                    index=index, time_s=index / 10.0, image=frame.to_ndarray(format="rgb24")
                )


def _longest_run(frames: list[int], step: int) -> int:
    longest = run = 1
    for previous, current in itertools.pairwise(frames):
        run = run + 1 if current - previous == step else 1
        longest = max(longest, run)
    return longest


@pytest.mark.slow
@requires_real_model
@requires_footage
def test_track_objects_finds_people_and_van_in_vtest(nanodet) -> None:
    step = 2  # 5 fps out of 10

    tracks = track_objects(vtest_frames(step), nanodet, confidence=0.5)

    people = [track for track in tracks if track.label == "person"]
    long_people = [track for track in people if _longest_run(track.frames, step) >= 20]
    vehicles = [track for track in tracks if track.label in ("car", "truck", "bus")]
    logger.info(
        "vtest: %d tracks, %d person tracks, %d over 20 samples, vehicles %s",
        len(tracks),
        len(people),
        len(long_people),
        [(track.label, len(track.frames)) for track in vehicles],
    )
    assert len(long_people) >= 5
    assert vehicles


def _person_sprites(detector, count: int) -> dict[int, np.ndarray]:
    """Crop the `count` most confident people of vtest frame 50, found by the detector."""
    frame = next(frame for frame in vtest_frames(1) if frame.index == 50)
    found = detector.detect(frame.image)
    people = found.select(found.labels == 0)
    order = np.argsort(-people.scores)[:count]
    sprites = {}
    for object_id, index in enumerate(order, start=1):
        x1, y1, x2, y2 = np.round(people.boxes_xyxy[index]).astype(int)
        sprites[object_id] = frame.image[y1:y2, x1:x2].copy()
    return sprites


@pytest.mark.slow
@requires_real_model
@requires_footage
def test_track_objects_real_detector_on_synthetic_clip(nanodet) -> None:
    # The movers wear crops of real pedestrians so that a COCO detector can see them. The
    # car-shaped mover stays a grey block that no COCO class describes.
    clip = make_clip(sprites=_person_sprites(nanodet, 4))
    person_truth = [
        {key: value for key, value in visible.items() if value[0] == 0} for visible in clip.truth
    ]

    tracks = track_objects(clip.frames, nanodet, labels=["person"], confidence=0.4)

    score = idf1(person_truth, tracks)
    logger.info("IDF1 of NanoDet + ByteTrack on the synthetic clip: %.3f", score)
    assert score >= 0.6
