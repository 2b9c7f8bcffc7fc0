"""Benchmark processing: job overhead, decoders, memory, and tracking accuracy.

Measured in one run on this machine:

1. Overhead: the wall time of a processing job on vtest.avi at 5 fps, from `POST .../process`
   to the status `completed`, divided by the time `track_objects` (detector and tracker)
   takes on the same sampled frames, decoded beforehand, in this process with the same torch
   thread count. The job runs through `mp4e serve` (SQLite, in-process worker), after a
   warm-up job has loaded the detector. Alone runs and jobs alternate, and each job is
   compared with the mean of the alone runs before and after it.
2. Decoding: sampled frames per second and peak RSS growth when decoding vtest.avi at 5 fps
   with decord and PyAV (through `iter_sampled_frames`, probing included) and with the
   `ffmpeg` CLI piping raw RGB frames, each in a fresh process.
3. Peak RSS (VmHWM) of `mp4e serve` after the jobs, of this process, and of a fresh process
   running `track_objects` on frames streamed from decord and from PyAV.
4. Accuracy: IDF1, MOTA and identity switches (py-motmetrics, IoU >= 0.5) of the real
   detector and tracker on a synthetic clip with known trajectories: three people cut out of
   vtest.avi walking across an empty stretch of its road, where one person is passed twice
   by another walking in front.

Usage: .venv/bin/python scripts/bench_processing.py [--repeats 3] [--poll-interval-s 0.05]
       [--torch-threads N] [--skip-server] [--skip-decoders]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import av
import cv2
import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mp4e.vision.decode import SampledFrame, iter_sampled_frames  # noqa: E402
from mp4e.vision.detection import Detections, Detector, load_detector  # noqa: E402
from mp4e.vision.pipeline import ObjectTrack, track_objects  # noqa: E402

MODELS_DIR = REPO / "var" / "models"
VTEST = REPO / "var" / "samples" / "vtest.avi"
SAMPLE_FPS = 5.0
CONFIDENCE = 0.25

CLIP_WH = (320, 180)
CLIP_RATE = 10
CLIP_SECONDS = 8.0
# An empty stretch of road in vtest.avi (x, y, width, height): the synthetic clip's background.
ROAD_XYWH = (440, 190, 320, 180)
# NanoDet finds the pasted people well at about 1.4 times their size in vtest.avi.
PERSON_HEIGHT_PX = 110
CROP_MARGIN_PX = 3


# --- machine and server ----------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import torch

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "av": av.__version__,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def peak_rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(match.group(1)) * 1024 if match else 0


class BenchServer:
    """`mp4e serve` on SQLite with its in-process worker, on a fresh data directory."""

    def __init__(self, data_dir: Path, torch_threads: int, poll_interval_s: float) -> None:
        (data_dir / "models").symlink_to(MODELS_DIR.resolve(), target_is_directory=True)
        self.data_dir = data_dir
        self.poll_interval_s = poll_interval_s

        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MP4E_")}
        env.update(
            MP4E_DATA_DIR=str(data_dir),
            MP4E_PUBLIC_URL=f"http://127.0.0.1:{port}",
            MP4E_SECRET_KEY=secrets.token_hex(16),
            MP4E_RATE_LIMIT_REQUESTS="100000",
            MP4E_TORCH_THREADS=str(torch_threads),
        )
        mp4e = [sys.executable, "-m", "mp4e.cli"]
        created = subprocess.run(
            [*mp4e, "keys", "create", "--name", "bench"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        key = created.stdout.strip().splitlines()[-1]

        self._log = (data_dir / "serve.log").open("ab")
        self.process = subprocess.Popen(
            [*mp4e, "serve", "--port", str(port)],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=120,
        )
        wait_ready(self.client)

    def close(self) -> None:
        self.client.close()
        self.process.terminate()
        self.process.wait(timeout=30)
        self._log.close()

    def peak_rss_bytes(self) -> int:
        return peak_rss_bytes(self.process.pid)

    def timed_job(self, video_id: str) -> dict[str, Any]:
        """Process a video; return the wall time and the job's stored timings."""
        wall_s, status = timed_job(self.client, video_id, self.poll_interval_s)
        job = stored_job(self.data_dir / "mp4e.db", status["jobId"])
        return {
            "wall_s": round(wall_s, 2),
            "created_to_finished_s": job["created_to_finished_s"],
            "queued_s": job["queued_s"],
            "worker_s": job["worker_s"],
            "model_load_s": job["result"]["modelLoadSeconds"],
            "pipeline_s": job["result"]["pipelineSeconds"],
            "samples": status["totalFrames"],
            "objects": job["result"]["objects"],
        }


