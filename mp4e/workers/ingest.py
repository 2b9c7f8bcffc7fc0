"""Ingest: probe an accepted upload, make its thumbnail and its first metadata version."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from mp4e.metadata.document import new_document
from mp4e.models import Video
from mp4e.models.job import JobKind
from mp4e.models.video import VideoStatus
from mp4e.services import jobs as job_service
from mp4e.services import metadata_store
from mp4e.services.videos import source_path, touch_video
from mp4e.vision.probe import VideoProbe, probe_video
from mp4e.vision.thumbnail import write_thumbnail
from mp4e.workers.runner import JobContext, register_handler

logger = logging.getLogger(__name__)

DEFAULT_PROCESS_PARAMS: dict[str, Any] = {
    "fps": 5,
    "confidence": 0.25,
    "labels": None,
    "enableClip": False,
}


def video_details(probe: VideoProbe) -> dict[str, Any]:
    """The read-only `videoDetails` of the metadata document, from the probe."""
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

    details = video_details(probe)
    async with runtime.database.serialized() as session:
        current = await session.get(Video, video.id, with_for_update=not runtime.database.is_sqlite)
        if current is None:
            return {"skipped": "video deleted"}
        if current.current_version == 0:
            await metadata_store.add_version(
                session,
                video_id=video.id,
                version=1,
                document=new_document(details),
                description="Initial version from the upload",
                author="system",
                previous=None,
            )
            current.current_version = 1
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
