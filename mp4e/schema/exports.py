"""GraphQL: the exportVideo mutation, a signed download of the video with its metadata."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry

from mp4e.schema.context import Info
from mp4e.services import exports as export_service


@strawberry.enum(
    description=(
        "What an export contains. MP4E: the video file with the metadata document embedded. "
        "JSON: the metadata document as a JSON file."
    )
)
class ExportFormat(Enum):
    MP4E = "mp4e"
    JSON = "json"


@strawberry.type(description="A signed download of an export file.")
class ExportResult:
    download_url: str = strawberry.field(
        description="Absolute URL that needs no API key and supports HTTP Range."
    )
    expires_at: datetime = strawberry.field(description="When the download URL stops working.")
    file_size: float = strawberry.field(
        description="Exact size of the file in bytes (a Float, because files may exceed 2 GiB)."
    )


@strawberry.type
class ExportMutation:
    @strawberry.mutation(
        description=(
            "Export the current metadata version, embedded in the video file or as JSON. "
            "The file is built once per version and reused."
        )
    )
    async def export_video(
        self, info: Info, video_id: strawberry.ID, format: ExportFormat = ExportFormat.MP4E
    ) -> ExportResult:
        context = info.context
        link = await export_service.export_video(
            context.runtime, context.principal, video_id, format.value
        )
        return ExportResult(
            download_url=link.download_url,
            expires_at=link.expires_at,
            file_size=float(link.size_bytes),
        )
