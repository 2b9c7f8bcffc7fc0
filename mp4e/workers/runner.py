"""Running one job: claim it, keep its lease alive, watch for cancel, record the outcome.

Dramatiq delivers a job id to `run_job_message` in a worker thread. The job's coroutine runs in
a fresh event loop with its own database connections; blocking vision work runs in a thread
and checks `JobContext.should_stop()` between frames, so a cancel takes effect within about a
second plus the time of one frame's work.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from sqlalchemy.pool import NullPool

from mp4e.db import Database
from mp4e.errors import Cancelled, MP4EError
from mp4e.models import Job
from mp4e.models.job import JobStatus
from mp4e.runtime import Runtime
from mp4e.services import jobs as job_service

logger = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 0.5

T = TypeVar("T")

Handler = Callable[["JobContext"], Awaitable[dict[str, Any] | None]]
_handlers: dict[str, Handler] = {}
_runtime: Runtime | None = None


def register_handler(kind: str) -> Callable[[Handler], Handler]:
    def decorate(handler: Handler) -> Handler:
        _handlers[kind] = handler
        return handler

    return decorate


def set_worker_runtime(runtime: Runtime) -> None:
    """Give the worker threads of this process the runtime whose events and queue they use."""
    global _runtime
    _runtime = runtime


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex[:6]}"


@dataclass
class JobContext:
    """Context of a job handler: the job, a runtime with its own database, progress and cancel."""

    runtime: Runtime
    job: Job
    worker_id: str
    cancel_event: threading.Event = field(default_factory=threading.Event)
    _progress: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def should_stop(self) -> bool:
        return self.cancel_event.is_set()

    def check_cancel(self) -> None:
        if self.cancel_event.is_set():
            raise Cancelled("The job was cancelled.")

    def report(self, **progress: Any) -> None:
        """Record progress fields of the job (thread-safe); the heartbeat stores them."""
        with self._lock:
            self._progress.update(progress)

    def take_progress(self) -> dict[str, Any]:
        with self._lock:
            progress, self._progress = self._progress, {}
        return progress

    async def run_blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(fn, *args, **kwargs)


def run_job_message(job_id: str) -> None:
    """Dramatiq entry point: run the job `job_id` to its end."""
    if _runtime is None:
        raise RuntimeError("The worker runtime is not set; call set_worker_runtime() at boot.")
    asyncio.run(_run(_runtime, job_id))


async def _run(shared: Runtime, job_id: str) -> None:
    database = Database(shared.settings.resolved_database_url, poolclass=NullPool)
    database.change_listeners.append(shared.notify_changed)
    runtime = replace(shared, database=database)
    try:
        await _run_claimed(runtime, job_id)
    finally:
        await database.dispose()


async def _run_claimed(runtime: Runtime, job_id: str) -> None:
    worker_id = worker_identity()
    lease_s = runtime.settings.job_lease_s
    job = await job_service.claim_job(runtime.database, job_id, worker_id, lease_s)
    if job is None:
        logger.info("Job %s is not claimable (cancelled, done or taken); skipped", job_id)
        return
    handler = _handlers.get(job.kind)
    context = JobContext(runtime=runtime, job=job, worker_id=worker_id)
    logger.info("Started %s job %s for video %s", job.kind, job.id, job.video_id)
    runtime.events.publish(job_service.job_channel(job.video_id), job_service.job_event(job))

    beat = asyncio.create_task(_heartbeat_loop(context, lease_s))
    status, error, result = JobStatus.COMPLETED, None, None
    started = time.monotonic()
    try:
        if handler is None:
            raise RuntimeError(f"No handler is registered for job kind '{job.kind}'.")
        result = await handler(context)
    except Cancelled:
        status = JobStatus.CANCELLED
        logger.info("Cancelled job %s", job.id)
    except MP4EError as exc:
        status, error = JobStatus.FAILED, exc.message
        logger.warning("Job %s failed: %s", job.id, exc.message)
    except Exception as exc:
        status, error = JobStatus.FAILED, f"Internal error: {type(exc).__name__}: {exc}"
        logger.exception("Job %s failed with an unexpected error", job.id)
    finally:
        beat.cancel()
        await asyncio.gather(beat, return_exceptions=True)

    final = context.take_progress()
    if status == JobStatus.COMPLETED:
        final.update(progress=100.0, eta_s=0.0)
    finished = await job_service.finish_job(
        runtime.database, job.id, worker_id, status, error=error, result=result, progress=final
    )
    if finished is None:
        logger.warning("Job %s lost its lease before finishing; its outcome was dropped", job.id)
        return
    await run_after_finish(runtime, finished)
    runtime.events.publish(job_service.job_channel(job.video_id), job_service.job_event(finished))
    logger.info(
        "Finished job %s as %s in %.1f s", job.id, finished.status, time.monotonic() - started
    )


async def _heartbeat_loop(context: JobContext, lease_s: int) -> None:
    runtime = context.runtime
    while True:
        await asyncio.sleep(HEARTBEAT_INTERVAL_S)
        progress = context.take_progress()
        try:
            job = await job_service.heartbeat(
                runtime.database, context.job.id, context.worker_id, lease_s, progress
            )
        except Exception:
            logger.exception("Heartbeat of job %s failed; retrying", context.job.id)
            context.report(**progress)
            continue
        if job is None or job.cancel_requested:
            context.cancel_event.set()
            if job is None:
                logger.warning("Job %s lost its lease; stopping the work", context.job.id)
            continue
        if progress:
            runtime.events.publish(
                job_service.job_channel(job.video_id), job_service.job_event(job)
            )


AfterFinish = Callable[[Runtime, Job], Awaitable[None]]
_after_finish: dict[str, AfterFinish] = {}


def register_after_finish(kind: str) -> Callable[[AfterFinish], AfterFinish]:
    """Register a hook run after a job of `kind` ends in any status (e.g. to reset a video)."""

    def decorate(hook: AfterFinish) -> AfterFinish:
        _after_finish[kind] = hook
        return hook

    return decorate


async def run_after_finish(runtime: Runtime, job: Job) -> None:
    """Run the after-finish hook of the job's kind, logging (not raising) its errors."""
    hook = _after_finish.get(job.kind)
    if hook is None:
        return
    try:
        await hook(runtime, job)
    except Exception:
        logger.exception("The after-finish hook of job %s failed", job.id)
