"""Videos: upload, list, read, delete. Shared by the GraphQL resolvers and the REST layer."""

from __future__ import annotations

import asyncio
import logging
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, func, select
from sqlmodel import col

from mp4e.auth import Principal, Scope
from mp4e.db import mark_changed
from mp4e.errors import EmptyFile, InvalidParameter, NotFound
from mp4e.models import Blob, ExportFile, Job, MetadataVersion, Video
from mp4e.models.base import utcnow
from mp4e.models.job import ACTIVE_JOB_STATUSES, JobKind
from mp4e.runtime import Runtime
from mp4e.services import jobs as job_service
from mp4e.services.metadata_store import blob_cache
from mp4e.vision.probe import validate_media

logger = logging.getLogger(__name__)

MAX_PAGE_SIZE = 100


@dataclass(frozen=True)
class VideoPage:
    videos: list[Video]
    total: int
    page: int
    page_size: int


def _source_file_name(original_filename: str | None) -> str:
    suffix = Path(original_filename or "").suffix.lower()
    if not suffix or len(suffix) > 6 or not suffix[1:].isalnum():
        suffix = ".bin"
    return f"source{suffix}"


async def create_video(
    runtime: Runtime,
    principal: Principal,
    incoming: Path,
    *,
    name: str | None,
    original_filename: str | None,
    auto_process: bool,
) -> Video:
    """Adopt a fully received upload as a new video and queue its ingest.

    The file is checked by content first; a file that is not decodable video raises
    `EmptyFile`, `NoVideoStream` or `CorruptMedia` and is deleted, so nothing remains.
    """
    try:
        principal.require(Scope.VIDEOS_WRITE)
        if auto_process:
            principal.require(Scope.PROCESSING)
        size_bytes = incoming.stat().st_size
        if size_bytes == 0:
            raise EmptyFile("The uploaded file is empty.", field="file")
        await asyncio.to_thread(validate_media, incoming)
    except BaseException:
        incoming.unlink(missing_ok=True)
        raise

    display_name = (name or "").strip() or Path(original_filename or "video").stem or "video"
    if len(display_name) > 255:
        incoming.unlink(missing_ok=True)
        raise InvalidParameter(
            "The name must be at most 255 characters.",
            field="name",
            details={"max": 255, "provided": len(display_name)},
        )
    video = Video(
        account_id=principal.account_id,
        name=display_name,
        original_filename=original_filename,
        file_name=_source_file_name(original_filename),
        size_bytes=size_bytes,
        auto_process=auto_process,
    )
    runtime.storage.adopt_upload(incoming, video.id, video.file_name)
    try:
        async with runtime.database.serialized() as session:
            session.add(video)
    except BaseException:
        runtime.storage.delete_video_files(video.id)
        raise
    await job_service.create_job(runtime, video, JobKind.INGEST, {})
    logger.info(
        "Received video %s (%d bytes) for account %s", video.id, size_bytes, video.account_id
    )
    return video


async def list_videos(
    runtime: Runtime, principal: Principal, *, page: int = 1, page_size: int = 20
) -> VideoPage:
    principal.require(Scope.VIDEOS_READ)
    if page < 1:
        raise InvalidParameter(
            "The 'page' parameter must be at least 1.",
            field="page",
            details={"min": 1, "provided": page},
        )
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidParameter(
            f"The 'pageSize' parameter must be between 1 and {MAX_PAGE_SIZE}.",
            field="pageSize",
            details={"min": 1, "max": MAX_PAGE_SIZE, "provided": page_size},
        )
    async with runtime.database.session() as session:
        total = (
            await session.execute(
                select(func.count())
                .select_from(Video)
                .where(col(Video.account_id) == principal.account_id)
            )
        ).scalar_one()
        rows = await session.execute(
            select(Video)
            .where(col(Video.account_id) == principal.account_id)
            .order_by(col(Video.created_at).desc(), col(Video.id).desc())
            .offset((page - 1) * page_size)
            .limit(page_size)
        )
        videos = list(rows.scalars().all())
    return VideoPage(videos=videos, total=total, page=page, page_size=page_size)


async def get_video(
    runtime: Runtime, principal: Principal, video_id: str, *, scope: str = Scope.VIDEOS_READ
) -> Video:
    """Load a video of the caller's account; another account's video is `NotFound`."""
    principal.require(scope)
    async with runtime.database.session() as session:
        video = await session.get(Video, video_id)
    if video is None or video.account_id != principal.account_id:
        raise NotFound(f"Video '{video_id}' was not found.", field="id", details={"id": video_id})
    return video


async def delete_video(runtime: Runtime, principal: Principal, video_id: str) -> None:
    """Delete a video with its versions, blobs, exports, jobs and files.

    A running job notices within a heartbeat that its row is gone and stops.
    """
    video = await get_video(runtime, principal, video_id, scope=Scope.VIDEOS_WRITE)
    async with runtime.database.serialized() as session:
        active = await session.execute(
            select(col(Job.id)).where(
                col(Job.video_id) == video.id, col(Job.status).in_(ACTIVE_JOB_STATUSES)
            )
        )
        active_ids = list(active.scalars().all())
        for table in (ExportFile, MetadataVersion, Blob, Job):
            await session.execute(delete(table).where(col(table.video_id) == video.id))
        await session.execute(delete(Video).where(col(Video.id) == video.id))
        mark_changed(session, video.id)
    blob_cache.drop_video(video.id)
    runtime.storage.delete_video_files(video.id)
    logger.info("Deleted video %s (stopped jobs: %s)", video.id, ", ".join(active_ids) or "none")


def source_path(runtime: Runtime, video: Video) -> Path:
    return runtime.storage.source_path(video.id, video.file_name)


def source_media_type(video: Video) -> str:
    guessed, _ = mimetypes.guess_type(video.file_name)
    return guessed or "application/octet-stream"


async def touch_video(runtime: Runtime, video_id: str, **changes: object) -> Video | None:
    """Update columns of a video and its `updated_at`; None when it was deleted meanwhile."""
    async with runtime.database.serialized() as session:
        video = await session.get(Video, video_id)
        if video is None:
            return None
        for key, value in changes.items():
            setattr(video, key, value)
        video.updated_at = utcnow()
        session.add(video)
    return video
