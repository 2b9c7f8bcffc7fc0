"""Planar surface tracking: follow a marked quadrilateral through every frame of a video.

A user marks the four corners of a flat surface (a screen, a billboard, a poster) on one frame.
`track_surface` estimates, for every frame, the homography that maps that reference frame onto
the frame, and returns the four corners it gives.

Coordinates are normalised to 0..1 in display orientation with the origin at the top-left
corner of the frame: x = 0 is the left edge of the leftmost pixel column and x = 1 the right
edge of the rightmost one. Internally pixel centres sit at integer coordinates, as in OpenCV,
so x_px = x_norm * width - 0.5.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np

from mp4e.errors import Cancelled, CorruptMedia, InvalidParameter, InvalidQuad

logger = logging.getLogger(__name__)

# Frames read from the source per call, so memory stays bounded on long videos. Large frames
# get smaller chunks: at most CHUNK_BUDGET_BYTES of RGB frames, but never under 8 frames.
CHUNK_FRAMES = 64
CHUNK_BUDGET_BYTES = 256 * 1024 * 1024

# Geometry tests of a quad given in normalised coordinates (see `validate_quad`).
MIN_QUAD_AREA_NORM = 1e-4
MIN_CORNER_DISTANCE_NORM = 1e-3
MIN_TURN_SIN = math.sin(math.radians(1.0))

# Features: Shi-Tomasi corners inside the quad, shrunk by EDGE_MARGIN_PX so that the LK
# windows see little of the background around the surface.
MAX_FEATURES = 400
# The frame-to-frame flow only predicts, so it follows fewer features than the reference match.
MAX_FLOW_FEATURES = 150
FEATURE_QUALITY = 0.01
FEATURE_MIN_DISTANCE_PX = 7
EDGE_MARGIN_PX = 6
MIN_REFERENCE_FEATURES = 20
REDETECT_BELOW = 60

# Pyramidal Lucas-Kanade optical flow with a forward-backward check.
LK_WINDOW = (21, 21)
LK_LEVELS = 3
# The match against the warped reference starts close to the solution, so it needs fewer
# levels, and coarse levels would let the LK windows reach far past the surface.
REFINE_LK_LEVELS = 2
LK_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 0.01)
MAX_FORWARD_BACKWARD_PX = 1.0
# Frame-to-frame flow runs on the bounding box of the features plus this margin, which covers
# the largest motion that LK_LEVELS pyramid levels follow with LK_WINDOW.
FLOW_SEARCH_PX = 160
MIN_ROI_PX = 16

# RANSAC reprojection thresholds and the support a homography needs to be trusted.
FLOW_RANSAC_PX = 2.0
REFINE_RANSAC_PX = 1.5
MIN_INLIERS = 15

# Frames in a row that may use the frame-to-frame estimate alone, when the match against the
# reference fails (motion blur, a passing occlusion), before the surface counts as lost.
MAX_COAST_FRAMES = 10

# Sanity limits of an estimate; breaking any of them means the surface is lost.
MIN_VISIBLE_SHARE = 0.1
MAX_STEP_AREA_CHANGE = 2.0
MAX_AREA_CHANGE = 64.0
MAX_ANISOTROPY = 25.0
MAX_CORNER_OUTSIDE_NORM = 2.0

# Re-acquisition: ORB descriptors of the reference patch matched against the whole frame.
ORB_REFERENCE_FEATURES = 1000
ORB_FRAME_FEATURES = 2000
ORB_RATIO = 0.8
REACQUIRE_RANSAC_PX = 4.0
REACQUIRE_MIN_INLIERS = 20
REACQUIRE_MIN_NCC = 0.6


class FrameSource(Protocol):
    """Decoded frames of one video, in display orientation."""

    frame_count: int
    frame_size_wh: tuple[int, int]
    timestamps: np.ndarray

    def read(self, start: int, stop: int) -> list[np.ndarray]:
        """Return frames [start, stop) as RGB uint8 arrays of shape (height, width, 3)."""
        ...


@dataclass(frozen=True)
class SurfaceTrack:
    """Corners of a tracked surface on every frame of a video.

    `corners_norm[i]` lists the four corners in the order the user gave them. On a visible
    frame they are the tracker's estimate and may lie outside 0..1 when part of the surface is
    out of view (never more than MAX_CORNER_OUTSIDE_NORM frame sizes). On a frame where the
    surface is not visible they repeat the last visible estimate before it in tracking order,
    with each coordinate clipped to 0..1. Tracking order runs towards the end of the video
    after the marked frame and towards the start before it. No value is NaN or infinite.
    """

    frames: np.ndarray
    times_s: np.ndarray
    corners_norm: np.ndarray
    visible: np.ndarray

    @property
    def tracked_frames(self) -> int:
        """Number of frames on which the surface is visible."""
        return int(np.count_nonzero(self.visible))


def validate_quad(
    corners_norm: Sequence[tuple[float, float]] | Sequence[Mapping[str, Any]] | np.ndarray,
) -> np.ndarray:
    """Check four normalised corners and return them as a (4, 2) float64 array.

    Corners are (x, y) pairs or mappings with keys "x" and "y", in order around the quad
    (clockwise or counter-clockwise). `InvalidParameter` is raised, with `field` such as
    `corners[2].x`, when there are not exactly four corners or a value is missing, not a
    number, not finite or outside 0..1. `InvalidQuad` is raised when a geometry test fails,
    and `details["test"]` names it:

    - "repeated_corner": two corners are closer than MIN_CORNER_DISTANCE_NORM.
    - "collinear": three consecutive corners turn by less than 1 degree.
    - "self_intersecting": two edges cross.
    - "not_convex": the quad is not convex.
    - "near_zero_area": the area is below MIN_QUAD_AREA_NORM of the frame.

    Limitation: the tests run in normalised units, so on a non-square frame the 1-degree
    collinearity limit is stretched by the aspect ratio.
    """
    corners = _parse_corners(corners_norm)

    defect = _find_quad_defect(corners, MIN_QUAD_AREA_NORM, MIN_CORNER_DISTANCE_NORM)
    if defect is not None:
        test, details = defect
        raise InvalidQuad(
            f"The surface corners do not form a usable quadrilateral: {_DEFECT_TEXT[test]}.",
            field="corners",
            details={"test": test, **details},
        )
    return corners


def track_surface(
    source: FrameSource,
    start_frame: int,
    corners_norm: np.ndarray,
    *,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SurfaceTrack:
    """Track the plane marked by `corners_norm` on `start_frame` through every frame.

    The video is processed forward from `start_frame` to the last frame, then backward from
    `start_frame` to frame 0, reading at most CHUNK_FRAMES frames per `source.read` call
    (fewer for frames larger than about 1440x960, see CHUNK_BUDGET_BYTES).

    On each frame, features tracked by pyramidal LK flow (with a forward-backward check) give
    a RANSAC homography from the previous frame. That prediction warps the reference frame
    onto the current one, LK matches the reference features against the current frame, and a
    RANSAC homography is fitted from reference coordinates straight to the measured positions,
    so drift does not accumulate. Features are detected again when fewer than REDETECT_BELOW
    survive.

    When the match against the reference has fewer than MIN_INLIERS inliers, the flow
    estimate alone is used for up to MAX_COAST_FRAMES frames in a row. The surface is lost
    when both fail, when that limit is passed, or when the estimate fails a sanity test. The
    tests reject a quad that is not convex or collapses, an area change above
    MAX_STEP_AREA_CHANGE in one frame or MAX_AREA_CHANGE from the reference, and a local
    anisotropy above MAX_ANISOTROPY. They also reject a quad of which less than
    MIN_VISIBLE_SHARE is in view (or less than that share of the frame is covered, for a quad
    larger than the frame).

    After a loss, every further frame of that direction is matched against ORB descriptors of
    the reference patch. The surface is re-acquired when a RANSAC homography has at least
    REACQUIRE_MIN_INLIERS inliers, passes the sanity tests and the LK refinement, and the
    warped reference correlates with the frame at NCC >= REACQUIRE_MIN_NCC. See
    `SurfaceTrack` for the corners stored on frames where the surface is not visible.

    `progress(done, total)` is called after each chunk with frame counts. `should_stop()` is
    called before each chunk is read and `Cancelled` is raised when it returns True.
    `InvalidParameter(field="frame")` is raised when `start_frame` is not a frame index,
    `InvalidParameter` or `InvalidQuad` when the corners are invalid (see `validate_quad`),
    and `InvalidQuad` with `details["test"] == "texture"` when the surface has fewer than
    MIN_REFERENCE_FEATURES trackable features. `CorruptMedia` is raised when the source
    returns fewer frames than requested.

    Limitation: the warped reference is matched to the frame's brightness with one gain and
    offset, so uneven lighting changes on the surface (moving shadows, glare) still weaken
    the match against the reference and can end tracking early.
    Limitation: features come from inside the quad, and the marked frame is the only
    reference. A surface whose own picture changes, such as a screen playing video, is lost
    soon after the picture changes and is re-acquired only if the marked picture returns.
    """
    frame_count = int(source.frame_count)
    _validate_start_frame(start_frame, frame_count)
    quad_norm = validate_quad(corners_norm)
    width, height = (int(v) for v in source.frame_size_wh)
    times_s = np.asarray(source.timestamps, dtype=np.float64)
    if times_s.shape != (frame_count,):
        raise ValueError(
            f"Frame source has {times_s.shape} timestamps for {frame_count} frames, "
            "but it must have one per frame."
        )

    chunk_frames = max(8, min(CHUNK_FRAMES, CHUNK_BUDGET_BYTES // (width * height * 3)))
    run = _TrackingRun(source, frame_count, (width, height), chunk_frames, progress, should_stop)
    logger.info(
        "Surface tracking started at frame %d of %d (%dx%d).",
        start_frame,
        frame_count,
        width,
        height,
    )
    reference = run.track_forward(start_frame, _norm_to_px(quad_norm, width, height))
    run.track_backward(start_frame, reference)

    track = SurfaceTrack(
        frames=np.arange(frame_count, dtype=np.int64),
        times_s=times_s,
        corners_norm=run.corners_norm,
        visible=run.visible,
    )
    logger.info(
        "Surface tracking finished: visible on %d of %d frames.", track.tracked_frames, frame_count
    )
    return track


# OpenCV treats an empty mask as no mask, so features come from the whole image.
_NO_MASK = np.empty((0, 0), dtype=np.uint8)

_DEFECT_TEXT = {
    "repeated_corner": "two corners are at the same position",
    "collinear": "three consecutive corners lie on one line",
    "self_intersecting": "two edges cross each other",
    "not_convex": "the quadrilateral is not convex",
    "near_zero_area": "its area is nearly zero",
}


def _parse_corners(corners_norm: Any) -> np.ndarray:
    corners = list(corners_norm)
    if len(corners) != 4:
        raise InvalidParameter(
            f"A surface needs exactly 4 corners, got {len(corners)}.",
            field="corners",
            details={"count": len(corners), "expected": 4},
        )

    parsed = np.empty((4, 2), dtype=np.float64)
    for index, corner in enumerate(corners):
        for axis, name in enumerate(("x", "y")):
            parsed[index, axis] = _parse_coordinate(corner, index, axis, name)
    return parsed


def _parse_coordinate(corner: Any, index: int, axis: int, name: str) -> float:
    field_name = f"corners[{index}].{name}"
    try:
        raw = corner[name] if isinstance(corner, Mapping) else corner[axis]
    except (KeyError, IndexError, TypeError):
        raise InvalidParameter(
            f"Corner {index} is missing its {name} coordinate.", field=field_name, details={}
        ) from None

    if isinstance(raw, bool) or not isinstance(raw, int | float | np.integer | np.floating):
        raise InvalidParameter(
            f"Corner {index} {name} must be a number, got {raw!r}.",
            field=field_name,
            details={"value": repr(raw)},
        )
    value = float(raw)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise InvalidParameter(
            f"Corner {index} {name} must be a finite number in 0..1, got {value}.",
            field=field_name,
            details={"value": repr(value), "min": 0.0, "max": 1.0},
        )
    return value


def _find_quad_defect(
    quad: np.ndarray, min_area: float, min_corner_distance: float
) -> tuple[str, dict[str, Any]] | None:
    """Return the name and details of the first geometry test the quad fails, or None."""
    for i in range(4):
        for j in range(i + 1, 4):
            if np.linalg.norm(quad[i] - quad[j]) < min_corner_distance:
                return "repeated_corner", {"corners": [i, j]}

    edges = np.roll(quad, -1, axis=0) - quad
    turns = np.cross(np.roll(edges, 1, axis=0), edges)
    lengths = np.linalg.norm(edges, axis=1)
    turn_sins = turns / (np.roll(lengths, 1) * lengths)
    for i in range(4):
        if abs(turn_sins[i]) < MIN_TURN_SIN:
            return "collinear", {"corners": [(i - 1) % 4, i, (i + 1) % 4]}

    for first, second in ((0, 2), (1, 3)):
        if _segments_cross(quad[first], quad[first + 1], quad[second], quad[(second + 1) % 4]):
            return "self_intersecting", {"edges": [[first, first + 1], [second, (second + 1) % 4]]}

    if not (np.all(turns > 0) or np.all(turns < 0)):
        return "not_convex", {}

    area = _polygon_area(quad)
    if area < min_area:
        return "near_zero_area", {"area": area, "min_area": min_area}
    return None


def _segments_cross(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> bool:
    def side(p: np.ndarray, q: np.ndarray, r: np.ndarray) -> float:
        return float(np.cross(q - p, r - p))

    return side(a, b, c) * side(a, b, d) < 0 and side(c, d, a) * side(c, d, b) < 0


def _polygon_area(polygon: np.ndarray) -> float:
    x, y = polygon[:, 0], polygon[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _validate_start_frame(start_frame: int, frame_count: int) -> None:
    is_index = isinstance(start_frame, int | np.integer) and not isinstance(start_frame, bool)
    if not is_index or not 0 <= start_frame < frame_count:
        raise InvalidParameter(
            f"Frame {start_frame!r} is not a frame of this video, which has frames "
            f"0..{frame_count - 1}.",
            field="frame",
            details={"value": repr(start_frame), "frame_count": frame_count},
        )


def _norm_to_px(corners_norm: np.ndarray, width: int, height: int) -> np.ndarray:
    return corners_norm * np.array([width, height], dtype=np.float64) - 0.5


def _px_to_norm(corners_px: np.ndarray, width: int, height: int) -> np.ndarray:
    return (corners_px + 0.5) / np.array([width, height], dtype=np.float64)


def _project(homography: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (N, 2) points through a homography; points on the horizon become inf or NaN."""
    mapped = points @ homography[:, :2].T + homography[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        return mapped[:, :2] / mapped[:, 2:3]


def _translation(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def _bounding_roi(
    points_px: np.ndarray, pad: int, width: int, height: int
) -> tuple[int, int, int, int] | None:
    """Return the padded bounding box (x0, y0, x1, y1) of points, clipped to the frame.

    Return None when less than MIN_ROI_PX remains in either direction.
    """
    x0 = max(0, math.floor(float(points_px[:, 0].min())) - pad)
    y0 = max(0, math.floor(float(points_px[:, 1].min())) - pad)
    x1 = min(width, math.ceil(float(points_px[:, 0].max())) + pad + 1)
    y1 = min(height, math.ceil(float(points_px[:, 1].max())) + pad + 1)
    if x1 - x0 < MIN_ROI_PX or y1 - y0 < MIN_ROI_PX:
        return None
    return x0, y0, x1, y1


def _quad_mask(quad_px: np.ndarray, roi: tuple[int, int, int, int], margin: int) -> np.ndarray:
    """Return a uint8 mask of the quad inside `roi`, shrunk by `margin` pixels."""
    x0, y0, x1, y1 = roi
    mask = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    shift = 4
    polygon = np.round((quad_px - [x0, y0]) * (1 << shift)).astype(np.int32)
    cv2.fillConvexPoly(mask, polygon, (255,), lineType=cv2.LINE_8, shift=shift)
    if margin > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * margin + 1, 2 * margin + 1))
        return cv2.erode(mask, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=(0,))
    return mask


