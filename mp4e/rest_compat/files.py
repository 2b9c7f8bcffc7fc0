"""Signed file downloads: video streams, thumbnails and exports, with HTTP Range."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse

from mp4e.errors import NotFound
from mp4e.rest_compat.deps import get_runtime
from mp4e.runtime import Runtime
from mp4e.services.exports import signed_resource
from mp4e.signing import verify_path

router = APIRouter(prefix="/files", tags=["files"])

RuntimeDep = Annotated[Runtime, Depends(get_runtime)]

_MEDIA_TYPES = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".avi": "video/x-msvideo",
    ".jpg": "image/jpeg",
    ".json": "application/json",
}


def _serve(
    runtime: Runtime,
    request: Request,
    directory: str,
    video_id: str,
    name: str,
    expires: str | None,
    signature: str | None,
    filename: str | None = None,
) -> FileResponse:
    resource = signed_resource(request.url.path, filename)
    verify_path(runtime.settings.secret_key, resource, expires, signature)
    base = runtime.storage.videos_dir if directory == "videos" else runtime.storage.exports_dir
    path = (base / video_id / name).resolve()
    if path.parent != (base / video_id).resolve() or not path.is_file():
        raise NotFound(
            "The file was not found; it may have been deleted.", details={"id": video_id}
        )
    media_type = _MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")
    return FileResponse(
        path,
        media_type=media_type,
        headers={"Cache-Control": "private, max-age=300"},
        filename=filename,
        content_disposition_type="attachment",
    )


@router.get("/videos/{video_id}/{name}")
async def video_file(
    video_id: str,
    name: str,
    request: Request,
    runtime: RuntimeDep,
    expires: Annotated[str | None, Query()] = None,
    signature: Annotated[str | None, Query()] = None,
) -> FileResponse:
    """Serve a video's source file or thumbnail by signed URL (no API key)."""
    return _serve(runtime, request, "videos", video_id, name, expires, signature)


@router.get("/exports/{video_id}/{name}")
async def export_file(
    video_id: str,
    name: str,
    request: Request,
    runtime: RuntimeDep,
    expires: Annotated[str | None, Query()] = None,
    signature: Annotated[str | None, Query()] = None,
    filename: Annotated[str | None, Query()] = None,
) -> FileResponse:
    """Serve an export file by signed URL, without an API key.

    `filename`, covered by the signature, names the saved download.
    """
    return _serve(runtime, request, "exports", video_id, name, expires, signature, filename)
