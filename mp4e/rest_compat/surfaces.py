"""REST: POST /api/videos/:id/objects/surface, and the status and cancel routes of jobs.

A surface request waits for its tracking job up to `wait` seconds (query parameter, default
and maximum `MP4E_SURFACE_WAIT_S`). When the job completes in time, the response is 200 with
the stored object. When it is still queued or running, the response is 202 with the reserved
object id and the job id, whose progress `GET /api/videos/:id/jobs/:jobId` reports.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from mp4e.auth import Principal, Scope
from mp4e.models import Job
from mp4e.models.job import JobKind
from mp4e.rest_compat.deps import get_principal, get_runtime
from mp4e.rest_compat.metadata import read_json_object, version_headers
from mp4e.runtime import Runtime
from mp4e.services import jobs as job_service
from mp4e.services import surfaces as surface_service
from mp4e.services import videos as video_service

router = APIRouter(prefix="/api/videos/{video_id}", tags=["surfaces"])

RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]


def job_view(job: Job) -> dict[str, Any]:
    """The progress record of a job, plus the object and version a surface job produces."""
    view = job_service.job_event(job)
    outcome = surface_service.SurfaceOutcome(job)
    view["version"] = outcome.version
    if job.kind == JobKind.SURFACE:
        view["objectId"] = outcome.object_id
        view["trackedFrames"] = outcome.tracked_frames
    return view


@router.post("/objects/surface")
async def create_surface(
    video_id: str, request: Request, runtime: RuntimeDep, principal: PrincipalDep
) -> JSONResponse:
    """Track a plane marked by four corners on one frame through the whole video.

    Body: `name`, `frame` (0-based) and `corners` (four `{x, y}` in 0..1). Query: `wait`,
    the seconds to wait for the tracking (0 to MP4E_SURFACE_WAIT_S, which is the default).
    """
    principal.require(Scope.PROCESSING)
    await video_service.get_video(runtime, principal, video_id, scope=Scope.PROCESSING)
    body = await read_json_object(request, runtime)

    outcome = await surface_service.create_surface(
        runtime, principal, video_id, body, wait_s=request.query_params.get("wait")
    )
    if outcome.completed and outcome.version is not None:
        completed = {
            "success": True,
            "objectId": outcome.object_id,
            "trackedFrames": outcome.tracked_frames,
            "version": outcome.version,
            "jobId": outcome.job.id,
        }
        return JSONResponse(completed, headers=version_headers(outcome.version))
    pending = {
        "success": True,
        "objectId": outcome.object_id,
        "jobId": outcome.job.id,
        "status": outcome.job.status,
    }
    location = f"/api/videos/{video_id}/jobs/{outcome.job.id}"
    return JSONResponse(pending, status_code=202, headers={"Location": location})


@router.get("/jobs/{job_id}")
async def job_status(
    video_id: str, job_id: str, runtime: RuntimeDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Progress of one job of the video (ingest, processing or surface)."""
    job = await surface_service.get_video_job(runtime, principal, video_id, job_id)
    return job_view(job)


@router.post("/jobs/{job_id}/cancel")
async def cancel_job(
    video_id: str, job_id: str, runtime: RuntimeDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Cancel an active processing or surface job; the current metadata version stays."""
    job = await surface_service.cancel_job(runtime, principal, video_id, job_id)
    return {"success": True, "status": job.status, "jobId": job.id}
