"""REST: /api/videos/:id/objects — list, update and delete tracked objects."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from mp4e.auth import Principal, Scope
from mp4e.rest_compat.deps import get_principal, get_runtime
from mp4e.rest_compat.metadata import read_json_object, version_headers
from mp4e.runtime import Runtime
from mp4e.services import objects as object_service
from mp4e.services import videos as video_service
from mp4e.services.objects import ObjectSummary

router = APIRouter(prefix="/api/videos", tags=["objects"])

RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]


def object_view(summary: ObjectSummary) -> dict[str, Any]:
    """Build the documented summary of an object. Tracks come with the metadata document."""
    return {
        "id": summary.id,
        "label": summary.label,
        "userLabel": summary.user_label,
        "name": summary.name,
        "confidence": summary.confidence,
        "firstFrame": summary.first_frame,
        "lastFrame": summary.last_frame,
        "frameCount": summary.frame_count,
        "kind": summary.kind,
        "source": summary.source,
    }


@router.get("/{video_id}/objects")
async def list_objects(
    video_id: str, runtime: RuntimeDep, principal: PrincipalDep
) -> dict[str, Any]:
    """List the tracked objects of the current version, summarized from their tracks."""
    summaries = await object_service.list_objects(runtime, principal, video_id)
    return {"objects": [object_view(summary) for summary in summaries]}


@router.patch("/{video_id}/objects/{object_id}")
async def update_object(
    video_id: str, object_id: str, request: Request, runtime: RuntimeDep, principal: PrincipalDep
) -> JSONResponse:
    """Set `userLabel`, `name` or `customData` (merged; null deletes a key) of an object."""
    await video_service.get_video(runtime, principal, video_id, scope=Scope.METADATA_WRITE)
    changes = await read_json_object(request, runtime)

    result = await object_service.update_object(runtime, principal, video_id, object_id, changes)
    view = {**object_view(result.object), "customData": result.object.custom_data}
    return JSONResponse({"success": True, "object": view}, headers=version_headers(result.version))


@router.delete("/{video_id}/objects/{object_id}")
async def delete_object(
    video_id: str, object_id: str, runtime: RuntimeDep, principal: PrincipalDep
) -> JSONResponse:
    """Delete an object, its track and the overlays bound to it."""
    result = await object_service.delete_object(runtime, principal, video_id, object_id)
    return JSONResponse({"success": True}, headers=version_headers(result.version))
