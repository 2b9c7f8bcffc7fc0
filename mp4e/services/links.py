"""Absolute, signed, expiring links to a video's files."""

from __future__ import annotations

from mp4e.models import Video
from mp4e.runtime import Runtime
from mp4e.signing import sign_path


def signed_url(runtime: Runtime, path: str) -> tuple[str, int]:
    """Return the absolute signed URL of `path` and its expiry (Unix time)."""
    settings = runtime.settings
    signed, expires_at = sign_path(settings.secret_key, path, settings.export_url_ttl_s)
    return settings.public_url.rstrip("/") + signed, expires_at


def stream_url(runtime: Runtime, video: Video) -> str:
    return signed_url(runtime, f"/files/videos/{video.id}/{video.file_name}")[0]


def thumbnail_url(runtime: Runtime, video: Video) -> str | None:
    if not video.has_thumbnail:
        return None
    return signed_url(runtime, f"/files/videos/{video.id}/thumbnail.jpg")[0]
