"""The processing job: sample frames, detect, track, and store the tracks as a new version."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mp4e.errors import Cancelled
from mp4e.metadata.document import build_box_track, summarize_track
from mp4e.models import Job, Video
from mp4e.models.job import JobKind, JobStatus
from mp4e.models.video import VideoStatus
from mp4e.runtime import Runtime
from mp4e.services import metadata_store
from mp4e.services.videos import source_path, touch_video
from mp4e.settings import Settings
from mp4e.vision.decode import SampledFrame, iter_sampled_frames
from mp4e.vision.detection import Detector, load_detector
from mp4e.vision.pipeline import ObjectTrack, track_objects
from mp4e.vision.probe import VideoProbe
from mp4e.workers.runner import JobContext, register_after_finish, register_handler

logger = logging.getLogger(__name__)

# A new AI track takes over an old AI object's id and user edits when their boxes overlap
# this much (mean IoU over the frames both were seen in) on at least MATCH_MIN_SHARED frames.
MATCH_MIN_IOU = 0.5
MATCH_MIN_SHARED = 3

# How often a job that waits for its models checks whether it was cancelled.
MODEL_WAIT_POLL_S = 0.1

_model_lock = threading.Lock()
# Models load in this thread and not in the job's, so a cancelled job can stop waiting for a
# load that takes seconds while the load goes on and fills the cache for the next job.
_model_loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mp4e-model-load")
_detectors: dict[tuple[Any, ...], Detector] = {}
_clip_models: dict[tuple[Any, ...], Any] = {}


def get_detector(settings: Settings) -> Detector:
    """Load the configured detector once per process."""
    key = (settings.detector_config, settings.detector_checkpoint, settings.device)
    with _model_lock:
        detector = _detectors.get(key)
        if detector is None:
            _limit_torch_threads(settings)
            detector = load_detector(
                settings.detector_config,
                settings.detector_checkpoint,
                settings.device,
                settings.models_dir,
            )
            _detectors[key] = detector
    return detector


def _limit_torch_threads(settings: Settings) -> None:
    """Share the cores between worker threads: each job's torch calls get their part.

    Several jobs each running torch on every core oversubscribe the CPU; on 2 cores a NanoDet
    frame took about 0.08 s with one torch thread per job and 0.8 s with two.
    """
    import torch

    threads = settings.torch_threads or max(1, (os.cpu_count() or 1) // settings.worker_threads)
    torch.set_num_threads(threads)
    logger.info("torch uses %d threads per operation", threads)


def get_clip(settings: Settings) -> Any:
    from mp4e.vision.clip import ClipLabeler

    assert settings.clip_checkpoint is not None
    key = (settings.clip_checkpoint, settings.device)
    with _model_lock:
        model = _clip_models.get(key)
        if model is None:
            model = ClipLabeler.from_path(settings.clip_checkpoint, device=settings.device)
            _clip_models[key] = model
    return model


@dataclass
class _Progress:
    total: int
    started: float
    last_index: int = 0


@dataclass(frozen=True)
class _Models:
    detector: Detector
    clip: Any | None


def _load_models(settings: Settings, enable_clip: bool) -> _Models:
    return _Models(get_detector(settings), get_clip(settings) if enable_clip else None)


async def _wait_for_models(context: JobContext, enable_clip: bool) -> _Models:
    """Load the job's models (cached per process), raising `Cancelled` when the job is cancelled.

    The first job of a process loads the detector, which takes seconds; a cancel during that
    time ends the job within `MODEL_WAIT_POLL_S` of its heartbeat seeing the request.
    """
    loop = asyncio.get_running_loop()
    loading = loop.run_in_executor(
        _model_loader, _load_models, context.runtime.settings, enable_clip
    )
    while True:
        done, _ = await asyncio.wait({loading}, timeout=MODEL_WAIT_POLL_S)
        if done:
            return loading.result()
        if context.should_stop():
            # Retrieve the load's outcome later, so a failed load is not reported as unhandled.
            loading.add_done_callback(lambda future: future.exception())
            raise Cancelled("The job was cancelled while its models were loading.")


def _total_samples(video: Video, fps: float) -> int:
    total = max(1, math.floor((video.duration_s or 0.0) * fps) + 1)
    if video.frame_count:
        total = min(total, video.frame_count)
    return total


def _run_pipeline(
    context: JobContext, video: Video, params: dict[str, Any], models: _Models
) -> list[ObjectTrack]:
    settings = context.runtime.settings
    path = source_path(context.runtime, video)
    probe = VideoProbe(**video.probe) if video.probe else None
    fps = float(params["fps"])
    state = _Progress(total=_total_samples(video, fps), started=time.monotonic())

    def progress(done: int, time_s: float) -> None:
        elapsed = time.monotonic() - state.started
        fraction = min(done / state.total, 0.99)
        eta = elapsed / done * max(state.total - done, 0) if done else None
        context.report(
            progress=round(fraction * 100, 1),
            current_frame=state.last_index,
            eta_s=eta,
        )

    with iter_sampled_frames(
        path, fps, device=settings.device, should_stop=context.should_stop, probe=probe
    ) as frames:
        tracks = track_objects(
            _remember_index(frames, state),
            models.detector,
            labels=params.get("labels"),
            confidence=float(params["confidence"]),
            tracker_kind=settings.tracker,
            clip=models.clip,
            frame_size_wh=probe.frame_size_wh if probe else None,
            progress=progress,
            should_stop=context.should_stop,
        )
        backend = frames.backend_used
    logger.info("Job %s decoded with %s and found %d tracks", context.job.id, backend, len(tracks))
    return tracks


def _remember_index(frames: Iterable[SampledFrame], state: _Progress) -> Iterator[SampledFrame]:
    for frame in frames:
        state.last_index = frame.index
        yield frame


def _mean_iou(old_track: dict[str, Any], new: ObjectTrack) -> tuple[float, int]:
    old_frames = np.asarray(old_track.get("frames", []), dtype=np.int64)
    old_boxes = np.asarray(old_track.get("boxes", []), dtype=np.float64).reshape(-1, 4)
    new_frames = np.asarray(new.frames, dtype=np.int64)
    shared, old_at, new_at = np.intersect1d(old_frames, new_frames, return_indices=True)
    if len(shared) == 0:
        return 0.0, 0
    a = old_boxes[old_at]
    b = np.asarray(new.boxes_norm, dtype=np.float64)[new_at]
    width = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    height = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = width * height
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    iou = inter / np.maximum(area_a + area_b - inter, 1e-12)
    return float(iou.mean()), len(shared)


def merge_ai_objects(
    current: dict[str, Any], tracks: list[ObjectTrack]
) -> tuple[dict[str, Any], int]:
    """Replace the AI-made objects of `current` with `tracks`, keeping user edits.

    Objects that are not AI-made (surfaces, manual ones) are kept as they are. A new track
    that overlaps an old AI object (see MATCH_MIN_IOU) takes over its id, `userLabel`,
    `customData` and unknown fields, so overlays bound to that id keep following it.
    Returns the new objects and how many old AI objects had no successor.
    """
    kept = {oid: obj for oid, obj in current.items() if obj.get("source") != "ai"}
    old_ai = {oid: obj for oid, obj in current.items() if obj.get("source") == "ai"}
    used_ids = set(current)
    claimed: set[str] = set()
    new_objects: dict[str, Any] = {}
    counter = 1
    for track in sorted(tracks, key=lambda t: (t.frames[0], t.track_id)):
        best_id, best_iou = None, MATCH_MIN_IOU
        for oid, obj in old_ai.items():
            if oid in claimed or obj.get("label") != track.label:
                continue
            iou, shared = _mean_iou(obj.get("track") or {}, track)
            if shared >= MATCH_MIN_SHARED and iou >= best_iou:
                best_id, best_iou = oid, iou
        box_track = build_box_track(track.frames, track.times_s, track.boxes_norm, track.scores)
        summary = summarize_track(box_track, "box")
        if best_id is not None:
            claimed.add(best_id)
            obj = {k: v for k, v in old_ai[best_id].items() if k != "track"}
            object_id = best_id
        else:
            while f"obj_{counter:03d}" in used_ids:
                counter += 1
            object_id = f"obj_{counter:03d}"
            used_ids.add(object_id)
            obj = {"id": object_id, "userLabel": None, "customData": {}}
        obj.update(
            id=object_id,
            label=track.label,
            kind="box",
            source="ai",
            confidence=round(float(track.confidence), 4),
            firstFrame=summary["firstFrame"],
            lastFrame=summary["lastFrame"],
            frameCount=summary["frameCount"],
            track=box_track,
        )
        new_objects[object_id] = obj
    return {**kept, **new_objects}, len(set(old_ai) - claimed)


@register_handler(JobKind.PROCESS)
async def process(context: JobContext) -> dict[str, Any]:
    runtime = context.runtime
    async with runtime.database.session() as session:
        video = await session.get(Video, context.job.video_id)
    if video is None:
        return {"skipped": "video deleted"}
    await touch_video(runtime, video.id, status=VideoStatus.PROCESSING)

    params = context.job.params
    context.report(
        total_frames=_total_samples(video, float(params["fps"])), current_frame=0, progress=0.0
    )
    loading_started = time.monotonic()
    models = await _wait_for_models(context, bool(params.get("enableClip")))
    started = time.monotonic()
    tracks = await context.run_blocking(_run_pipeline, context, video, params, models)
    context.check_cancel()
    pipeline_s = time.monotonic() - started

    version, removed = await _store_tracks(runtime, context.job, tracks)
    context.report(objects_detected=len(tracks))
    await touch_video(runtime, video.id, status=VideoStatus.PROCESSED)
    return {
        "objects": len(tracks),
        "version": version,
        "removedAiObjects": removed,
        "modelLoadSeconds": round(started - loading_started, 3),
        "pipelineSeconds": round(pipeline_s, 3),
    }


async def _store_tracks(runtime: Runtime, job: Job, tracks: list[ObjectTrack]) -> tuple[int, int]:
    params = job.params
    async with runtime.database.serialized() as session:
        video = await session.get(
            Video, job.video_id, with_for_update=not runtime.database.is_sqlite
        )
        if video is None:
            return 0, 0
        previous = await metadata_store.get_version_row(session, video.id, None)
        document = await metadata_store.load_document(session, previous, with_tracks=True)
        objects, removed = merge_ai_objects(document.get("objects", {}), tracks)
        document["objects"] = objects
        labels = ", ".join(params.get("labels") or []) or "all classes"
        description = (
            f"Processed at {params['fps']:g} fps ({labels}): {len(tracks)} objects tracked"
        )
        row = await metadata_store.add_version(
            session,
            video_id=video.id,
            version=video.current_version + 1,
            document=document,
            description=description,
            author=f"job:{job.id}",
            previous=previous,
        )
        video.current_version = row.version
        session.add(video)
    return row.version, removed


@register_after_finish(JobKind.PROCESS)
async def restore_video_status(runtime: Runtime, job: Job) -> None:
    """After a failed or cancelled run, give the video back the status it had before."""
    if job.status == JobStatus.COMPLETED:
        return
    async with runtime.database.session() as session:
        video = await session.get(Video, job.video_id)
    if video is None or video.status != VideoStatus.PROCESSING:
        return
    document_has_ai = await _has_ai_objects(runtime, video)
    await touch_video(
        runtime, video.id, status=VideoStatus.PROCESSED if document_has_ai else VideoStatus.READY
    )


async def _has_ai_objects(runtime: Runtime, video: Video) -> bool:
    async with runtime.database.session() as session:
        row = await metadata_store.get_version_row(session, video.id, None)
        objects = await metadata_store.load_objects(
            session, video.id, row.objects_hash, with_tracks=False
        )
    return any(obj.get("source") == "ai" for obj in objects.values())


def default_models_present(settings: Settings) -> bool:
    from mp4e.vision.detection import default_model_paths

    config, checkpoint = default_model_paths(settings.models_dir)
    return Path(config).is_file() and Path(checkpoint).is_file()