def stored_job(database: Path, job_id: str) -> dict[str, Any]:
    """Read a job's timestamps and result from the server's SQLite database."""
    with sqlite3.connect(database) as connection:
        created, started, finished, result = connection.execute(
            "SELECT created_at, started_at, finished_at, result FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
    created_at, started_at, finished_at = (
        datetime.fromisoformat(value) for value in (created, started, finished)
    )
    return {
        "created_to_finished_s": round((finished_at - created_at).total_seconds(), 3),
        "queued_s": round((started_at - created_at).total_seconds(), 3),
        "worker_s": round((finished_at - started_at).total_seconds(), 3),
        "result": json.loads(result),
    }


def wait_ready(client: httpx.Client) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("mp4e serve did not become ready in 90 s; see serve.log in the data dir")


def upload_ready(client: httpx.Client, path: Path) -> str:
    """Upload a video and wait until it is ingested."""
    with path.open("rb") as handle:
        response = client.post("/api/videos/upload", files={"file": (path.name, handle)})
    response.raise_for_status()
    video_id = str(response.json()["id"])
    while client.get(f"/api/videos/{video_id}").json()["status"] != "ready":
        time.sleep(0.2)
    return video_id


def timed_job(
    client: httpx.Client, video_id: str, poll_interval_s: float = 0.05
) -> tuple[float, dict[str, Any]]:
    """Return the seconds from the process request to the status `completed`, and the status."""
    started = time.monotonic()
    response = client.post(
        f"/api/videos/{video_id}/process", json={"fps": SAMPLE_FPS, "confidence": CONFIDENCE}
    )
    response.raise_for_status()
    while True:
        status: dict[str, Any] = client.get(f"/api/videos/{video_id}/process/status").json()
        if status["status"] in ("completed", "failed", "cancelled"):
            break
        time.sleep(poll_interval_s)
    wall_s = time.monotonic() - started
    if status["status"] != "completed":
        raise SystemExit(f"The job ended as {status['status']}: {status['error']}")
    return wall_s, status


# --- detector and tracker alone ----------------------------------------------------------------


class TimedDetector:
    """A detector wrapper that adds up the seconds spent in `detect`."""

    def __init__(self, detector: Detector) -> None:
        self._detector = detector
        self.seconds = 0.0

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._detector.class_names

    def detect(self, image_rgb: np.ndarray) -> Detections:
        started = time.perf_counter()
        detections = self._detector.detect(image_rgb)
        self.seconds += time.perf_counter() - started
        return detections


def track_alone(detector: Detector, frames: list[SampledFrame]) -> tuple[float, float, int]:
    """Return (seconds in track_objects, seconds of them in the detector, track count)."""
    timed = TimedDetector(detector)
    started = time.perf_counter()
    tracks = track_objects(frames, timed, confidence=CONFIDENCE, tracker_kind="bytetrack")
    return time.perf_counter() - started, timed.seconds, len(tracks)


# --- decoding ----------------------------------------------------------------------------------


def measure_in_child(*args: str) -> dict[str, Any]:
    """Run this script with `args` in a fresh process, so its peak RSS is its own."""
    output = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True
    ).stdout
    measured: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return measured


def own_peak_rss_bytes() -> int:
    return peak_rss_bytes(os.getpid())


