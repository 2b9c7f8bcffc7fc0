"""Planar surfaces: check a request, queue the tracking job, wait for it, report its outcome.

A surface request is checked completely before any job exists: the caller's scope, the video,
the body (`name`, `frame`, `corners`) and the quad's geometry. The object id the surface will
get (`surface_001`, ...) is reserved in the job's parameters, so a caller that stops waiting
receives it at once. The tracking itself runs in a worker (`mp4e.workers.surface`).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, NoReturn

from mp4e.auth import Principal, Scope
from mp4e.errors import (
    Conflict,
    CorruptMedia,
    InvalidParameter,
    InvalidQuad,
    MP4EError,
    NotFound,
    NoVideoStream,
    UnsupportedMedia,
)
from mp4e.models import Job, Video
from mp4e.models.job import ACTIVE_JOB_STATUSES, JobKind, JobStatus
from mp4e.models.video import VideoStatus
from mp4e.runtime import Runtime
from mp4e.services import jobs as job_service
from mp4e.services.metadata import read_document
from mp4e.services.videos import get_video
from mp4e.settings import Settings
from mp4e.vision.surface import validate_quad

logger = logging.getLogger(__name__)

MAX_NAME_CHARS: Final = 255
SURFACE_ID_PREFIX: Final = "surface_"
BODY_FIELDS: Final = ("name", "frame", "corners")
# How often a waiting request reads the job row again.
JOB_POLL_S: Final = 0.2
# How long a cancel request waits for the worker to stop before it returns.
CANCEL_WAIT_S: Final = 3.0
FINISHED_JOB_STATUSES: Final = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)

# Errors a surface job may end with that the client caused or can act on. A failed job stores
# the failure's code, and a waiting request raises it again with its own HTTP status.
_REPLAYED_ERRORS: Final[dict[str, type[MP4EError]]] = {
    error.code: error
    for error in (InvalidParameter, InvalidQuad, CorruptMedia, NoVideoStream, UnsupportedMedia)
}


@dataclass(frozen=True)
class SurfaceRequest:
    """A checked surface request: display name, marked frame and the marked corners."""

    name: str
    frame: int
    corners_norm: list[tuple[float, float]]

    def job_params(self, object_id: str) -> dict[str, Any]:
        return {
            "objectId": object_id,
            "name": self.name,
            "frame": self.frame,
            "corners": [{"x": x, "y": y} for x, y in self.corners_norm],
        }


@dataclass(frozen=True)
class SurfaceOutcome:
    """A surface job as a request left it: finished, or still queued or running."""

    job: Job

    @property
    def completed(self) -> bool:
        return self.job.status == JobStatus.COMPLETED

    @property
    def object_id(self) -> str:
        return surface_object_id(self.job)

    @property
    def tracked_frames(self) -> int | None:
        """Frames on which the surface is visible; None until the job has completed."""
        return _result_int(self.job, "trackedFrames")

    @property
    def version(self) -> int | None:
        """The metadata version that added the surface; None until the job has completed."""
        return _result_int(self.job, "version")


def surface_object_id(job: Job) -> str:
    """Return the object id of a surface job: the stored one once done, else the reserved one."""
    result = job.result or {}
    object_id = result.get("objectId") or job.params.get("objectId")
    return str(object_id)


def _result_int(job: Job, key: str) -> int | None:
    if job.status != JobStatus.COMPLETED or not job.result:
        return None
    value = job.result.get(key)
    return value if isinstance(value, int) else None


def parse_surface_request(body: Any, total_frames: int) -> SurfaceRequest:
    """Check a surface request body against a video of `total_frames` frames.

    Raises:
        InvalidParameter: the body is not an object, a field is missing, unknown or has an
            invalid value, `frame` is outside 0..total_frames-1, or `corners` is not four
            corners with x and y in 0..1 (`field` names the value at fault).
        InvalidQuad: the corners are repeated, collinear, self-intersecting, not convex or
            enclose a near-zero area (`details.test` names the test).
    """
    if not isinstance(body, dict):
        raise InvalidParameter("The request body must be a JSON object.", field=None)
    unknown = sorted(set(body) - set(BODY_FIELDS))
    if unknown:
        raise InvalidParameter(
            f"Unknown parameter(s): {', '.join(unknown)}.",
            field=unknown[0],
            details={"allowed": list(BODY_FIELDS)},
        )
    missing = [name for name in BODY_FIELDS if body.get(name) is None]
    if missing:
        raise InvalidParameter(
            f"The '{missing[0]}' parameter is required.",
            field=missing[0],
            details={"required": list(BODY_FIELDS)},
        )

    name = _parse_name(body["name"])
    frame = _parse_frame(body["frame"], total_frames)
    if not isinstance(body["corners"], list):
        raise InvalidParameter(
            'The \'corners\' parameter must be an array of 4 points such as {"x": 0.2, "y": 0.3}.',
            field="corners",
            details={"expected": 4},
        )
    corners = validate_quad(body["corners"])
    return SurfaceRequest(
        name=name, frame=frame, corners_norm=[(float(x), float(y)) for x, y in corners]
    )


def _parse_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidParameter(
            "The 'name' parameter must be a non-empty string.",
            field="name",
            details={"provided": value if isinstance(value, str) else repr(value)[:100]},
        )
    name = value.strip()
    if len(name) > MAX_NAME_CHARS:
        raise InvalidParameter(
            f"The 'name' parameter must be at most {MAX_NAME_CHARS} characters, not {len(name)}.",
            field="name",
            details={"max": MAX_NAME_CHARS, "provided": len(name)},
        )
    return name


def _parse_frame(value: Any, total_frames: int) -> int:
    last = total_frames - 1
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameter(
            f"The 'frame' parameter must be an integer frame index from 0 to {last}.",
            field="frame",
            details={"min": 0, "max": last, "provided": value},
        )
    if not 0 <= value <= last:
        raise InvalidParameter(
            f"The 'frame' parameter must be between 0 and {last}, because the video has "
            f"{total_frames} frames.",
            field="frame",
            details={"min": 0, "max": last, "provided": value},
        )
    return value


def parse_wait(value: float | str | None, settings: Settings) -> float:
    """Return how long a request waits for its job: `value` seconds, or the configured maximum.

    Raises:
        InvalidParameter: `value` is not a number from 0 to `settings.surface_wait_s`.
    """
    limit = settings.surface_wait_s
    if value is None:
        return limit
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds <= limit:
        raise InvalidParameter(
            f"The 'wait' parameter must be a number of seconds from 0 to {limit:g}.",
            field="wait",
            details={"min": 0, "max": limit, "provided": value},
        )
    return seconds


def next_surface_id(object_ids: Iterable[str]) -> str:
    """Return the first id `surface_001`, `surface_002`, ... that is not in `object_ids`."""
    taken = set(object_ids)
    number = 1
    while f"{SURFACE_ID_PREFIX}{number:03d}" in taken:
        number += 1
    return f"{SURFACE_ID_PREFIX}{number:03d}"


def _require_ready(video: Video) -> int:
    """Return the video's frame count, or raise `Conflict` NOT_READY when it has no document."""
    if video.current_version > 0 and video.frame_count and video.status != VideoStatus.UPLOADING:
        return video.frame_count
    raise Conflict(
        f"Video '{video.id}' has no metadata yet (status '{video.status}'); track a surface "
        "when its status is 'ready'.",
        code="NOT_READY",
        details={"status": video.status},
    )


