"""REST: /api/videos/:id/process — start, status, cancel."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from mp4e.auth import Principal, Scope
from mp4e.rest_compat.deps import get_principal, get_runtime
from mp4e.rest_compat.metadata import read_json_object
from mp4e.runtime import Runtime
from mp4e.services import jobs as job_service
from mp4e.services import processing as processing_service

router = APIRouter(prefix="/api/videos/{video_id}/process", tags=["processing"])

RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]


def _status_body(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": event["status"],
        "progress": event["progress"],
        "currentFrame": event["currentFrame"],
        "totalFrames": event["totalFrames"],
        "objectsDetected": event["objectsDetected"],
        "eta": event["eta"],
        "jobId": event["jobId"],
        "error": event["error"],
    }


@router.post("", status_code=200)
async def start_processing(
    video_id: str, request: Request, runtime: RuntimeDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Start object detection and tracking (`fps` 1-30, `confidence` 0-1, `labels`,
    `enableClip`). One job may be active per video; a second start gets 409."""
    principal.require(Scope.PROCESSING)
    has_body = (
        request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
    )
    body = await read_json_object(request, runtime) if has_body else {}
    job, estimate_s = await processing_service.start_processing(runtime, principal, video_id, body)
    return {"jobId": job.id, "status": job.status, "estimatedTime": estimate_s}


@router.get("/status")
async def processing_status(
    video_id: str, runtime: RuntimeDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Progress of the video's latest processing job."""
    job = await processing_service.processing_status(runtime, principal, video_id)
    return _status_body(job_service.job_event(job))


@router.post("/cancel")
async def cancel_processing(
    video_id: str, runtime: RuntimeDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Cancel the active processing job; the previous metadata version stays current."""
    job = await processing_service.cancel_processing(runtime, principal, video_id)
    return {"success": True, "status": job.status, "jobId": job.id}