def child_decode(backend: str) -> dict[str, Any]:
    """Decode vtest.avi at 5 fps with one decoder; report count, time and peak RSS."""
    before = own_peak_rss_bytes()
    if backend == "ffmpeg_cli":
        with av.open(str(VTEST)) as container:
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
        count, seconds = decode_with_ffmpeg_cli(width, height)
        ffmpeg_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    else:
        count, seconds = decode_with_sampler(backend)
        ffmpeg_peak = 0
    return {
        "frames": count,
        "seconds": round(seconds, 3),
        "frames_per_s": round(count / seconds, 1),
        "peak_rss_growth_bytes": own_peak_rss_bytes() - before,
        "ffmpeg_peak_rss_bytes": ffmpeg_peak,
    }


def child_pipeline(backend: str, torch_threads: int) -> dict[str, Any]:
    """Decode with one decoder while detecting and tracking, as a job does; report peak RSS."""
    import torch

    torch.set_num_threads(torch_threads)
    detector = load_detector(None, None, "cpu", MODELS_DIR)
    loaded = own_peak_rss_bytes()
    started = time.perf_counter()
    with iter_sampled_frames(VTEST, SAMPLE_FPS, backend=backend) as frames:  # type: ignore[arg-type]
        tracks = track_objects(frames, detector, confidence=CONFIDENCE)
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "tracks": len(tracks),
        "peak_rss_after_model_load_bytes": loaded,
        "peak_rss_bytes": own_peak_rss_bytes(),
    }


def decode_with_sampler(backend: str) -> tuple[int, float]:
    started = time.perf_counter()
    with iter_sampled_frames(VTEST, SAMPLE_FPS, backend=backend) as frames:  # type: ignore[arg-type]
        count = sum(1 for _ in frames)
    return count, time.perf_counter() - started


def decode_with_ffmpeg_cli(width: int, height: int) -> tuple[int, float]:
    """Decode every second frame (5 of vtest's 10 fps) to raw RGB through a pipe."""
    command = [
        "ffmpeg", "-nostdin", "-v", "error", "-i", str(VTEST),
        "-vf", r"select=not(mod(n\,2))", "-fps_mode", "passthrough",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-",
    ]  # fmt: skip
    frame_bytes = width * height * 3
    started = time.perf_counter()
    count = 0
    with subprocess.Popen(command, stdout=subprocess.PIPE) as process:
        assert process.stdout is not None
        while True:
            data = process.stdout.read(frame_bytes)
            if len(data) < frame_bytes:
                break
            np.frombuffer(data, np.uint8).reshape(height, width, 3)
            count += 1
    return count, time.perf_counter() - started


# --- accuracy on a synthetic clip --------------------------------------------------------------


@dataclass(frozen=True)
class Sprite:
    image: np.ndarray
    person_xyxy: np.ndarray


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    intersection = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection
    return float(intersection / union) if union > 0 else 0.0


def person_sprites(detector: Detector, images: list[np.ndarray], count: int) -> list[Sprite]:
    """Cut out people whom the detector finds with score >= 0.7, apart from other detections,
    and who are found again (score >= 0.5) when pasted on the empty road."""
    background = road_background(images)
    sprites: list[Sprite] = []
    for image in images[::5]:
        for sprite in isolated_people(detector, image):
            if found_on_road(detector, background, sprite):
                sprites.append(sprite)
            if len(sprites) == count:
                return sprites
    raise SystemExit(f"Only {len(sprites)} usable people were found in vtest.avi.")


def road_background(images: list[np.ndarray]) -> np.ndarray:
    x, y, width, height = ROAD_XYWH
    road = np.stack([image[y : y + height, x : x + width] for image in images])
    return np.ascontiguousarray(np.median(road, axis=0).astype(np.uint8))