async def create_surface(
    runtime: Runtime,
    principal: Principal,
    video_id: str,
    body: Any,
    *,
    wait_s: float | str | None = None,
) -> SurfaceOutcome:
    """Queue surface tracking on a video and wait up to `wait_s` seconds for it to finish.

    `wait_s` defaults to, and may not exceed, `settings.surface_wait_s`. Every check runs
    before the job is created, so a rejected request leaves no job and no version.

    Raises:
        Forbidden: the key lacks the `processing` scope.
        NotFound: the video does not exist or belongs to another account.
        InvalidParameter, InvalidQuad: see `parse_surface_request` and `parse_wait`.
        Conflict: NOT_READY (no document yet), JOB_ACTIVE (a process or surface job is
            active), JOB_CANCELLED (the job was cancelled during the wait).
        MP4EError: the job failed during the wait; see `raise_job_failure`.
    """
    principal.require(Scope.PROCESSING)
    video = await get_video(runtime, principal, video_id, scope=Scope.PROCESSING)
    wait = parse_wait(wait_s, runtime.settings)
    total_frames = _require_ready(video)
    request = parse_surface_request(body, total_frames)

    document, _ = await read_document(runtime, video, with_tracks=False)
    object_id = next_surface_id(document.get("objects", {}))
    job = await job_service.create_job(
        runtime, video, JobKind.SURFACE, request.job_params(object_id)
    )
    logger.info(
        "Queued surface %s of video %s from frame %d (job %s)",
        object_id,
        video.id,
        request.frame,
        job.id,
    )

    job = await wait_for_job(runtime, job.id, wait)
    if job.status == JobStatus.FAILED:
        raise_job_failure(job)
    if job.status == JobStatus.CANCELLED:
        raise Conflict(
            f"Surface job '{job.id}' was cancelled before it finished.",
            code="JOB_CANCELLED",
            details={"jobId": job.id, "objectId": object_id},
        )
    return SurfaceOutcome(job)


