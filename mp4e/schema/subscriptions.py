"""GraphQL subscriptions: job progress pushed as it happens."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry

from mp4e.schema.context import Info
from mp4e.schema.scalars import JSON
from mp4e.services import jobs as job_service
from mp4e.services import videos as video_service


@strawberry.type
class JobSubscription:
    @strawberry.subscription(
        description="Progress events of the video's jobs, starting with the latest job's state."
    )
    async def job_progress(self, info: Info, video_id: strawberry.ID) -> AsyncGenerator[JSON, None]:
        runtime = info.context.runtime
        video = await video_service.get_video(runtime, info.context.principal, video_id)
        events = runtime.events.subscribe(job_service.job_channel(video.id))
        try:
            latest = await job_service.latest_job(
                runtime.database, video.id, ("process", "surface", "ingest")
            )
            if latest is not None:
                yield JSON(job_service.job_event(latest))
            async for event in events:
                yield JSON(event)
        finally:
            await events.aclose()
