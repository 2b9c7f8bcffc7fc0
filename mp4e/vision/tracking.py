"""Multi-object tracking by detection: MMDetection's ByteTrack and OC-SORT, one frame at a time.

`MultiObjectTracker` calls the trackers of `mmdet.models.trackers` directly with a
`DetDataSample` per frame (`pred_instances` holding boxes, scores and labels, `metainfo`
holding `frame_id`), without a detector or a full MOT model around them.

Both trackers keep a Kalman filter per track whose update fails (`LinAlgError: ... not
positive definite`) on a box with zero or negative size or a non-finite coordinate, so every
frame's detections pass through `sanitize_detections` first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from mp4e.vision.detection import Detections

logger = logging.getLogger(__name__)

TrackerKind = Literal["bytetrack", "ocsort"]
TRACKER_KINDS: tuple[str, ...] = ("bytetrack", "ocsort")

# Boxes narrower or lower than this (in pixels, after clipping) are dropped before tracking.
MIN_BOX_SIZE_PX = 1.0


@dataclass(frozen=True)
class TrackedBox:
    """One track's box in one frame. `box_xyxy` is float32 `(4,)` in frame pixels."""

    track_id: int
    box_xyxy: np.ndarray
    score: float
    label: int


def sanitize_detections(
    detections: Detections, frame_wh: tuple[int, int], min_size_px: float = MIN_BOX_SIZE_PX
) -> Detections:
    """Clip boxes to the frame and drop the ones a Kalman filter cannot take.

    Drops boxes with a non-finite coordinate or score, and boxes narrower or lower than
    `min_size_px` once clipped to `[0, width] x [0, height]` (this includes boxes entirely
    outside the frame and boxes with x2 < x1 or y2 < y1). Scores are clipped to 0..1.
    """
    width, height = frame_wh
    if width <= 0 or height <= 0:
        raise ValueError(f"frame_wh must be positive; got {frame_wh}.")

    boxes = detections.boxes_xyxy
    finite = np.isfinite(boxes).all(axis=1) & np.isfinite(detections.scores)
    clipped = np.empty_like(boxes)
    clipped[:, [0, 2]] = np.clip(np.nan_to_num(boxes[:, [0, 2]]), 0, width)
    clipped[:, [1, 3]] = np.clip(np.nan_to_num(boxes[:, [1, 3]]), 0, height)
    sizes_ok = (clipped[:, 2] - clipped[:, 0] >= min_size_px) & (
        clipped[:, 3] - clipped[:, 1] >= min_size_px
    )
    keep = finite & sizes_ok & (detections.labels >= 0)

    dropped = int((~keep).sum())
    if dropped:
        logger.debug("Dropped %d degenerate detection boxes before tracking", dropped)
    return Detections(
        clipped[keep],
        np.clip(detections.scores[keep], 0.0, 1.0),
        detections.labels[keep],
        detections.class_names,
    )


def tracker_config(
    kind: str, confidence: float, low_confidence: float, max_lost_frames: int
) -> dict[str, Any]:
    """Return the MMDetection registry config of a tracker.

    The matching thresholds are those of MMDetection 3.3's ByteTrack and OC-SORT configs for
    MOT17. `confidence` is the score a detection needs to start a track or (for ByteTrack) to
    take part in the first association; ByteTrack's second association uses detections down
    to `low_confidence`.
    """
    if kind == "bytetrack":
        return {
            "type": "ByteTracker",
            "motion": {"type": "KalmanFilter"},
            "obj_score_thrs": {"high": confidence, "low": low_confidence},
            "init_track_thr": confidence,
            "weight_iou_with_det_scores": True,
            "match_iou_thrs": {"high": 0.1, "low": 0.5, "tentative": 0.3},
            "num_tentatives": 3,
            "num_frames_retain": max_lost_frames,
        }
    if kind == "ocsort":
        return {
            "type": "OCSORTTracker",
            "motion": {"type": "KalmanFilter"},
            "obj_score_thr": confidence,
            "init_track_thr": confidence,
            "weight_iou_with_det_scores": True,
            "match_iou_thr": 0.3,
            "num_tentatives": 3,
            "vel_consist_weight": 0.2,
            "vel_delta_t": 3,
            "num_frames_retain": max_lost_frames,
        }
    raise ValueError(f"Unknown tracker kind {kind!r}; use one of {', '.join(TRACKER_KINDS)}.")


class MultiObjectTracker:
    """Associate per-frame detections into tracks with ByteTrack or OC-SORT.

    `max_lost_frames` counts `update` calls: a track that has not been matched for that many
    frames is forgotten, and an object that reappears later gets a new id.
    """

    def __init__(
        self,
        kind: str = "bytetrack",
        *,
        confidence: float = 0.5,
        low_confidence: float = 0.1,
        max_lost_frames: int = 30,
    ) -> None:
        from mmdet.registry import MODELS
        from mmdet.utils import register_all_modules

        if not 0.0 <= low_confidence <= confidence <= 1.0:
            raise ValueError(
                "Tracker thresholds need 0 <= low_confidence <= confidence <= 1; got "
                f"low_confidence={low_confidence}, confidence={confidence}."
            )
        register_all_modules(init_default_scope=False)
        self.kind = kind
        self.confidence = confidence
        self.low_confidence = low_confidence
        self._tracker = MODELS.build(
            tracker_config(kind, confidence, low_confidence, max_lost_frames)
        )
        self._last_frame_index: int | None = None

    def update(self, frame_index: int, detections: Detections) -> list[TrackedBox]:
        """Add one frame's detections and return the tracked boxes in it.

        `frame_index` is the frame's position in the tracked sequence: 0 for the first frame
        (which resets the tracker), then increasing by 1 per frame. A larger step means frames
        were skipped, and the motion model predicts across them. Detections must already be
        sanitised (see `sanitize_detections`).

        The returned boxes are the matched detections, not Kalman estimates. They include new
        tracks that are still tentative. A track keeps its id for its whole lifetime.

        Limitation: mmdet 3.3's trackers skip the Kalman prediction on a frame without
        detections, so after a run of empty frames a fast object may be too far from its
        predicted box to match, and it continues under a new id.
        """
        import torch
        from mmdet.structures import DetDataSample
        from mmengine.structures import InstanceData

        if frame_index < 0 or (
            self._last_frame_index is not None
            and frame_index != 0
            and frame_index <= self._last_frame_index
        ):
            raise ValueError(
                f"frame_index must be 0 or larger than the previous one "
                f"({self._last_frame_index}); got {frame_index}."
            )
        self._last_frame_index = frame_index

        instances = InstanceData()
        instances.bboxes = torch.from_numpy(detections.boxes_xyxy.astype(np.float32))
        instances.scores = torch.from_numpy(detections.scores.astype(np.float32))
        instances.labels = torch.from_numpy(detections.labels.astype(np.int64))
        sample = DetDataSample(metainfo={"frame_id": frame_index})
        sample.pred_instances = instances

        tracked = self._tracker.track(sample)
        return [
            TrackedBox(int(track_id), box.numpy().astype(np.float32), float(score), int(label))
            for track_id, box, score, label in zip(
                tracked.instances_id, tracked.bboxes, tracked.scores, tracked.labels, strict=True
            )
        ]
