"""Ingest: probe an accepted upload, make its thumbnail and its first metadata version."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from mp4e.errors import MP4EError
from mp4e.metadata.document import new_document, validate_document
from mp4e.models import Video
from mp4e.models.job import JobKind
from mp4e.models.video import VideoStatus
from mp4e.services import jobs as job_service
from mp4e.services import metadata_store
from mp4e.services.videos import source_path, touch_video
from mp4e.vision.mp4box import read_metadata
from mp4e.vision.probe import VideoProbe, probe_video
from mp4e.vision.thumbnail import write_thumbnail
from mp4e.workers.runner import JobContext, register_handler

logger = logging.getLogger(__name__)

# ffprobe's format names of the containers that can hold an embedded MP4E document.
_ISO_BMFF_FORMATS = frozenset({"mov", "mp4"})

DEFAULT_PROCESS_PARAMS: dict[str, Any] = {
    "fps": 5,
    "confidence": 0.25,
    "labels": None,
    "enableClip": False,
}


def video_details(probe: VideoProbe) -> dict[str, Any]:
    """Build the read-only `videoDetails` of the metadata document from the probe."""
    return {
        "totalFrames": probe.frame_count,
        "fps": round(probe.fps, 6),
        "width": probe.width,
        "height": probe.height,
        "duration": round(probe.duration_s, 6),
        "variableFrameRate": probe.variable_frame_rate,
        "codec": probe.video_codec,
        "rotation": probe.rotation_deg,
    }


@dataclasses.dataclass(frozen=True)
class InitialDocument:
    """The first metadata version of an uploaded video, and a warning for the video."""

    document: dict[str, Any]
    description: str
    warning: str | None = None


def initial_document(path: Path, probe: VideoProbe) -> InitialDocument:
    """Return version 1: the document embedded in an exported file, or a new empty one.

    An embedded document keeps everything except `videoDetails`, which comes from the new
    probe, and top-level keys it lacks get their empty defaults. A damaged box or a document
    that fails validation does not fail the ingest. The video then starts with an empty
    document and a warning.
    """
    details = video_details(probe)
    fresh = new_document(details)
    if not _ISO_BMFF_FORMATS & set(probe.container.split(",")):
        return InitialDocument(fresh, "Initial version from the upload")

    try:
        embedded = read_metadata(path)
    except MP4EError as exc:
        return _fresh_with_warning(fresh, exc.message)
    if embedded is None:
        return InitialDocument(fresh, "Initial version from the upload")

    imported = {**fresh, **embedded, "videoDetails": details}
    try:
        validate_document(imported)
    except (MP4EError, ValueError, RecursionError) as exc:
        where = f" at '{exc.field}'" if isinstance(exc, MP4EError) and exc.field else ""
        reason = exc.message if isinstance(exc, MP4EError) else str(exc)
        return _fresh_with_warning(
            fresh, f"The embedded MP4E metadata is not a valid document{where}: {reason}"
        )
    return InitialDocument(imported, "Imported from the MP4E metadata embedded in the upload")


def _fresh_with_warning(fresh: dict[str, Any], problem: str) -> InitialDocument:
    warning = (
        f"{problem} The embedded metadata was not imported, so the video starts with an "
        "empty document."
    )
    return InitialDocument(fresh, "Initial version from the upload", warning)


@register_handler(JobKind.INGEST)
async def ingest(context: JobContext) -> dict[str, Any]:
    runtime = context.runtime
    async with runtime.database.session() as session:
        video = await session.get(Video, context.job.video_id)
    if video is None:
        return {"skipped": "video deleted"}
    path = source_path(runtime, video)

    try:
        probe = await context.run_blocking(probe_video, path)
    except Exception as exc:
        message = getattr(exc, "message", str(exc))
        await touch_video(runtime, video.id, status=VideoStatus.FAILED, error=message)
        raise
    thumbnail = runtime.storage.thumbnail_path(video.id)
    has_thumbnail = True
    try:
        await context.run_blocking(write_thumbnail, path, thumbnail)
    except Exception:
        logger.warning(
            "Thumbnail of video %s failed; the video stays usable", video.id, exc_info=True
        )
        has_thumbnail = False

    initial = await context.run_blocking(initial_document, path, probe)
    if initial.warning is not None:
        logger.warning("Video %s: %s", video.id, initial.warning)
    async with runtime.database.serialized() as session:
        current = await session.get(Video, video.id, with_for_update=not runtime.database.is_sqlite)
        if current is None:
            return {"skipped": "video deleted"}
        if current.current_version == 0:
            await metadata_store.add_version(
                session,
                video_id=video.id,
                version=1,
                document=initial.document,
                description=initial.description,
                author="system",
                previous=None,
            )
            current.current_version = 1
            if initial.warning is not None:
                current.warnings = [*current.warnings, initial.warning]
        current.duration_s = probe.duration_s
        current.width = probe.width
        current.height = probe.height
        current.fps = probe.fps
        current.frame_count = probe.frame_count
        current.probe = dataclasses.asdict(probe)
        current.has_thumbnail = has_thumbnail
        current.status = VideoStatus.READY
        session.add(current)
    logger.info(
        "Ingested video %s: %d frames, %.2f s", video.id, probe.frame_count, probe.duration_s
    )

    if current.auto_process:
        await job_service.create_job(
            runtime, current, JobKind.PROCESS, dict(DEFAULT_PROCESS_PARAMS)
        )
    return {"frames": probe.frame_count}
