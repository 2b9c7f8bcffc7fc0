"""REST: /api/videos — list, details, upload, delete."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from mp4e.auth import Principal, Scope
from mp4e.errors import InvalidParameter
from mp4e.rest_compat.deps import get_principal, get_runtime
from mp4e.rest_compat.multipart import parse_upload
from mp4e.rest_compat.views import video_details, video_summary
from mp4e.runtime import Runtime
from mp4e.services import metadata as metadata_service
from mp4e.services import videos as video_service

router = APIRouter(prefix="/api/videos", tags=["videos"])

RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


def _parse_bool(name: str, raw: str | None) -> bool:
    value = (raw or "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidParameter(
        f"The '{name}' field must be true or false.", field=name, details={"provided": raw}
    )


@router.get("")
async def list_videos(
    runtime: RuntimeDep,
    principal: PrincipalDep,
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(alias="pageSize", ge=1, le=100)] = 20,
) -> dict[str, Any]:
    """List the caller's videos, newest first."""
    result = await video_service.list_videos(runtime, principal, page=page, page_size=page_size)
    return {
        "videos": [video_summary(runtime, video) for video in result.videos],
        "total": result.total,
        "page": result.page,
        "pageSize": result.page_size,
    }


@router.post("/upload", status_code=201)
async def upload_video(
    request: Request, runtime: RuntimeDep, principal: PrincipalDep
) -> JSONResponse:
    """Upload a video (multipart: `file`, optional `name`, `autoProcess`)."""
    principal.require(Scope.VIDEOS_WRITE)
    form = await parse_upload(request, runtime.storage, runtime.settings.max_upload_bytes)
    try:
        if form.file_path is None:
            raise InvalidParameter("The 'file' field is missing.", field="file")
        auto_process = _parse_bool("autoProcess", form.fields.get("autoProcess"))
    except BaseException:
        if form.file_path is not None:
            form.file_path.unlink(missing_ok=True)
        raise
    video = await video_service.create_video(
        runtime,
        principal,
        form.file_path,
        name=form.fields.get("name"),
        original_filename=form.file_name,
        auto_process=auto_process,
    )
    body = {"id": video.id, "name": video.name, "status": video.status, "uploadProgress": 100}
    return JSONResponse(body, status_code=201)


@router.get("/{video_id}", response_class=Response)
async def get_video(video_id: str, request: Request) -> Response:
    """Details of one video, with its current metadata document (tracks left out)."""
    runtime = get_runtime(request)
    body = await video_details_body(runtime, get_principal(request), video_id)
    return Response(body, media_type="application/json")


async def video_details_body(runtime: Runtime, principal: Principal, video_id: str) -> bytes:
    """Return the JSON of a video's details, from the view cache when it is fresh.

    The cache holds the account of each video, so a hit applies the same scope and ownership
    rules as a database read. A view is stored only if no change was reported while it was
    being built, so an invalidation cannot be overtaken by a slower read.
    """
    principal.require(Scope.VIDEOS_READ)
    cached = runtime.video_views.get(video_id)
    if cached is not None:
        account_id, body = cached
        if account_id == principal.account_id:
            return body
    generation = runtime.view_generation
    video = await video_service.get_video(runtime, principal, video_id)
    document, _ = await metadata_service.read_document(runtime, video, with_tracks=False)
    body = json.dumps(video_details(runtime, video, document), separators=(",", ":")).encode()
    if runtime.view_generation == generation:
        runtime.video_views.put(video_id, (video.account_id, body))
    return body


@router.delete("/{video_id}")
async def delete_video(
    video_id: str, runtime: RuntimeDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Delete a video with its metadata, jobs, exports and files."""
    await video_service.delete_video(runtime, principal, video_id)
    return {"success": True}