async def wait_for_job(runtime: Runtime, job_id: str, timeout_s: float) -> Job:
    """Read the job until it has finished or `timeout_s` seconds have passed; return it.

    Raises:
        NotFound: the job was deleted, with its video, during the wait.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        job = await job_service.get_job(runtime.database, job_id)
        remaining = deadline - loop.time()
        if job.status in FINISHED_JOB_STATUSES or remaining <= 0:
            return job
        await asyncio.sleep(min(JOB_POLL_S, remaining))


def raise_job_failure(job: Job) -> NoReturn:
    """Raise the error a failed job ended with.

    The surface worker stores the failure's `code`, `field` and `details` in the job result.
    A failure with a code of `_REPLAYED_ERRORS` (such as INVALID_QUAD for a surface without
    enough texture) is raised as that error. Any other failure is an `MP4EError` with code
    JOB_FAILED, which the REST layer returns with status 500.
    """
    failure = (job.result or {}).get("error") or {}
    error_type = _REPLAYED_ERRORS.get(failure.get("code", ""))
    if error_type is not None:
        raise error_type(
            failure.get("message") or job.error or "The surface job failed.",
            field=failure.get("field"),
            details={**(failure.get("details") or {}), "jobId": job.id},
        )
    raise MP4EError(
        f"Surface job '{job.id}' failed: {job.error or 'no reason was recorded'}",
        code="JOB_FAILED",
        details={"jobId": job.id},
    )


async def get_video_job(
    runtime: Runtime,
    principal: Principal,
    video_id: str,
    job_id: str,
    *,
    scope: str = Scope.VIDEOS_READ,
) -> Job:
    """Return a job of a video of the caller's account.

    Raises:
        Forbidden: the key lacks `scope`.
        NotFound: the video is not the caller's, or the job does not belong to it.
    """
    video = await get_video(runtime, principal, video_id, scope=scope)
    try:
        job = await job_service.get_job(runtime.database, job_id)
    except NotFound:
        job = None
    if job is None or job.video_id != video.id:
        raise NotFound(
            f"Job '{job_id}' of video '{video.id}' was not found.",
            field="jobId",
            details={"videoId": video.id, "jobId": job_id},
        )
    return job


async def cancel_job(runtime: Runtime, principal: Principal, video_id: str, job_id: str) -> Job:
    """Cancel an active processing or surface job and wait briefly for its worker to stop.

    A queued job is cancelled at once. A running one stops at its next cancel check. The
    returned job may therefore still be `processing` when the worker needs longer than
    CANCEL_WAIT_S. A cancelled job adds no metadata version.

    Raises:
        Forbidden: the key lacks the `processing` scope.
        NotFound: see `get_video_job`.
        Conflict: NO_ACTIVE_JOB (the job has already finished), NOT_CANCELLABLE (an ingest job).
    """
    job = await get_video_job(runtime, principal, video_id, job_id, scope=Scope.PROCESSING)
    if job.kind == JobKind.INGEST:
        raise Conflict(
            f"Job '{job.id}' ingests the upload and cannot be cancelled; delete the video instead.",
            code="NOT_CANCELLABLE",
            details={"jobId": job.id, "kind": job.kind},
        )
    if job.status not in ACTIVE_JOB_STATUSES:
        raise Conflict(
            f"Job '{job.id}' has already finished as '{job.status}'.",
            code="NO_ACTIVE_JOB",
            details={"jobId": job.id, "status": job.status},
        )
    job = await job_service.request_cancel(runtime, job)
    return await wait_for_job(runtime, job.id, CANCEL_WAIT_S)