def _detect_features(gray: np.ndarray, quad_px: np.ndarray, max_features: int) -> np.ndarray:
    """Return up to `max_features` corner features inside the quad as a (K, 2) float32 array."""
    height, width = gray.shape
    roi = _bounding_roi(quad_px, 0, width, height)
    if roi is None:
        return np.empty((0, 2), dtype=np.float32)

    x0, y0, x1, y1 = roi
    mask = _quad_mask(quad_px, roi, EDGE_MARGIN_PX)
    corners = cv2.goodFeaturesToTrack(
        gray[y0:y1, x0:x1],
        maxCorners=max_features,
        qualityLevel=FEATURE_QUALITY,
        minDistance=FEATURE_MIN_DISTANCE_PX,
        mask=mask,
    )
    if corners is None:
        return np.empty((0, 2), dtype=np.float32)
    return corners.reshape(-1, 2) + np.array([x0, y0], dtype=np.float32)


def _track_points(
    previous: np.ndarray, current: np.ndarray, points: np.ndarray, levels: int
) -> tuple[np.ndarray, np.ndarray]:
    """Track points with LK in both directions and return new positions and a reliable mask.

    A point is reliable when both searches succeed and tracking it back lands within
    MAX_FORWARD_BACKWARD_PX of where it started.
    """
    points = np.ascontiguousarray(points, dtype=np.float32).reshape(-1, 1, 2)
    moved, status = _lucas_kanade(previous, current, points, levels)
    back, back_status = _lucas_kanade(current, previous, moved, levels)
    error = np.linalg.norm(back.reshape(-1, 2) - points.reshape(-1, 2), axis=1)
    reliable = (
        (status.ravel() == 1) & (back_status.ravel() == 1) & (error < MAX_FORWARD_BACKWARD_PX)
    )
    return moved.reshape(-1, 2), reliable


