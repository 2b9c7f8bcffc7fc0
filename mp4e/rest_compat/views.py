"""The documented JSON shapes of videos, built from the domain objects."""

from __future__ import annotations

from typing import Any

from mp4e.models import Video
from mp4e.models.base import isoformat_z
from mp4e.runtime import Runtime
from mp4e.services.links import stream_url, thumbnail_url


def video_summary(runtime: Runtime, video: Video) -> dict[str, Any]:
    return {
        "id": video.id,
        "name": video.name,
        "status": video.status,
        "duration": video.duration_s,
        "thumbnail": thumbnail_url(runtime, video),
        "createdAt": isoformat_z(video.created_at),
        "updatedAt": isoformat_z(video.updated_at),
    }


def video_details(runtime: Runtime, video: Video, metadata: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": video.id,
        "name": video.name,
        "status": video.status,
        "duration": video.duration_s,
        "width": video.width,
        "height": video.height,
        "fps": video.fps,
        "fileSize": video.size_bytes,
        "streamUrl": stream_url(runtime, video),
        "thumbnail": thumbnail_url(runtime, video),
        "metadata": metadata,
        "error": video.error,
        "warnings": video.warnings,
        "createdAt": isoformat_z(video.created_at),
        "updatedAt": isoformat_z(video.updated_at),
    }
