"""AI processing: validate a request, start, report and cancel detection + tracking jobs."""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from mp4e.auth import Principal, Scope
from mp4e.errors import Conflict, InvalidParameter, NotFound
from mp4e.models import Job, Video
from mp4e.models.job import ACTIVE_JOB_STATUSES, JobKind, JobStatus
from mp4e.models.video import VideoStatus
from mp4e.runtime import Runtime
from mp4e.services import jobs as job_service
from mp4e.services.videos import get_video
from mp4e.settings import Settings

logger = logging.getLogger(__name__)

FPS_RANGE = (1, 30)
MAX_LABELS = 50
CANCEL_WAIT_S = 3.0
# Rough CPU cost of one sampled frame (decode, detect, track) for the estimate shown to
# clients; measured about 0.06-0.1 s with the default NanoDet on 2 cores.
ESTIMATED_S_PER_SAMPLE = 0.1


@dataclass(frozen=True)
class ProcessParams:
    fps: float
    confidence: float
    labels: list[str] | None
    enable_clip: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "fps": self.fps,
            "confidence": self.confidence,
            "labels": self.labels,
            "enableClip": self.enable_clip,
        }


def _number(body: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = body.get(name, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidParameter(
            f"The '{name}' parameter must be a number between {low:g} and {high:g}.",
            field=name,
            details={"min": low, "max": high, "provided": value},
        )
    if not low <= value <= high:
        raise InvalidParameter(
            f"The '{name}' parameter must be between {low:g} and {high:g}.",
            field=name,
            details={"min": low, "max": high, "provided": value},
        )
    return float(value)


def parse_params(body: Any, settings: Settings) -> ProcessParams:
    """Check a process request body; raise `InvalidParameter` naming the field at fault.

    Labels are checked against the detector's classes by `check_labels`.
    """
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise InvalidParameter("The request body must be a JSON object.", field=None)
    unknown = sorted(set(body) - {"fps", "confidence", "labels", "enableClip"})
    if unknown:
        raise InvalidParameter(
            f"Unknown parameter(s): {', '.join(unknown)}.",
            field=unknown[0],
            details={"allowed": ["fps", "confidence", "labels", "enableClip"]},
        )
    fps = _number(body, "fps", 5, *FPS_RANGE)
    confidence = _number(body, "confidence", 0.25, 0.0, 1.0)
    if confidence == 0:
        raise InvalidParameter(
            "The 'confidence' parameter must be greater than 0.",
            field="confidence",
            details={"min": 0, "max": 1, "provided": confidence, "exclusiveMin": True},
        )
    labels = body.get("labels")
    if labels is not None:
        if not isinstance(labels, list) or not all(
            isinstance(x, str) and x.strip() for x in labels
        ):
            raise InvalidParameter(
                "The 'labels' parameter must be a list of non-empty strings.",
                field="labels",
                details={"provided": labels},
            )
        if len(labels) > MAX_LABELS:
            raise InvalidParameter(
                f"At most {MAX_LABELS} labels are allowed.",
                field="labels",
                details={"max": MAX_LABELS, "provided": len(labels)},
            )
        labels = list(dict.fromkeys(label.strip() for label in labels)) or None
    enable_clip = body.get("enableClip", False)
    if not isinstance(enable_clip, bool):
        raise InvalidParameter(
            "The 'enableClip' parameter must be true or false.",
            field="enableClip",
            details={"provided": enable_clip},
        )
    if enable_clip and settings.clip_checkpoint is None:
        raise InvalidParameter(
            "enableClip needs CLIP weights, and this server has none; set "
            "MP4E_CLIP_CHECKPOINT to a CLIP model directory or send enableClip=false.",
            field="enableClip",
            details={"provided": True, "configured": False},
        )
    return ProcessParams(fps=fps, confidence=confidence, labels=labels, enable_clip=enable_clip)


def check_labels(params: ProcessParams, settings: Settings) -> None:
    """Reject labels that need CLIP when CLIP is not enabled, before any job exists.

    The first call in a process imports the detector's code to learn its class names, which
    takes seconds, so async callers run it in a thread.
    """
    if params.labels is None:
        return
    from mp4e.vision.pipeline import plan_labels

    plan_labels(params.labels, detector_class_names(settings), params.enable_clip)


def detector_class_names(settings: Settings) -> tuple[str, ...]:
    return _class_names(settings.detector_config)


@lru_cache(maxsize=4)
def _class_names(config: Path | None) -> tuple[str, ...]:
    """Class names of the configured detector, read from its config without loading it."""
    from mp4e.vision.coco import COCO_CLASSES

    if config is not None and config.is_file():
        try:
            from mmengine.config import Config

            parsed = Config.fromfile(str(config))
            for holder in (parsed, parsed.get("model", {}), parsed.get("train_dataloader", {})):
                metainfo = holder.get("metainfo") or holder.get("dataset", {}).get("metainfo")
                if metainfo and metainfo.get("classes"):
                    return tuple(metainfo["classes"])
        except Exception:
            logger.warning("Reading class names from %s failed; assuming COCO", config)
    return COCO_CLASSES


def estimate_seconds(video: Video, params: ProcessParams) -> int:
    samples = max(1, math.floor((video.duration_s or 0) * params.fps) + 1)
    return max(1, round(samples * ESTIMATED_S_PER_SAMPLE))


async def start_processing(
    runtime: Runtime, principal: Principal, video_id: str, body: Any
) -> tuple[Job, int]:
    """Queue detection and tracking for a video; returns the job and an estimate in seconds."""
    principal.require(Scope.PROCESSING)
    video = await get_video(runtime, principal, video_id, scope=Scope.PROCESSING)
    params = parse_params(body, runtime.settings)
    await asyncio.to_thread(check_labels, params, runtime.settings)
    if video.status in (VideoStatus.UPLOADING,) or video.current_version == 0:
        raise Conflict(
            f"Video '{video.id}' is still being ingested; start processing when it is ready.",
            code="NOT_READY",
            details={"status": video.status},
        )
    job = await job_service.create_job(runtime, video, JobKind.PROCESS, params.as_dict())
    return job, estimate_seconds(video, params)


async def processing_status(runtime: Runtime, principal: Principal, video_id: str) -> Job:
    video = await get_video(runtime, principal, video_id, scope=Scope.VIDEOS_READ)
    job = await job_service.latest_job(runtime.database, video.id, (JobKind.PROCESS,))
    if job is None:
        raise NotFound(
            f"Video '{video.id}' has no processing job yet.",
            details={"videoId": video.id},
        )
    return job


async def cancel_processing(runtime: Runtime, principal: Principal, video_id: str) -> Job:
    """Cancel the video's active processing job and wait briefly for the worker to stop."""
    video = await get_video(runtime, principal, video_id, scope=Scope.PROCESSING)
    job = await job_service.latest_job(runtime.database, video.id, (JobKind.PROCESS,))
    if job is None or job.status not in ACTIVE_JOB_STATUSES:
        raise Conflict(
            f"Video '{video.id}' has no active processing job to cancel.",
            code="NO_ACTIVE_JOB",
            details={"jobId": job.id if job else None, "status": job.status if job else None},
        )
    job = await job_service.request_cancel(runtime, job)
    deadline = asyncio.get_running_loop().time() + CANCEL_WAIT_S
    while job.status not in (JobStatus.CANCELLED, JobStatus.COMPLETED, JobStatus.FAILED):
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.1)
        job = await job_service.get_job(runtime.database, job.id)
    return job
