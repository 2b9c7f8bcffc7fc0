"""The surface job: track a marked plane through the video and store it as a new version."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from mp4e.errors import Cancelled, MP4EError
from mp4e.metadata.document import CORNER_MAX, CORNER_MIN, build_surface_track, summarize_track
from mp4e.models import Job, Video
from mp4e.models.base import utcnow
from mp4e.models.job import JobKind
from mp4e.runtime import Runtime
from mp4e.services import metadata_store
from mp4e.services.surfaces import next_surface_id
from mp4e.services.videos import source_path
from mp4e.vision.decode import VideoFrameSource
from mp4e.vision.probe import VideoProbe
from mp4e.vision.surface import SurfaceTrack, track_surface
from mp4e.workers.runner import JobContext, register_handler

logger = logging.getLogger(__name__)


@register_handler(JobKind.SURFACE)
async def track_surface_job(context: JobContext) -> dict[str, Any]:
    """Track the surface of the job's parameters and add it to a new metadata version."""
    runtime = context.runtime
    async with runtime.database.session() as session:
        video = await session.get(Video, context.job.video_id)
    if video is None:
        return {"skipped": "video deleted"}

    started = time.monotonic()
    try:
        track = await context.run_blocking(_track, context, video, context.job.params)
    except Cancelled:
        raise
    except MP4EError as exc:
        # The runner keeps only the message of a failure. The code, field and details go
        # into the job result, so that a waiting request can raise the same error.
        # NOTE: this relies on the runner applying reported fields after it clears `result`.
        context.report(result={"error": {"message": exc.message, **exc.extensions}})
        raise
    context.check_cancel()
    tracking_s = time.monotonic() - started

    stored = await _store_surface(runtime, context.job, track)
    if stored is None:
        return {"skipped": "video deleted"}
    object_id, version, tracked_frames = stored
    logger.info(
        "Stored surface %s of video %s in version %d: visible on %d of %d frames (job %s)",
        object_id,
        video.id,
        version,
        tracked_frames,
        track.frames.size,
        context.job.id,
    )
    return {
        "objectId": object_id,
        "trackedFrames": tracked_frames,
        "totalFrames": int(track.frames.size),
        "version": version,
        "trackingSeconds": round(tracking_s, 3),
    }


def _track(context: JobContext, video: Video, params: dict[str, Any]) -> SurfaceTrack:
    path = source_path(context.runtime, video)
    probe = VideoProbe(**video.probe) if video.probe else None
    source = VideoFrameSource(path, probe=probe, device=context.runtime.settings.device)
    try:
        start_frame = int(params["frame"])
        context.report(total_frames=source.frame_count, current_frame=start_frame, progress=0.0)
        return track_surface(
            source,
            start_frame,
            np.array([[c["x"], c["y"]] for c in params["corners"]], dtype=np.float64),
            progress=_progress_reporter(context, start_frame),
            should_stop=context.should_stop,
        )
    finally:
        source.close()


def _progress_reporter(context: JobContext, start_frame: int) -> Callable[[int, int], None]:
    """Turn the tracker's frame counts into job progress, frame index and ETA."""
    started = time.monotonic()

    def report(done: int, total: int) -> None:
        # Tracking runs from the marked frame to the end, then from it back to frame 0.
        forward = total - start_frame
        current = start_frame + done - 1 if done <= forward else start_frame - (done - forward)
        elapsed = time.monotonic() - started
        context.report(
            progress=round(min(done / total, 0.99) * 100, 1),
            current_frame=max(current, 0),
            total_frames=total,
            eta_s=elapsed / done * (total - done) if done else None,
        )

    return report


def storable_corners(track: SurfaceTrack) -> tuple[np.ndarray, np.ndarray]:
    """Return the corners and visibility to store, within the document's corner range.

    The tracker may place a corner of a visible surface up to two frame sizes outside the
    frame, but a document stores corners in CORNER_MIN..CORNER_MAX. A visible frame with a
    corner beyond that range is stored as not visible, with its corners clipped to 0..1 like
    other hidden frames, because clipping only that corner would store a wrong quad.
    """
    corners = track.corners_norm.astype(np.float64)
    visible = track.visible.copy()
    beyond = visible & ((corners < CORNER_MIN) | (corners > CORNER_MAX)).any(axis=(1, 2))
    if beyond.any():
        logger.warning(
            "Hid the surface on %d frames where a corner lay beyond %g..%g of the frame",
            int(beyond.sum()),
            CORNER_MIN,
            CORNER_MAX,
        )
        visible[beyond] = False
        corners[beyond] = np.clip(corners[beyond], 0.0, 1.0)
    return corners, visible


def surface_object(object_id: str, name: str, track: SurfaceTrack) -> dict[str, Any]:
    """Build the document object of a tracked surface, summary fields included.

    `confidence` is null, because the tracker gives no score, and `label` is "surface".
    """
    corners, visible = storable_corners(track)
    packed = build_surface_track(track.frames, track.times_s, corners, visible)
    summary = summarize_track(packed, "surface")
    return {
        "id": object_id,
        "name": name,
        "label": "surface",
        "userLabel": None,
        "customData": {},
        "kind": "surface",
        "source": "surface",
        "confidence": None,
        "firstFrame": summary["firstFrame"],
        "lastFrame": summary["lastFrame"],
        "frameCount": summary["frameCount"],
        "track": packed,
    }


async def _store_surface(
    runtime: Runtime, job: Job, track: SurfaceTrack
) -> tuple[str, int, int] | None:
    """Add the surface to the current document as a new version.

    Returns the object id, the new version and the number of visible frames, or None when the
    video was deleted meanwhile. The reserved id is used unless an object took it since the
    request, e.g. a manual object added by a patch; the next free `surface_NNN` is used then.
    """
    params = job.params
    async with runtime.database.serialized() as session:
        video = await session.get(
            Video, job.video_id, with_for_update=not runtime.database.is_sqlite
        )
        if video is None:
            return None
        previous = await metadata_store.get_version_row(session, video.id, None)
        editable = await metadata_store.load_editable(session, previous)
        objects = editable.document.get("objects", {})

        object_id = str(params["objectId"])
        if object_id in objects:
            object_id = next_surface_id(objects)
            logger.warning(
                "Surface id %s of job %s was taken meanwhile; stored as %s instead",
                params["objectId"],
                job.id,
                object_id,
            )
        surface = surface_object(object_id, str(params["name"]), track)
        document = {**editable.document, "objects": {**objects, object_id: surface}}
        row = await metadata_store.add_version(
            session,
            video_id=video.id,
            version=video.current_version + 1,
            document=document,
            description=(
                f"Tracked surface {object_id} ('{params['name']}') from frame {params['frame']}: "
                f"visible on {surface['frameCount']} of {track.frames.size} frames"
            ),
            author=f"job:{job.id}",
            previous=previous,
            base=editable,
        )
        video.current_version = row.version
        video.updated_at = utcnow()
        session.add(video)
    return object_id, row.version, surface["frameCount"]
