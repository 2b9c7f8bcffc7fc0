"""Tests of box sanitising and of the ByteTrack and OC-SORT wrapper."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mp4e.vision.detection import Detections
from mp4e.vision.tracking import MultiObjectTracker, sanitize_detections, tracker_config

# Importing MMDetection runs code that torch 2.13 and mmcv 2.1 flag as deprecated.
pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.interface` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings(
        "ignore:``MultiScaleDeformableAttention`` has been moved:ImportWarning"
    ),
]

CLASS_NAMES = ("person", "car")
FRAME_WH = (320, 240)
TRACKER_KINDS = ["bytetrack", "ocsort"]


def detections(boxes: list[list[float]], scores: list[float] | None = None) -> Detections:
    scores = scores if scores is not None else [0.9] * len(boxes)
    return Detections(
        np.array(boxes, dtype=np.float64).reshape(-1, 4), scores, [0] * len(boxes), CLASS_NAMES
    )


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        pytest.param([10, 20, 50, 80], [10, 20, 50, 80], id="inside"),
        pytest.param([-30, -10, 40, 60], [0, 0, 40, 60], id="over-top-left"),
        pytest.param([300, 200, 400, 300], [300, 200, 320, 240], id="over-bottom-right"),
        pytest.param([10, 20, 10, 80], None, id="zero-width"),
        pytest.param([10, 20, 50, 20], None, id="zero-height"),
        pytest.param([50, 80, 10, 20], None, id="negative-size"),
        pytest.param([10, 20, 10.5, 80], None, id="under-one-pixel"),
        pytest.param([math.nan, 20, 50, 80], None, id="nan"),
        pytest.param([10, 20, math.inf, 80], None, id="inf"),
        pytest.param([-100, 20, -10, 80], None, id="left-of-frame"),
        pytest.param([330, 20, 400, 80], None, id="right-of-frame"),
        pytest.param([10, 250, 50, 300], None, id="below-frame"),
    ],
)
def test_sanitize_detections_clips_or_drops(box: list[float], expected: list[float] | None) -> None:
    given = detections([box, [100, 100, 140, 180]])

    result = sanitize_detections(given, FRAME_WH)

    kept = [list(row) for row in result.boxes_xyxy[:-1]]
    assert kept == ([] if expected is None else [expected])
    assert list(result.boxes_xyxy[-1]) == [100, 100, 140, 180]


def test_sanitize_detections_drops_non_finite_scores() -> None:
    given = detections([[10, 20, 50, 80], [100, 100, 140, 180]], scores=[math.nan, 0.8])

    result = sanitize_detections(given, FRAME_WH)

    assert len(result) == 1
    assert result.scores[0] == pytest.approx(0.8)


def test_sanitize_detections_rejects_empty_frame_size() -> None:
    with pytest.raises(ValueError, match="frame_wh"):
        sanitize_detections(detections([]), (0, 240))


def test_detections_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="as many scores"):
        Detections(np.zeros((2, 4)), [0.5], [0, 0], CLASS_NAMES)


def moving_boxes(frame: int) -> list[list[float]]:
    """Two boxes moving towards each other along different rows, 4 px per frame."""
    return [
        [20 + 4 * frame, 40, 60 + 4 * frame, 120],
        [260 - 4 * frame, 120, 300 - 4 * frame, 200],
    ]


@pytest.mark.parametrize("kind", TRACKER_KINDS)
def test_multi_object_tracker_keeps_ids_of_moving_boxes(kind: str) -> None:
    tracker = MultiObjectTracker(kind)

    ids_per_frame = []
    for frame in range(30):
        tracked = tracker.update(frame, detections(moving_boxes(frame)))
        ids_per_frame.append({box.track_id for box in tracked})

    assert len(ids_per_frame[0]) == 2
    assert all(ids == ids_per_frame[0] for ids in ids_per_frame)


@pytest.mark.parametrize("kind", TRACKER_KINDS)
def test_multi_object_tracker_returns_boxes_scores_labels(kind: str) -> None:
    tracker = MultiObjectTracker(kind)

    tracked = tracker.update(0, detections([[10, 20, 50, 80]], scores=[0.75]))

    assert len(tracked) == 1
    assert tracked[0].box_xyxy.tolist() == [10, 20, 50, 80]
    assert tracked[0].score == pytest.approx(0.75)
    assert tracked[0].label == 0


@pytest.mark.parametrize("kind", TRACKER_KINDS)
def test_multi_object_tracker_handles_frames_without_detections(kind: str) -> None:
    tracker = MultiObjectTracker(kind)

    results = []
    for frame in range(20):
        boxes = [] if 8 <= frame < 11 else moving_boxes(frame)
        results.append(tracker.update(frame, detections(boxes)))

    assert all(result == [] for result in results[8:11])
    assert len(results[-1]) == 2


@pytest.mark.parametrize("kind", TRACKER_KINDS)
def test_multi_object_tracker_takes_sanitised_degenerate_boxes(kind: str) -> None:
    tracker = MultiObjectTracker(kind)
    # Unsanitised, the zero-height box makes the Kalman update raise LinAlgError.
    degenerate = [
        [10, 20, 50, 20],
        [10, 20, 10, 80],
        [50, 80, 10, 20],
        [math.nan, 0, 5, 5],
        [400, 10, 500, 60],
    ]

    for frame in range(15):
        raw = detections(moving_boxes(frame) + degenerate)
        tracked = tracker.update(frame, sanitize_detections(raw, FRAME_WH))

    assert len(tracked) == 2


def test_multi_object_tracker_starts_tracks_only_over_confidence() -> None:
    tracker = MultiObjectTracker("bytetrack", confidence=0.6)

    tracked = tracker.update(0, detections([[10, 20, 50, 80], [100, 20, 140, 80]], [0.9, 0.4]))

    assert [box.box_xyxy.tolist() for box in tracked] == [[10, 20, 50, 80]]


def test_multi_object_tracker_frame_zero_resets() -> None:
    tracker = MultiObjectTracker("bytetrack")
    first = tracker.update(0, detections([[10, 20, 50, 80]]))
    tracker.update(1, detections([[12, 20, 52, 80]]))

    again = tracker.update(0, detections([[200, 20, 240, 80]]))

    assert again[0].track_id == first[0].track_id


def test_multi_object_tracker_rejects_decreasing_frame_index() -> None:
    tracker = MultiObjectTracker("bytetrack")
    tracker.update(0, detections([]))
    tracker.update(5, detections([]))

    with pytest.raises(ValueError, match="frame_index"):
        tracker.update(3, detections([]))


def test_multi_object_tracker_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="sort"):
        MultiObjectTracker("deepsort")


def test_multi_object_tracker_rejects_inverted_thresholds() -> None:
    with pytest.raises(ValueError, match="low_confidence"):
        MultiObjectTracker("bytetrack", confidence=0.3, low_confidence=0.5)


def test_tracker_config_uses_confidence_for_new_tracks() -> None:
    config = tracker_config("ocsort", 0.45, 0.1, 12)

    assert config["init_track_thr"] == 0.45
    assert config["obj_score_thr"] == 0.45
    assert config["num_frames_retain"] == 12