def isolated_people(detector: Detector, image: np.ndarray) -> Iterator[Sprite]:
    found = detector.detect(image)
    others = found.boxes_xyxy[found.scores >= 0.3]
    height, width = image.shape[:2]
    margin = CROP_MARGIN_PX
    for box, score, name in zip(found.boxes_xyxy, found.scores, found.label_names(), strict=True):
        x1, y1, x2, y2 = (int(v) for v in np.round(box))
        if name != "person" or score < 0.7 or y2 - y1 < 70:
            continue
        grown = np.array([x1 - 12, y1 - 12, x2 + 12, y2 + 12])
        if sum(box_iou(grown, other) > 0 for other in others) > 1:
            continue
        if x1 < margin or y1 < margin or x2 + margin > width or y2 + margin > height:
            continue
        scale = PERSON_HEIGHT_PX / (y2 - y1)
        cut = image[y1 - margin : y2 + margin, x1 - margin : x2 + margin]
        crop = np.ascontiguousarray(cv2.resize(cut, None, fx=scale, fy=scale))
        inner = np.array([margin, margin, x2 - x1 + margin, y2 - y1 + margin]) * scale
        yield Sprite(crop, inner)


def paste(canvas: np.ndarray, sprite: Sprite, x: int, y: int) -> np.ndarray | None:
    """Paste `sprite` at (x, y), cut at the edges; return the visible person box or None."""
    height, width = canvas.shape[:2]
    sprite_h, sprite_w = sprite.image.shape[:2]
    x1, y1, x2, y2 = max(0, x), max(0, y), min(width, x + sprite_w), min(height, y + sprite_h)
    if x1 < x2 and y1 < y2:
        canvas[y1:y2, x1:x2] = sprite.image[y1 - y : y2 - y, x1 - x : x2 - x]
    offset = np.array([x, y, x, y], dtype=np.float64)
    box = np.clip(sprite.person_xyxy + offset, 0, [width, height, width, height])
    return box if box[2] - box[0] >= 1 and box[3] - box[1] >= 1 else None


def found_on_road(detector: Detector, background: np.ndarray, sprite: Sprite) -> bool:
    canvas = background.copy()
    x = (canvas.shape[1] - sprite.image.shape[1]) // 2
    y = (canvas.shape[0] - sprite.image.shape[0]) // 2
    truth = paste(canvas, sprite, x, y)
    found = detector.detect(canvas)
    return truth is not None and any(
        name == "person" and score >= 0.5 and box_iou(box, truth) >= 0.5
        for box, score, name in zip(
            found.boxes_xyxy, found.scores, found.label_names(), strict=True
        )
    )


# Sprite index, top-left corner at 0 s, horizontal speed in pixels per second. The third
# walker passes in front of the first at about 2 s and walks out on the left at about 5 s. The
# second passes in front of the first at about 4 s.
WALKERS = ((0, (10, 30), 30.0), (1, (230, 45), -28.0), (2, (160, 60), -40.0))


def write_synthetic_clip(
    path: Path, background: np.ndarray, sprites: list[Sprite]
) -> dict[int, dict[int, np.ndarray]]:
    """Write the walkers clip; return {frame: {walker: visible person box in pixels}}.

    A walker counts as visible in the truth only where at least half of its box is not
    covered by a walker pasted later.
    """
    truth: dict[int, dict[int, np.ndarray]] = {}
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=CLIP_RATE)
        stream.width, stream.height = CLIP_WH
        stream.pix_fmt = "yuv420p"
        for index in range(round(CLIP_SECONDS * CLIP_RATE)):
            time_s = index / CLIP_RATE
            canvas = background.copy()
            boxes: dict[int, np.ndarray] = {}
            for number, (sprite, (x0, y0), speed) in enumerate(WALKERS):
                box = paste(canvas, sprites[sprite], round(x0 + speed * time_s), y0)
                if box is not None:
                    boxes[number] = box
            truth[index] = {n: b for n, b in boxes.items() if visible_fraction(n, boxes) >= 0.5}
            for packet in stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return truth


