"""Metadata documents: read, patch, versions, restore. Shared by GraphQL and REST."""

from __future__ import annotations

from typing import Any

from mp4e.auth import Principal, Scope
from mp4e.models import MetadataVersion, Video
from mp4e.runtime import Runtime
from mp4e.services import metadata_store
from mp4e.services.videos import get_video


async def read_document(
    runtime: Runtime, video: Video, *, version: int | None = None, with_tracks: bool = True
) -> tuple[dict[str, Any], MetadataVersion | None]:
    """Return the document of `version` (current when None) of a video already authorised.

    A video still being ingested has no version yet: its document is empty and the row None.
    """
    if video.current_version == 0 and version is None:
        return {}, None
    async with runtime.database.session() as session:
        row = await metadata_store.get_version_row(session, video.id, version)
        document = await metadata_store.load_document(session, row, with_tracks=with_tracks)
    return document, row


async def get_document(
    runtime: Runtime, principal: Principal, video_id: str, *, version: int | None = None
) -> tuple[dict[str, Any], MetadataVersion | None]:
    video = await get_video(runtime, principal, video_id, scope=Scope.METADATA_READ)
    return await read_document(runtime, video, version=version)
