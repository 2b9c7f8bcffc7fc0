"""GraphQL: create a tracked surface, and read or cancel a video's jobs."""

from __future__ import annotations

import strawberry

from mp4e.models import Job
from mp4e.models.job import JobKind
from mp4e.schema.context import Info
from mp4e.services import jobs as job_service
from mp4e.services import surfaces as surface_service


@strawberry.input(description="A corner of a surface, normalised to the displayed frame (0..1).")
class CornerInput:
    x: float
    y: float


@strawberry.type(description="The outcome of createSurface.")
class SurfaceCreation:
    object_id: strawberry.ID = strawberry.field(
        description="Id of the surface object; reserved while the job is still running."
    )
    job_id: strawberry.ID
    status: str = strawberry.field(description="completed, queued or processing.")
    tracked_frames: int | None = strawberry.field(
        description="Frames on which the surface is visible; null until completed."
    )
    version: int | None = strawberry.field(
        description="The metadata version that added the surface; null until completed."
    )

    @classmethod
    def from_outcome(cls, outcome: surface_service.SurfaceOutcome) -> SurfaceCreation:
        return cls(
            object_id=strawberry.ID(outcome.object_id),
            job_id=strawberry.ID(outcome.job.id),
            status=outcome.job.status,
            tracked_frames=outcome.tracked_frames,
            version=outcome.version,
        )


@strawberry.type(description="The state of a background job of a video.")
class JobState:
    job_id: strawberry.ID
    video_id: strawberry.ID
    kind: str = strawberry.field(description="ingest, process or surface.")
    status: str = strawberry.field(description="queued, processing, completed, failed, cancelled.")
    progress: float = strawberry.field(description="Percent done, 0 to 100.")
    current_frame: int
    total_frames: int
    eta: int | None = strawberry.field(description="Estimated seconds left.")
    error: str | None
    object_id: strawberry.ID | None = strawberry.field(
        description="The surface object of a surface job; null for other kinds."
    )
    tracked_frames: int | None
    version: int | None = strawberry.field(
        description="The metadata version the job added; null until it has completed."
    )

    @classmethod
    def from_job(cls, job: Job) -> JobState:
        event = job_service.job_event(job)
        outcome = surface_service.SurfaceOutcome(job)
        is_surface = job.kind == JobKind.SURFACE
        return cls(
            job_id=strawberry.ID(job.id),
            video_id=strawberry.ID(job.video_id),
            kind=job.kind,
            status=event["status"],
            progress=event["progress"],
            current_frame=event["currentFrame"],
            total_frames=event["totalFrames"],
            eta=event["eta"],
            error=event["error"],
            object_id=strawberry.ID(outcome.object_id) if is_surface else None,
            tracked_frames=outcome.tracked_frames if is_surface else None,
            version=outcome.version,
        )


@strawberry.type
class SurfaceQuery:
    @strawberry.field(description="One job of a video, by id.")
    async def video_job(
        self, info: Info, video_id: strawberry.ID, job_id: strawberry.ID
    ) -> JobState:
        context = info.context
        job = await surface_service.get_video_job(
            context.runtime, context.principal, video_id, job_id
        )
        return JobState.from_job(job)


@strawberry.type
class SurfaceMutation:
    @strawberry.mutation(
        description=(
            "Track a plane marked by four corners on one frame through the whole video, and "
            "add it as a surface object. Waits up to `wait` seconds (default and maximum "
            "MP4E_SURFACE_WAIT_S) for the tracking job."
        )
    )
    async def create_surface(
        self,
        info: Info,
        video_id: strawberry.ID,
        name: str,
        frame: int,
        corners: list[CornerInput],
        wait: float | None = None,
    ) -> SurfaceCreation:
        context = info.context
        body = {
            "name": name,
            "frame": frame,
            "corners": [{"x": corner.x, "y": corner.y} for corner in corners],
        }
        outcome = await surface_service.create_surface(
            context.runtime, context.principal, video_id, body, wait_s=wait
        )
        return SurfaceCreation.from_outcome(outcome)

    @strawberry.mutation(description="Cancel an active processing or surface job of a video.")
    async def cancel_job(
        self, info: Info, video_id: strawberry.ID, job_id: strawberry.ID
    ) -> JobState:
        context = info.context
        job = await surface_service.cancel_job(context.runtime, context.principal, video_id, job_id)
        return JobState.from_job(job)
