"""REST: GET /api/videos/:id/export — a signed download of the video with its metadata."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from mp4e.auth import Principal
from mp4e.models.base import isoformat_z
from mp4e.rest_compat.deps import get_principal, get_runtime
from mp4e.runtime import Runtime
from mp4e.services import exports as export_service

router = APIRouter(prefix="/api/videos", tags=["exports"])

RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]


@router.get("/{video_id}/export")
async def export_video(
    video_id: str,
    runtime: RuntimeDep,
    principal: PrincipalDep,
    export_format: Annotated[
        str | None,
        Query(alias="format", description="mp4e (default): the video file; json: the document."),
    ] = None,
) -> dict[str, Any]:
    """Export the current metadata version, embedded in the video file or as JSON."""
    link = await export_service.export_video(runtime, principal, video_id, export_format)
    return {
        "downloadUrl": link.download_url,
        "expiresAt": isoformat_z(link.expires_at),
        "fileSize": link.size_bytes,
    }
