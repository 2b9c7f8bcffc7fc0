"""Job lifecycle: create, read, cancel, claim with a lease, heartbeat, finish, reap."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlmodel import col

from mp4e.db import Database
from mp4e.errors import Conflict, NotFound
from mp4e.models import Job, Video
from mp4e.models.base import utcnow
from mp4e.models.job import ACTIVE_JOB_STATUSES, JobKind, JobStatus
from mp4e.runtime import Runtime

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 2


def job_channel(video_id: str) -> str:
    return f"video:{video_id}:jobs"


def job_event(job: Job) -> dict[str, Any]:
    """Build the progress record published to subscribers and served by the status endpoint."""
    return {
        "jobId": job.id,
        "videoId": job.video_id,
        "kind": job.kind,
        "status": job.status,
        "progress": round(job.progress, 1),
        "currentFrame": job.current_frame,
        "totalFrames": job.total_frames,
        "objectsDetected": job.objects_detected,
        "eta": None if job.eta_s is None else round(job.eta_s),
        "error": job.error,
    }


async def create_job(runtime: Runtime, video: Video, kind: JobKind, params: dict[str, Any]) -> Job:
    """Create a queued job and enqueue it after the row is committed.

    Only one processing or surface job may be active per video; a second one is a `Conflict`
    that names the running job.
    """
    async with runtime.database.serialized() as session:
        if kind != JobKind.INGEST:
            query = select(Job).where(
                col(Job.video_id) == video.id,
                col(Job.kind).in_([JobKind.PROCESS, JobKind.SURFACE]),
                col(Job.status).in_(ACTIVE_JOB_STATUSES),
            )
            if not runtime.database.is_sqlite:
                await session.execute(
                    select(col(Video.id)).where(col(Video.id) == video.id).with_for_update()
                )
            active = (await session.execute(query)).scalars().first()
            if active is not None:
                raise Conflict(
                    f"Video '{video.id}' already has an active job '{active.id}'.",
                    code="JOB_ACTIVE",
                    details={"jobId": active.id, "status": active.status, "kind": active.kind},
                )
        job = Job(video_id=video.id, account_id=video.account_id, kind=kind, params=params)
        session.add(job)
    runtime.require_queue().enqueue(job.id)
    logger.info("Queued %s job %s for video %s", kind, job.id, video.id)
    return job


async def latest_job(database: Database, video_id: str, kinds: tuple[str, ...]) -> Job | None:
    async with database.session() as session:
        query = (
            select(Job)
            .where(col(Job.video_id) == video_id, col(Job.kind).in_(kinds))
            .order_by(col(Job.created_at).desc())
            .limit(1)
        )
        return (await session.execute(query)).scalars().first()


async def get_job(database: Database, job_id: str) -> Job:
    async with database.session() as session:
        job = await session.get(Job, job_id)
    if job is None:
        raise NotFound(f"Job '{job_id}' was not found.", details={"id": job_id})
    return job


async def request_cancel(runtime: Runtime, job: Job) -> Job:
    """Cancel a job: a queued one at once, a running one through its worker's next check."""
    async with runtime.database.serialized() as session:
        current = await session.get(Job, job.id, with_for_update=not runtime.database.is_sqlite)
        if current is None:
            raise NotFound(f"Job '{job.id}' was not found.", details={"id": job.id})
        if current.status == JobStatus.QUEUED:
            current.status = JobStatus.CANCELLED
            current.finished_at = utcnow()
        current.cancel_requested = True
        session.add(current)
    runtime.events.publish(job_channel(current.video_id), job_event(current))
    logger.info("Cancel requested for job %s (status %s)", current.id, current.status)
    return current


async def claim_job(database: Database, job_id: str, worker_id: str, lease_s: int) -> Job | None:
    """Take a queued job (or one whose lease expired) for this worker; None if not claimable."""
    now = utcnow()
    async with database.serialized() as session:
        result = await session.execute(
            update(Job)
            .where(
                col(Job.id) == job_id,
                col(Job.status) == JobStatus.QUEUED,
                col(Job.cancel_requested).is_(False),
            )
            .values(
                status=JobStatus.PROCESSING,
                lease_owner=worker_id,
                lease_expires_at=now + timedelta(seconds=lease_s),
                started_at=now,
                attempts=Job.attempts + 1,
            )
        )
        # An UPDATE returns a CursorResult, which AsyncSession.execute()'s stubs do not declare.
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return None
        return await session.get(Job, job_id)


async def heartbeat(
    database: Database, job_id: str, worker_id: str, lease_s: int, progress: dict[str, Any]
) -> Job | None:
    """Renew the lease and store progress; returns the job, or None when the lease was lost."""
    async with database.serialized() as session:
        job = await session.get(Job, job_id)
        if job is None or job.lease_owner != worker_id or job.status != JobStatus.PROCESSING:
            return None
        job.lease_expires_at = utcnow() + timedelta(seconds=lease_s)
        for key, value in progress.items():
            setattr(job, key, value)
        session.add(job)
    return job


async def finish_job(
    database: Database,
    job_id: str,
    worker_id: str,
    status: JobStatus,
    *,
    error: str | None = None,
    result: dict[str, Any] | None = None,
    progress: dict[str, Any] | None = None,
) -> Job | None:
    async with database.serialized() as session:
        job = await session.get(Job, job_id)
        if job is None or job.lease_owner != worker_id:
            return None
        job.status = status
        job.error = error
        job.result = result
        job.finished_at = utcnow()
        job.lease_expires_at = None
        for key, value in (progress or {}).items():
            setattr(job, key, value)
        session.add(job)
    return job


async def reap_expired_jobs(
    runtime: Runtime, on_finished: Callable[[Runtime, Job], Awaitable[None]] | None = None
) -> list[Job]:
    """Requeue or fail running jobs whose worker stopped renewing the lease.

    `on_finished` runs for each job that this ends (failed or cancelled), e.g. to give its
    video back the status it had before.
    """
    now = utcnow()
    handled: list[Job] = []
    async with runtime.database.serialized() as session:
        query = select(Job).where(
            col(Job.status) == JobStatus.PROCESSING,
            col(Job.lease_expires_at) < now,
        )
        if not runtime.database.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        for job in (await session.execute(query)).scalars().all():
            job.lease_owner = None
            job.lease_expires_at = None
            if job.cancel_requested:
                job.status = JobStatus.CANCELLED
                job.finished_at = now
            elif job.attempts < MAX_ATTEMPTS:
                job.status = JobStatus.QUEUED
            else:
                job.status = JobStatus.FAILED
                job.error = (
                    f"The worker running this job stopped renewing its lease "
                    f"{job.attempts} time(s); the job was given up."
                )
                job.finished_at = now
            session.add(job)
            handled.append(job)
    for job in handled:
        if job.status == JobStatus.QUEUED:
            logger.warning("Requeued job %s after its worker's lease expired", job.id)
            runtime.require_queue().enqueue(job.id)
        else:
            logger.warning("Job %s ended as %s after its lease expired", job.id, job.status)
            if on_finished is not None:
                await on_finished(runtime, job)
        runtime.events.publish(job_channel(job.video_id), job_event(job))
    return handled
