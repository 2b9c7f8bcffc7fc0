"""GraphQL types, queries and mutations for AI processing jobs."""

from __future__ import annotations

import strawberry

from mp4e.models import Job
from mp4e.schema.context import Info
from mp4e.services import jobs as job_service
from mp4e.services import processing as processing_service


@strawberry.type(description="A processing job's state, as the REST status endpoint reports it.")
class ProcessingJob:
    job_id: strawberry.ID
    video_id: strawberry.ID
    status: str
    progress: float
    current_frame: int
    total_frames: int
    objects_detected: int
    eta: int | None
    error: str | None
    estimated_time: int | None = None

    @classmethod
    def from_job(cls, job: Job, estimated_time: int | None = None) -> ProcessingJob:
        event = job_service.job_event(job)
        return cls(
            job_id=strawberry.ID(job.id),
            video_id=strawberry.ID(job.video_id),
            status=event["status"],
            progress=event["progress"],
            current_frame=event["currentFrame"],
            total_frames=event["totalFrames"],
            objects_detected=event["objectsDetected"],
            eta=event["eta"],
            error=event["error"],
            estimated_time=estimated_time,
        )


@strawberry.input(description="Processing parameters; omitted fields take their defaults.")
class ProcessInput:
    fps: float | None = None
    confidence: float | None = None
    labels: list[str] | None = None
    enable_clip: bool | None = None


@strawberry.type
class ProcessingQuery:
    @strawberry.field(description="The video's latest processing job.")
    async def processing_status(self, info: Info, video_id: strawberry.ID) -> ProcessingJob:
        context = info.context
        job = await processing_service.processing_status(
            context.runtime, context.principal, video_id
        )
        return ProcessingJob.from_job(job)


@strawberry.type
class ProcessingMutation:
    @strawberry.mutation(description="Start object detection and tracking on a video.")
    async def start_processing(
        self,
        info: Info,
        video_id: strawberry.ID,
        input: ProcessInput | None = None,
    ) -> ProcessingJob:
        context = info.context
        body: dict[str, object] = {}
        if input is not None:
            for name, value in (
                ("fps", input.fps),
                ("confidence", input.confidence),
                ("labels", input.labels),
                ("enableClip", input.enable_clip),
            ):
                if value is not None:
                    body[name] = value
        job, estimate = await processing_service.start_processing(
            context.runtime, context.principal, video_id, body
        )
        return ProcessingJob.from_job(job, estimate)

    @strawberry.mutation(description="Cancel the video's active processing job.")
    async def cancel_processing(self, info: Info, video_id: strawberry.ID) -> ProcessingJob:
        context = info.context
        job = await processing_service.cancel_processing(
            context.runtime, context.principal, video_id
        )
        return ProcessingJob.from_job(job)
