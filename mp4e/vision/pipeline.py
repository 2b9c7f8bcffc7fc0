"""Track objects through sampled video frames: detect, track, then label each track.

`track_objects` takes frames one at a time (any objects with `index`, `time_s` and an RGB
uint8 `image`), so a decoder can stream them, and returns one `ObjectTrack` per object.

Requested labels are matched to the detector's classes, case-insensitively:

- a detector class name ("person", "car") keeps that class;
- an alias in `CLASS_ALIASES` ("pedestrian", "vehicle") keeps those of its classes that the
  detector has;
- any other label ("product", "logo") needs a `ClipLabeler`. Every detection of a class not
  claimed by the labels above is tracked. CLIP then compares crops of each track with the
  requested labels and with the track's own class name. The track gets the requested label
  that wins, or is dropped when its class name wins.

Without labels every class is tracked and named after its most frequent class (weighted by
score). Classes in `CONFUSABLE_CLASSES` are tracked as one class, so a van that the detector
calls "car" in one frame and "truck" in the next keeps one track.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from mp4e.errors import Cancelled, InvalidParameter
from mp4e.vision.clip import ClipLabeler
from mp4e.vision.detection import Detections, Detector
from mp4e.vision.tracking import MultiObjectTracker, TrackedBox, sanitize_detections

logger = logging.getLogger(__name__)

# Tracks seen in fewer sampled frames than this are dropped: most are a tracker's tentative
# starts on a false detection, and a box that flickers for under three samples is not useful.
MIN_TRACK_SAMPLES = 3
# Detections under this score are ignored; between it and `confidence`, ByteTrack uses them
# only to continue existing tracks.
LOW_CONFIDENCE = 0.1
# Boxes of one tracked class that overlap more than this are one object seen twice.
DUPLICATE_IOU = 0.7
# CLIP compares this many crops per candidate track: the ones with the highest detector scores.
CLIP_CROPS_PER_TRACK = 3

CLASS_ALIASES: dict[str, tuple[str, ...]] = {
    "people": ("person",),
    "pedestrian": ("person",),
    "human": ("person",),
    "vehicle": ("car", "truck", "bus", "motorcycle"),
    "bike": ("bicycle",),
    "motorbike": ("motorcycle",),
    "phone": ("cell phone",),
}
CONFUSABLE_CLASSES: tuple[tuple[str, ...], ...] = (("car", "truck", "bus"),)

ProgressCallback = Callable[[int, float], None]


class SampledFrameLike(Protocol):
    """A decoded frame: its index in the video, its time and its RGB uint8 `(H, W, 3)` pixels."""

    # Read-only members, so that frozen dataclasses such as `SampledFrame` match.
    @property
    def index(self) -> int: ...

    @property
    def time_s(self) -> float: ...

    @property
    def image(self) -> np.ndarray: ...


@dataclass(frozen=True)
class ObjectTrack:
    """One tracked object.

    `frames` are the video frame indices of the sampled frames the object was seen in, and
    `times_s` their times. `boxes_norm` is float32 `(N, 4)` xyxy in 0..1 of the frame size,
    `scores` contains the detector's float32 `(N,)` scores, and `confidence` is their mean.
    """

    label: str
    confidence: float
    frames: list[int]
    times_s: list[float]
    boxes_norm: np.ndarray
    scores: np.ndarray
    track_id: int


@dataclass(frozen=True)
class LabelPlan:
    """The mapping of detector classes to tracking groups, and of groups to track labels.

    `group_label` maps a group to its requested label, or to None when the label comes from
    the track's classes (no labels requested) or from CLIP (groups in `clip_groups`).
    """

    group_of_class: dict[int, int]
    group_label: dict[int, str | None]
    clip_labels: tuple[str, ...] = ()
    clip_groups: frozenset[int] = frozenset()


def plan_labels(
    labels: Sequence[str] | None, class_names: Sequence[str], clip_available: bool
) -> LabelPlan:
    """Work out which detections to track and how to label them (see the module docstring).

    Raises `InvalidParameter` (field `labels`) for an empty label, and for a label that is not
    a detector class or alias when no CLIP model is available.
    """
    class_index = {name.lower(): index for index, name in enumerate(class_names)}
    if labels is None:
        by_class = _group_classes(range(len(class_names)), class_names)
        return LabelPlan(by_class, dict.fromkeys(set(by_class.values())))

    group_of_class: dict[int, int] = {}
    group_label: dict[int, str | None] = {}
    clip_labels: list[str] = []
    for raw in labels:
        label = raw.strip()
        if not label:
            raise InvalidParameter("Labels must not be empty strings.", field="labels")
        classes = _classes_for_label(label.lower(), class_index)
        if classes is None:
            if label not in clip_labels:
                clip_labels.append(label)
            continue
        group = len(group_label)
        group_label[group] = label
        for index in classes:
            group_of_class.setdefault(index, group)

    if not clip_labels:
        return LabelPlan(group_of_class, group_label)
    if not clip_available:
        raise InvalidParameter(
            "These labels are not detector classes and need a CLIP model: "
            f"{', '.join(repr(label) for label in clip_labels)}. Set MP4E_CLIP_CHECKPOINT or "
            "use detector classes.",
            field="labels",
            details={"labels": clip_labels, "detector_classes": list(class_names)},
        )
    unclaimed = [index for index in range(len(class_names)) if index not in group_of_class]
    clip_group_of_class = _group_classes(unclaimed, class_names, first_group=len(group_label))
    clip_groups = frozenset(clip_group_of_class.values())
    group_of_class.update(clip_group_of_class)
    group_label.update(dict.fromkeys(clip_groups))
    return LabelPlan(group_of_class, group_label, tuple(clip_labels), clip_groups)


def _classes_for_label(label: str, class_index: dict[str, int]) -> list[int] | None:
    if label in class_index:
        return [class_index[label]]
    present = [class_index[name] for name in CLASS_ALIASES.get(label, ()) if name in class_index]
    return present or None


def _group_classes(
    indices: Iterable[int], class_names: Sequence[str], first_group: int = 0
) -> dict[int, int]:
    """Give each class its own group, except that confusable classes share one."""
    lowered = [name.lower() for name in class_names]
    groups: dict[int, int] = {}
    shared: dict[tuple[str, ...], int] = {}
    next_group = first_group
    for index in indices:
        family = next((f for f in CONFUSABLE_CLASSES if lowered[index] in f), None)
        if family is not None and family in shared:
            groups[index] = shared[family]
            continue
        groups[index] = next_group
        if family is not None:
            shared[family] = next_group
        next_group += 1
    return groups


@dataclass
class _TrackRecord:
    frames: list[int] = field(default_factory=list)
    times_s: list[float] = field(default_factory=list)
    boxes_norm: list[np.ndarray] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    classes: list[int] = field(default_factory=list)
    group: int = -1
    crops: list[tuple[float, np.ndarray]] = field(default_factory=list)

    def keep_crop(self, score: float, crop: np.ndarray) -> None:
        self.crops.append((score, crop))
        self.crops.sort(key=lambda item: -item[0])
        del self.crops[CLIP_CROPS_PER_TRACK:]

    def majority_class(self) -> int:
        weights: dict[int, float] = defaultdict(float)
        for label, score in zip(self.classes, self.scores, strict=True):
            weights[label] += score
        return max(weights, key=weights.__getitem__)


def track_objects(
    frames: Iterable[SampledFrameLike],
    detector: Detector,
    *,
    labels: Sequence[str] | None = None,
    confidence: float = 0.5,
    tracker_kind: str = "bytetrack",
    clip: ClipLabeler | None = None,
    frame_size_wh: tuple[int, int] | None = None,
    progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[ObjectTrack]:
    """Detect and track objects through `frames`, and return the tracks that pass the filters.

    `confidence` (0..1) is the detector score that starts a track; weaker detections down to
    `LOW_CONFIDENCE` may continue one. Tracks seen in fewer than `MIN_TRACK_SAMPLES` frames are
    dropped.

    Tracking works in the pixels of `frame_size_wh` (by default the first frame's size), and
    boxes are normalised by it. A frame of another size, e.g. after a resolution change in the
    stream, has its boxes scaled into that space, so tracks continue across the change.

    `progress(frames_done, time_s)` is called after each frame, and `should_stop()` before
    each frame and before CLIP labelling. When `should_stop()` returns True, `Cancelled` is
    raised.
    """
    if not 0.0 < confidence <= 1.0:
        raise InvalidParameter(
            f"confidence must be in (0, 1]; got {confidence}.", field="confidence"
        )
    plan = plan_labels(labels, detector.class_names, clip is not None)
    tracker = MultiObjectTracker(
        tracker_kind, confidence=confidence, low_confidence=min(LOW_CONFIDENCE, confidence)
    )
    records: dict[int, _TrackRecord] = {}
    frames_done = 0

    for step, frame in enumerate(frames):
        _check_stop(should_stop)
        image_wh = _image_size(frame)
        if frame_size_wh is None:
            frame_size_wh = image_wh
        detections = _to_tracking_space(
            detector.detect(frame.image), image_wh, frame_size_wh, frame.index
        )
        detections = _group_detections(detections, plan, frame_size_wh)
        classes_by_box = {
            box.tobytes(): label
            for box, label in zip(detections.boxes_xyxy, detections.labels, strict=True)
        }
        grouped = Detections(
            detections.boxes_xyxy,
            detections.scores,
            np.array([plan.group_of_class[label] for label in detections.labels], dtype=np.int64),
            detections.class_names,
        )
        for tracked in tracker.update(step, grouped):
            record = records.setdefault(tracked.track_id, _TrackRecord(group=tracked.label))
            _record_observation(
                record, tracked, classes_by_box, frame, (image_wh, frame_size_wh), plan
            )
        frames_done += 1
        if progress is not None:
            progress(frames_done, float(frame.time_s))

    _check_stop(should_stop)
    tracks = _finish_tracks(records, plan, detector.class_names, clip)
    logger.info(
        "Tracked %d objects in %d sampled frames (%d candidate tracks)",
        len(tracks),
        frames_done,
        len(records),
    )
    return tracks


def _check_stop(should_stop: Callable[[], bool] | None) -> None:
    if should_stop is not None and should_stop():
        raise Cancelled("Object tracking was cancelled.")


def _image_size(frame: SampledFrameLike) -> tuple[int, int]:
    image = frame.image
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise InvalidParameter(
            f"Frame {frame.index} is not an RGB image. Its array shape is {image.shape}."
        )
    return int(image.shape[1]), int(image.shape[0])


def _to_tracking_space(
    detections: Detections,
    image_wh: tuple[int, int],
    frame_size_wh: tuple[int, int],
    frame_index: int,
) -> Detections:
    """Scale boxes from the image's pixels into the pixels of `frame_size_wh`."""
    if image_wh == tuple(frame_size_wh):
        return detections
    logger.debug(
        "Frame %d is %dx%d, so its boxes are scaled to %dx%d",
        frame_index,
        *image_wh,
        *frame_size_wh,
    )
    scale_x = frame_size_wh[0] / image_wh[0]
    scale_y = frame_size_wh[1] / image_wh[1]
    scale = np.array([scale_x, scale_y, scale_x, scale_y], dtype=np.float32)
    return Detections(
        detections.boxes_xyxy * scale,
        detections.scores,
        detections.labels,
        detections.class_names,
    )


def _group_detections(
    detections: Detections, plan: LabelPlan, frame_size_wh: tuple[int, int]
) -> Detections:
    """Keep the planned classes over `LOW_CONFIDENCE`, sanitised, one box per object."""
    wanted = np.array([label in plan.group_of_class for label in detections.labels], dtype=bool)
    wanted &= detections.scores >= LOW_CONFIDENCE
    detections = sanitize_detections(detections.select(wanted), frame_size_wh)
    if len(detections) < 2:
        return detections
    groups = np.array([plan.group_of_class[label] for label in detections.labels])
    keep = _suppress_duplicates(detections.boxes_xyxy, detections.scores, groups)
    return detections.select(keep)


def _suppress_duplicates(boxes: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Return indices of boxes kept by greedy NMS at `DUPLICATE_IOU` within each group."""
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    for index in order:
        same_group = [other for other in kept if groups[other] == groups[index]]
        if same_group and _iou(boxes[index], boxes[same_group]).max() > DUPLICATE_IOU:
            continue
        kept.append(int(index))
    return np.array(sorted(kept), dtype=np.int64)


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    top_left = np.maximum(box[:2], others[:, :2])
    bottom_right = np.minimum(box[2:], others[:, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    other_areas = np.prod(others[:, 2:] - others[:, :2], axis=1)
    return intersection / np.maximum(area + other_areas - intersection, 1e-9)


def _record_observation(
    record: _TrackRecord,
    tracked: TrackedBox,
    classes_by_box: dict[bytes, int],
    frame: SampledFrameLike,
    sizes_wh: tuple[tuple[int, int], tuple[int, int]],
    plan: LabelPlan,
) -> None:
    """Append one tracked box; `sizes_wh` is (image size, tracking size)."""
    (image_width, image_height), (width, height) = sizes_wh
    box = tracked.box_xyxy
    record.frames.append(int(frame.index))
    record.times_s.append(float(frame.time_s))
    record.boxes_norm.append(
        np.clip(box / np.array([width, height, width, height], dtype=np.float32), 0.0, 1.0)
    )
    record.scores.append(tracked.score)
    # The trackers return the input boxes unchanged, so the box finds its detector class.
    record.classes.append(classes_by_box.get(box.astype(np.float32).tobytes(), -1))
    if record.group in plan.clip_groups:
        image_scale = [image_width / width, image_height / height] * 2
        x1, y1, x2, y2 = np.round(box * np.array(image_scale)).astype(int)
        crop = frame.image[y1:y2, x1:x2]
        if crop.size:
            record.keep_crop(tracked.score, crop.copy())


def _finish_tracks(
    records: dict[int, _TrackRecord],
    plan: LabelPlan,
    class_names: Sequence[str],
    clip: ClipLabeler | None,
) -> list[ObjectTrack]:
    tracks = []
    for track_id, record in sorted(records.items()):
        if len(record.frames) < MIN_TRACK_SAMPLES:
            continue
        label = _track_label(record, plan, class_names, clip)
        if label is None:
            continue
        tracks.append(
            ObjectTrack(
                label=label,
                confidence=float(np.mean(record.scores)),
                frames=record.frames,
                times_s=record.times_s,
                boxes_norm=np.array(record.boxes_norm, dtype=np.float32).reshape(-1, 4),
                scores=np.array(record.scores, dtype=np.float32),
                track_id=track_id,
            )
        )
    tracks.sort(key=lambda track: (track.frames[0], track.track_id))
    return tracks


def _track_label(
    record: _TrackRecord,
    plan: LabelPlan,
    class_names: Sequence[str],
    clip: ClipLabeler | None,
) -> str | None:
    requested = plan.group_label.get(record.group)
    if requested is not None:
        return requested
    majority = record.majority_class()
    class_name = class_names[majority] if majority >= 0 else "object"
    if record.group not in plan.clip_groups:
        return class_name
    if clip is None or not record.crops:
        return None

    candidates = [*plan.clip_labels, class_name]
    probabilities = clip.label_probabilities([crop for _, crop in record.crops], candidates)
    best = int(probabilities.mean(axis=0).argmax())
    return plan.clip_labels[best] if best < len(plan.clip_labels) else None
