"""GraphQL types, queries and mutations for videos."""

from __future__ import annotations

import asyncio
from datetime import datetime

import strawberry
from strawberry.file_uploads import Upload

from mp4e.errors import InvalidParameter
from mp4e.models import Video as VideoRow
from mp4e.schema.context import Info
from mp4e.schema.scalars import JSON
from mp4e.services import metadata as metadata_service
from mp4e.services import videos as video_service
from mp4e.services.links import stream_url, thumbnail_url
from mp4e.services.uploads import copy_file_object, remove_quietly


@strawberry.type(description="An uploaded video.")
class Video:
    row: strawberry.Private[VideoRow]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.row.id)

    @strawberry.field
    def name(self) -> str:
        return self.row.name

    @strawberry.field(description="uploading, ready, processing, processed or failed.")
    def status(self) -> str:
        return self.row.status

    @strawberry.field(description="Duration of the video stream in seconds.")
    def duration(self) -> float | None:
        return self.row.duration_s

    @strawberry.field(description="Displayed width in pixels (after rotation).")
    def width(self) -> int | None:
        return self.row.width

    @strawberry.field(description="Displayed height in pixels (after rotation).")
    def height(self) -> int | None:
        return self.row.height

    @strawberry.field(description="Average frame rate: decoded frames divided by duration.")
    def fps(self) -> float | None:
        return self.row.fps

    @strawberry.field(description="Size of the uploaded file in bytes.")
    def file_size(self) -> float:
        return float(self.row.size_bytes)

    @strawberry.field(description="Signed URL of the source file; supports HTTP Range.")
    def stream_url(self, info: Info) -> str:
        return stream_url(info.context.runtime, self.row)

    @strawberry.field(description="Signed URL of the JPEG thumbnail, once ingest made it.")
    def thumbnail(self, info: Info) -> str | None:
        return thumbnail_url(info.context.runtime, self.row)

    @strawberry.field(description="Why ingest failed, when it did.")
    def error(self) -> str | None:
        return self.row.error

    @strawberry.field
    def warnings(self) -> list[str]:
        return list(self.row.warnings)

    @strawberry.field(description="The current metadata document, without per-frame tracks.")
    async def metadata(self, info: Info) -> JSON:
        info.context.principal.require("metadata:read")
        document, _ = await metadata_service.read_document(
            info.context.runtime, self.row, with_tracks=False
        )
        return JSON(document)

    @strawberry.field
    def created_at(self) -> datetime:
        return self.row.created_at

    @strawberry.field
    def updated_at(self) -> datetime:
        return self.row.updated_at


@strawberry.type
class VideoPage:
    videos: list[Video]
    total: int
    page: int
    page_size: int


@strawberry.type
class UploadResult:
    id: strawberry.ID
    name: str
    status: str
    upload_progress: int


@strawberry.type
class SuccessResult:
    success: bool


@strawberry.type
class VideoQuery:
    @strawberry.field(description="The caller's videos, newest first.")
    async def videos(self, info: Info, page: int = 1, page_size: int = 20) -> VideoPage:
        context = info.context
        result = await video_service.list_videos(
            context.runtime, context.principal, page=page, page_size=page_size
        )
        return VideoPage(
            videos=[Video(row=row) for row in result.videos],
            total=result.total,
            page=result.page,
            page_size=result.page_size,
        )

    @strawberry.field(description="One video of the caller's account.")
    async def video(self, info: Info, id: strawberry.ID) -> Video:
        context = info.context
        return Video(row=await video_service.get_video(context.runtime, context.principal, id))


@strawberry.type
class VideoMutation:
    @strawberry.mutation(description="Upload a video (GraphQL multipart request).")
    async def upload_video(
        self, info: Info, file: Upload, name: str | None = None, auto_process: bool = False
    ) -> UploadResult:
        context = info.context
        runtime = context.runtime
        principal = context.principal
        principal.require("videos:write")
        source = getattr(file, "file", None)
        if source is None:
            raise InvalidParameter("The 'file' variable must be an uploaded file.", field="file")
        incoming = None
        try:
            incoming = await asyncio.to_thread(
                copy_file_object, runtime.storage, source, runtime.settings.max_upload_bytes
            )
        except BaseException:
            remove_quietly(incoming)
            raise
        video = await video_service.create_video(
            runtime,
            principal,
            incoming,
            name=name,
            original_filename=getattr(file, "filename", None),
            auto_process=auto_process,
        )
        return UploadResult(
            id=strawberry.ID(video.id), name=video.name, status=video.status, upload_progress=100
        )

    @strawberry.mutation(description="Delete a video with its metadata, jobs, exports and files.")
    async def delete_video(self, info: Info, id: strawberry.ID) -> SuccessResult:
        await video_service.delete_video(info.context.runtime, info.context.principal, id)
        return SuccessResult(success=True)