def visible_fraction(number: int, boxes: dict[int, np.ndarray]) -> float:
    """Return the part of walker `number`'s box that walkers pasted after it leave uncovered."""
    box = boxes[number]
    mask = np.ones((int(np.ceil(box[3] - box[1])) + 1, int(np.ceil(box[2] - box[0])) + 1), bool)
    for other, cover in boxes.items():
        if other <= number:
            continue
        x1, y1 = max(box[0], cover[0]) - box[0], max(box[1], cover[1]) - box[1]
        x2, y2 = min(box[2], cover[2]) - box[0], min(box[3], cover[3]) - box[1]
        if x1 < x2 and y1 < y2:
            mask[int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))] = False
    return float(mask.mean())


def tracking_accuracy(
    tracks: list[ObjectTrack], truth: dict[int, dict[int, np.ndarray]]
) -> dict[str, float]:
    import motmetrics

    scale = np.array([*CLIP_WH, *CLIP_WH], dtype=np.float64)
    hypotheses: dict[int, list[tuple[int, np.ndarray]]] = {}
    for track in tracks:
        if track.label != "person":
            continue
        for frame, box in zip(track.frames, track.boxes_norm, strict=True):
            hypotheses.setdefault(frame, []).append((track.track_id, box * scale))

    accumulator = motmetrics.MOTAccumulator(auto_id=True)
    sampled = sorted({frame for track in tracks for frame in track.frames} | set(truth))
    for frame in sampled:
        if frame % round(CLIP_RATE / SAMPLE_FPS):
            continue
        truth_ids = list(truth.get(frame, {}))
        truth_boxes = [truth[frame][n] for n in truth_ids]
        found = hypotheses.get(frame, [])
        distances = np.array(
            [[1 - box_iou(t, h) for _, h in found] for t in truth_boxes], dtype=np.float64
        ).reshape(len(truth_boxes), len(found))
        distances[distances > 0.5] = np.nan
        accumulator.update(truth_ids, [track_id for track_id, _ in found], distances)
    summary = motmetrics.metrics.create().compute(
        accumulator, metrics=["idf1", "mota", "num_switches", "num_false_positives", "num_misses"]
    )
    row = summary.iloc[0]
    return {
        "idf1": round(float(row["idf1"]), 3),
        "mota": round(float(row["mota"]), 3),
        "id_switches": int(row["num_switches"]),
        "false_positives": int(row["num_false_positives"]),
        "misses": int(row["num_misses"]),
    }


# --- main --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=max(1, len(os.sched_getaffinity(0)) // 2),
        help="torch threads per operation, here and in the server (default: cores / 2, "
        "the server's default with 2 worker threads)",
    )
    parser.add_argument("--skip-server", action="store_true", help="skip the end-to-end jobs")
    parser.add_argument(
        "--skip-decoders", action="store_true", help="skip the decoder and memory comparisons"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="server jobs on vtest.avi (default 3)"
    )
    parser.add_argument(
        "--poll-interval-s",
        type=float,
        default=0.05,
        help="seconds between status requests during a server job (default 0.05)",
    )
    parser.add_argument("--child-decode", help=argparse.SUPPRESS)
    parser.add_argument("--child-pipeline", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_decode:
        print(json.dumps(child_decode(args.child_decode)))
        return 0
    if args.child_pipeline:
        print(json.dumps(child_pipeline(args.child_pipeline, args.torch_threads)))
        return 0
    for path in (VTEST, MODELS_DIR / "nanodet" / "nanodet_g_416.pth"):
        if not path.is_file():
            print(f"{path} is missing; run scripts/fetch_models and scripts/fetch_samples.")
            return 2
    if shutil.which("ffmpeg") is None:
        print("ffmpeg is required on PATH.")
        return 2

    import torch

    torch.set_num_threads(args.torch_threads)
    result: dict[str, Any] = {"machine": machine(), "command": " ".join(sys.argv)}
    print(f"Machine: {json.dumps(result['machine'])}", flush=True)

    if not args.skip_decoders:
        result.update(decoder_runs(args.torch_threads))

    with iter_sampled_frames(VTEST, SAMPLE_FPS) as sampler:
        frames = list(sampler)

    started = time.perf_counter()
    detector = load_detector(None, None, "cpu", MODELS_DIR)
    result["model_load_s"] = round(time.perf_counter() - started, 2)
    detector.detect(frames[0].image)

    with tempfile.TemporaryDirectory(prefix="mp4e-bench-") as temporary:
        root = Path(temporary)
        sprites, truth, clip = synthetic_clip(detector, root)
        with iter_sampled_frames(clip, SAMPLE_FPS) as sampler:
            tracks = track_objects(sampler, detector, confidence=CONFIDENCE)
        if args.skip_server:
            result["alone"] = alone_run(detector, frames)
        else:
            data_dir = root / "data"
            data_dir.mkdir()
            result.update(overhead_runs(detector, frames, data_dir, args, clip))
    result["synthetic_clip"] = {
        "people": len(sprites),
        "frames": len(truth),
        **tracking_accuracy(tracks, truth),
    }
    result["bench_peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result["machine"]["load_average_1m_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, indent=2))
    return 0