def _lucas_kanade(
    previous: np.ndarray, current: np.ndarray, points: np.ndarray, levels: int
) -> tuple[np.ndarray, np.ndarray]:
    # Each search starts at the point's own position, as OpenCV does without an initial flow.
    # The start is passed explicitly because the opencv-python 4.10 type stubs reject None.
    moved, status, _ = cv2.calcOpticalFlowPyrLK(
        previous,
        current,
        points,
        points.copy(),
        winSize=LK_WINDOW,
        maxLevel=levels,
        criteria=LK_CRITERIA,
        flags=cv2.OPTFLOW_USE_INITIAL_FLOW,
    )
    return np.asarray(moved), np.asarray(status)


def _fit_homography(
    source_points: np.ndarray, target_points: np.ndarray, threshold_px: float
) -> tuple[np.ndarray, np.ndarray] | None:
    """Fit a RANSAC homography and return it with its inlier mask, or None if poorly supported."""
    if len(source_points) < MIN_INLIERS:
        return None
    homography, inliers = cv2.findHomography(
        source_points.astype(np.float64), target_points.astype(np.float64), cv2.RANSAC, threshold_px
    )
    if homography is None or not np.all(np.isfinite(homography)) or abs(homography[2, 2]) < 1e-12:
        return None
    inlier_mask = inliers.ravel().astype(bool)
    if np.count_nonzero(inlier_mask) < MIN_INLIERS:
        return None
    return homography / homography[2, 2], inlier_mask


def _match_brightness(image: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Return `image` with the gain and offset that give it the mean and spread of `target`.

    Both are measured over `mask`. LK compares raw intensities, so this keeps a lighting
    change since the reference frame from biasing the match.
    """
    image_mean, image_std = cv2.meanStdDev(image, mask=mask)
    target_mean, target_std = cv2.meanStdDev(target, mask=mask)
    if image_std[0, 0] < 1.0 or target_std[0, 0] < 1.0:
        return image
    gain = target_std[0, 0] / image_std[0, 0]
    return cv2.convertScaleAbs(image, alpha=gain, beta=target_mean[0, 0] - gain * image_mean[0, 0])


def _anisotropy(homography: np.ndarray, point: np.ndarray) -> float:
    """Return the singular value ratio of the homography's Jacobian at `point` (inf if flipped)."""
    h = homography
    w = h[2, 0] * point[0] + h[2, 1] * point[1] + h[2, 2]
    u, v = _project(h, point.reshape(1, 2))[0]
    jacobian = (
        np.array(
            [
                [h[0, 0] - h[2, 0] * u, h[0, 1] - h[2, 1] * u],
                [h[1, 0] - h[2, 0] * v, h[1, 1] - h[2, 1] * v],
            ]
        )
        / w
    )
    if np.linalg.det(jacobian) <= 0:
        return math.inf
    singular = np.linalg.svd(jacobian, compute_uv=False)
    return float(singular[0] / singular[1])


@dataclass
class _Reference:
    """Grayscale image, quad in pixels and features of the marked frame."""

    gray: np.ndarray
    quad_px: np.ndarray
    points: np.ndarray
    area_px: float
    valid_mask: np.ndarray
    orb_keypoints: np.ndarray | None = None
    orb_descriptors: np.ndarray | None = None

    @classmethod
    def build(cls, gray: np.ndarray, quad_px: np.ndarray) -> _Reference:
        points = _detect_features(gray, quad_px, MAX_FEATURES)
        if len(points) < MIN_REFERENCE_FEATURES:
            raise InvalidQuad(
                f"The marked surface has too little texture to track: {len(points)} features "
                f"found, at least {MIN_REFERENCE_FEATURES} needed. Mark it on a frame where "
                "it is sharp and shows detail.",
                field="corners",
                details={
                    "test": "texture",
                    "features": len(points),
                    "min_features": MIN_REFERENCE_FEATURES,
                },
            )
        height, width = gray.shape
        valid_mask = _quad_mask(quad_px, (0, 0, width, height), EDGE_MARGIN_PX)
        return cls(gray, quad_px, points, _polygon_area(quad_px), valid_mask)

    def orb_features(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Return ORB keypoint positions and descriptors of the patch, computed on first use."""
        if self.orb_keypoints is None:
            orb = cv2.ORB.create(nfeatures=ORB_REFERENCE_FEATURES)
            keypoints, descriptors = orb.detectAndCompute(self.gray, self.valid_mask)
            self.orb_keypoints = np.array([k.pt for k in keypoints], dtype=np.float32).reshape(
                -1, 2
            )
            self.orb_descriptors = descriptors
        return self.orb_keypoints, self.orb_descriptors


class _DirectionTracker:
    """State of tracking in one direction, from the marked frame towards one end."""

    def __init__(self, reference: _Reference) -> None:
        self.reference = reference
        height, width = reference.gray.shape
        self.size_wh = (width, height)
        self.homography: np.ndarray | None = np.eye(3)
        self.previous_gray = reference.gray
        # A strided subset keeps the spatial spread of the quality-sorted reference features.
        stride = max(1, math.ceil(len(reference.points) / MAX_FLOW_FEATURES))
        self.points = reference.points[::stride].copy()
        self.coasted_frames = 0
        self.orb = cv2.ORB.create(nfeatures=ORB_FRAME_FEATURES)
        self.matcher = cv2.BFMatcher(cv2.NORM_HAMMING)

    def step(self, gray: np.ndarray, frame_index: int) -> np.ndarray | None:
        """Return the reference-to-frame homography of the next frame, or None if not visible."""
        if self.homography is None:
            return self._reacquire(gray, frame_index)

        estimate = self._estimate(gray)
        failure = "too few inliers" if estimate is None else self._find_failure(estimate)
        if estimate is None or failure is not None:
            logger.debug("Surface lost at frame %d: %s.", frame_index, failure)
            self.homography = None
            return None

        self._accept(gray, estimate)
        return estimate

    def _estimate(self, gray: np.ndarray) -> np.ndarray | None:
        assert self.homography is not None
        predicted = self._predict_from_flow(gray)
        refined = self._refine(gray, predicted if predicted is not None else self.homography)
        if refined is not None:
            self.coasted_frames = 0
            return refined
        if predicted is not None and self.coasted_frames < MAX_COAST_FRAMES:
            self.coasted_frames += 1
            return predicted
        return None

    def _predict_from_flow(self, gray: np.ndarray) -> np.ndarray | None:
        assert self.homography is not None
        if len(self.points) < MIN_INLIERS:
            return None

        width, height = self.size_wh
        roi = _bounding_roi(self.points, FLOW_SEARCH_PX, width, height)
        if roi is None:
            return None
        x0, y0, x1, y1 = roi
        moved, reliable = _track_points(
            self.previous_gray[y0:y1, x0:x1], gray[y0:y1, x0:x1], self.points - [x0, y0], LK_LEVELS
        )
        moved += [x0, y0]
        reliable &= self._inside_frame(moved, 0)
        fit = _fit_homography(self.points[reliable], moved[reliable], FLOW_RANSAC_PX)
        if fit is None:
            self.points = moved[reliable]
            return None

        step, inliers = fit
        self.points = moved[reliable][inliers]
        return step @ self.homography

    def _refine(self, gray: np.ndarray, predicted: np.ndarray) -> np.ndarray | None:
        """Match reference features against the frame, starting from `predicted`."""
        width, height = self.size_wh
        reference = self.reference
        projected = _project(predicted, reference.points.astype(np.float64))
        inside = self._inside_frame(projected, LK_WINDOW[0] // 2)
        if np.count_nonzero(inside) < MIN_INLIERS:
            return None

        pad = LK_WINDOW[0] * 2
        roi = _bounding_roi(projected[inside], pad, width, height)
        if roi is None:
            return None
        x0, y0, x1, y1 = roi
        warped = cv2.warpPerspective(
            reference.gray,
            _translation(-x0, -y0) @ predicted,
            (x1 - x0, y1 - y0),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        current = gray[y0:y1, x0:x1]
        predicted_quad = _project(predicted, reference.quad_px)
        inner_mask = _quad_mask(predicted_quad, roi, EDGE_MARGIN_PX)
        warped = _match_brightness(warped, current, inner_mask)
        # Around the surface the reference frame shows another background. The current
        # frame's own pixels go there, so that the LK windows near the edges see no motion.
        np.copyto(warped, current, where=_quad_mask(predicted_quad, roi, 0) == 0)
        start = (projected[inside] - [x0, y0]).astype(np.float32)
        measured, reliable = _track_points(warped, current, start, REFINE_LK_LEVELS)

        fit = _fit_homography(
            reference.points[inside][reliable], measured[reliable] + [x0, y0], REFINE_RANSAC_PX
        )
        return None if fit is None else fit[0]

    def _find_failure(self, homography: np.ndarray) -> str | None:
        """Return why an estimate cannot be the surface, or None when it passes every test."""
        width, height = self.size_wh
        reference = self.reference
        quad = _project(homography, reference.quad_px)
        if not np.all(np.isfinite(quad)):
            return "non-finite corners"
        defect = _find_quad_defect(quad, MIN_QUAD_AREA_NORM * width * height, 1.0)
        if defect is not None:
            return f"degenerate quad ({defect[0]})"

        outside = np.abs(_px_to_norm(quad, width, height) - 0.5) - 0.5
        if outside.max() > MAX_CORNER_OUTSIDE_NORM:
            return "corner too far outside the frame"
        area = _polygon_area(quad)
        if not 1 / MAX_AREA_CHANGE <= area / reference.area_px <= MAX_AREA_CHANGE:
            return "scale changed too much from the marked frame"
        if self.homography is not None:
            previous_area = _polygon_area(_project(self.homography, reference.quad_px))
            if not 1 / MAX_STEP_AREA_CHANGE <= area / previous_area <= MAX_STEP_AREA_CHANGE:
                return "scale jumped between frames"
        if _anisotropy(homography, reference.quad_px.mean(axis=0)) > MAX_ANISOTROPY:
            return "homography is degenerate"
        if self._visible_share(quad, area) < MIN_VISIBLE_SHARE:
            return "surface left the frame"
        return None

    def _visible_share(self, quad: np.ndarray, area: float) -> float:
        width, height = self.size_wh
        frame = np.array(
            [[-0.5, -0.5], [width - 0.5, -0.5], [width - 0.5, height - 0.5], [-0.5, height - 0.5]],
            dtype=np.float32,
        )
        polygon = quad.astype(np.float32)
        if _polygon_orientation(quad) < 0:
            polygon = polygon[::-1].copy()
        overlap, _ = cv2.intersectConvexConvex(polygon, frame)
        return float(overlap) / min(area, float(width * height))

    def _inside_frame(self, points: np.ndarray, margin: int) -> np.ndarray:
        width, height = self.size_wh
        x, y = points[:, 0], points[:, 1]
        return (
            (x >= margin) & (y >= margin) & (x <= width - 1 - margin) & (y <= height - 1 - margin)
        )

    def _accept(self, gray: np.ndarray, homography: np.ndarray) -> None:
        self.homography = homography
        self.previous_gray = gray
        if len(self.points) < REDETECT_BELOW:
            quad = _project(homography, self.reference.quad_px)
            self.points = _detect_features(gray, quad, MAX_FLOW_FEATURES)

    def _reacquire(self, gray: np.ndarray, frame_index: int) -> np.ndarray | None:
        candidate = self._match_descriptors(gray)
        if candidate is None or self._find_failure(candidate) is not None:
            return None
        refined = self._refine(gray, candidate)
        if refined is None or self._find_failure(refined) is not None:
            return None
        correlation = self._correlation(gray, refined)
        if correlation < REACQUIRE_MIN_NCC:
            logger.debug(
                "Re-acquisition candidate at frame %d rejected: NCC %.2f.", frame_index, correlation
            )
            return None

        logger.debug("Surface re-acquired at frame %d (NCC %.2f).", frame_index, correlation)
        self.coasted_frames = 0
        self.points = np.empty((0, 2), dtype=np.float32)
        self._accept(gray, refined)
        return refined

    def _match_descriptors(self, gray: np.ndarray) -> np.ndarray | None:
        reference_points, reference_descriptors = self.reference.orb_features()
        if reference_descriptors is None or len(reference_points) < REACQUIRE_MIN_INLIERS:
            return None
        keypoints, descriptors = self.orb.detectAndCompute(gray, _NO_MASK)
        if descriptors is None or len(keypoints) < REACQUIRE_MIN_INLIERS:
            return None

        pairs = self.matcher.knnMatch(reference_descriptors, descriptors, k=2)
        good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < ORB_RATIO * p[1].distance]
        if len(good) < REACQUIRE_MIN_INLIERS:
            return None
        source = reference_points[[m.queryIdx for m in good]]
        target = np.array([keypoints[m.trainIdx].pt for m in good], dtype=np.float32)
        fit = _fit_homography(source, target, REACQUIRE_RANSAC_PX)
        if fit is None or np.count_nonzero(fit[1]) < REACQUIRE_MIN_INLIERS:
            return None
        return fit[0]

    def _correlation(self, gray: np.ndarray, homography: np.ndarray) -> float:
        """Return the normalised cross-correlation of the warped reference patch and the frame."""
        width, height = self.size_wh
        quad = _project(homography, self.reference.quad_px)
        roi = _bounding_roi(quad, 0, width, height)
        if roi is None:
            return -1.0
        x0, y0, x1, y1 = roi
        to_roi = _translation(-x0, -y0) @ homography
        size = (x1 - x0, y1 - y0)
        warped = cv2.warpPerspective(self.reference.gray, to_roi, size, flags=cv2.INTER_LINEAR)
        mask = cv2.warpPerspective(
            self.reference.valid_mask, to_roi, size, flags=cv2.INTER_NEAREST
        ).astype(bool)
        if np.count_nonzero(mask) < 100:
            return -1.0

        a = warped[mask].astype(np.float64)
        b = gray[y0:y1, x0:x1][mask].astype(np.float64)
        a -= a.mean()
        b -= b.mean()
        denominator = math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))
        return float(np.dot(a, b)) / denominator if denominator > 0 else -1.0


def _polygon_orientation(polygon: np.ndarray) -> float:
    x, y = polygon[:, 0], polygon[:, 1]
    return float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


class _TrackingRun:
    """Chunked reading and per-frame results of one `track_surface` call."""

    def __init__(
        self,
        source: FrameSource,
        frame_count: int,
        size_wh: tuple[int, int],
        chunk_frames: int,
        progress: Callable[[int, int], None] | None,
        should_stop: Callable[[], bool] | None,
    ) -> None:
        self.source = source
        self.frame_count = frame_count
        self.size_wh = size_wh
        self.chunk_frames = chunk_frames
        self.progress = progress
        self.should_stop = should_stop
        self.done = 0
        self.corners_norm = np.zeros((frame_count, 4, 2), dtype=np.float32)
        self.visible = np.zeros(frame_count, dtype=bool)

    def track_forward(self, start_frame: int, quad_px: np.ndarray) -> _Reference:
        reference: _Reference | None = None
        tracker: _DirectionTracker | None = None
        last_quad = quad_px
        for chunk_start in range(start_frame, self.frame_count, self.chunk_frames):
            chunk_stop = min(chunk_start + self.chunk_frames, self.frame_count)
            for index, gray in zip(
                range(chunk_start, chunk_stop), self._read(chunk_start, chunk_stop), strict=True
            ):
                if tracker is None:
                    reference = _Reference.build(gray, quad_px)
                    tracker = _DirectionTracker(reference)
                    self._store(index, quad_px, visible=True)
                    continue
                last_quad = self._store_step(tracker, gray, index, last_quad)
            self.report_progress()
        assert reference is not None
        return reference

    def track_backward(self, start_frame: int, reference: _Reference) -> None:
        tracker = _DirectionTracker(reference)
        last_quad = reference.quad_px
        for chunk_stop in range(start_frame, 0, -self.chunk_frames):
            chunk_start = max(0, chunk_stop - self.chunk_frames)
            grays = self._read(chunk_start, chunk_stop)
            for index in range(chunk_stop - 1, chunk_start - 1, -1):
                last_quad = self._store_step(tracker, grays[index - chunk_start], index, last_quad)
            self.report_progress()

    def report_progress(self) -> None:
        if self.progress is not None:
            self.progress(self.done, self.frame_count)

    def _store_step(
        self, tracker: _DirectionTracker, gray: np.ndarray, index: int, last_quad: np.ndarray
    ) -> np.ndarray:
        homography = tracker.step(gray, index)
        if homography is None:
            self._store(index, last_quad, visible=False)
            return last_quad
        quad = _project(homography, tracker.reference.quad_px)
        self._store(index, quad, visible=True)
        return quad

    def _store(self, index: int, quad_px: np.ndarray, *, visible: bool) -> None:
        width, height = self.size_wh
        corners = _px_to_norm(quad_px, width, height)
        if not visible:
            corners = np.clip(corners, 0.0, 1.0)
        self.corners_norm[index] = corners
        self.visible[index] = visible
        self.done += 1

    def _read(self, start: int, stop: int) -> list[np.ndarray]:
        if self.should_stop is not None and self.should_stop():
            raise Cancelled("Surface tracking was cancelled.")

        frames = self.source.read(start, stop)
        if len(frames) != stop - start:
            raise CorruptMedia(
                f"Could not decode frames {start}..{stop - 1}: the source returned "
                f"{len(frames)} of {stop - start} frames.",
                details={"start": start, "stop": stop, "returned": len(frames)},
            )
        return [self._to_gray(frame) for frame in frames]

    def _to_gray(self, frame: np.ndarray) -> np.ndarray:
        width, height = self.size_wh
        if frame.shape != (height, width, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"Frame source returned a {frame.dtype} frame of shape {frame.shape}, but "
                f"expected uint8 ({height}, {width}, 3)."
            )
        return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