def decoder_runs(torch_threads: int) -> dict[str, Any]:
    decode = {
        backend: measure_in_child("--child-decode", backend)
        for backend in ("decord", "pyav", "ffmpeg_cli")
    }
    print(f"Decoding: {json.dumps(decode)}", flush=True)
    threads = f"--torch-threads={torch_threads}"
    pipeline = {
        backend: measure_in_child("--child-pipeline", backend, threads)
        for backend in ("decord", "pyav")
    }
    print(f"Pipeline by decoder: {json.dumps(pipeline)}", flush=True)
    return {"decode": decode, "pipeline_by_decoder": pipeline}


def alone_run(detector: Detector, frames: list[SampledFrame]) -> dict[str, Any]:
    seconds, detector_s, tracks = track_alone(detector, frames)
    print(f"Alone: {seconds:.1f} s ({detector_s:.1f} s in the detector)", flush=True)
    return {"seconds": round(seconds, 2), "detector_s": round(detector_s, 2), "tracks": tracks}


def overhead_runs(
    detector: Detector,
    frames: list[SampledFrame],
    data_dir: Path,
    args: argparse.Namespace,
    warmup_clip: Path,
) -> dict[str, Any]:
    """Alternate runs alone and server jobs (alone, job, alone, job, ..., alone).

    Each job's ratio divides its wall time by the mean of the alone runs on either side, so
    that a change in the machine's load during the benchmark shows up in both.
    """
    server = BenchServer(data_dir, args.torch_threads, args.poll_interval_s)
    try:
        started = time.monotonic()
        timed_job(server.client, upload_ready(server.client, warmup_clip))
        warmup_s = time.monotonic() - started
        video_id = upload_ready(server.client, VTEST)
        alone = [alone_run(detector, frames)]
        jobs = []
        for _ in range(args.repeats):
            jobs.append(server.timed_job(video_id))
            print(f"Server job: {json.dumps(jobs[-1])}", flush=True)
            alone.append(alone_run(detector, frames))
        peak = server.peak_rss_bytes()
    finally:
        server.close()
    ratios = [
        job["wall_s"] / ((before["seconds"] + after["seconds"]) / 2)
        for job, before, after in zip(jobs, alone, alone[1:], strict=False)
    ]
    return {
        "server": {"warmup_job_wall_s": round(warmup_s, 2), "peak_rss_bytes": peak},
        "server_jobs": jobs,
        "alone": alone,
        "overhead_ratios": [round(ratio, 3) for ratio in ratios],
        "overhead_ratio_median": round(float(np.median(ratios)), 3),
    }


def synthetic_clip(
    detector: Detector, root: Path
) -> tuple[list[Sprite], dict[int, dict[int, np.ndarray]], Path]:
    with iter_sampled_frames(VTEST, 0.5) as sampler:
        images = [frame.image for frame in sampler]
    sprites = person_sprites(detector, images, len(WALKERS))
    clip = root / "walkers.mp4"
    truth = write_synthetic_clip(clip, road_background(images), sprites)
    return sprites, truth, clip


if __name__ == "__main__":
    sys.exit(main())
