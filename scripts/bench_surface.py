"""Measure planar surface tracking against decoding on a synthetic 720p video.

The video shows a real photo (graf1.png from the Debian package opencv-doc) warped by
known, smoothly changing homographies over a slowly panning background photo
(building.jpg), encoded with libx264 (CRF 18, preset superfast). The script tracks the photo from a
mid-video frame through frames decoded back from the file and prints one markdown table
row with decode and tracking time per frame, their ratio and the corner error.

Usage: PYTHONPATH=. .venv/bin/python scripts/bench_surface.py [--frames 250] [--start 120]

The photos are read from ~/.cache/mp4e-test-data/, where the surface tests cache them
after fetching opencv-doc with `apt-get download`.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np

from mp4e.vision.surface import SurfaceTrack, track_surface

PHOTO_DIR = Path.home() / ".cache" / "mp4e-test-data"
WIDTH, HEIGHT = 1280, 720
FPS = 25


def load_photos(photo_dir: Path = PHOTO_DIR) -> tuple[np.ndarray, np.ndarray]:
    """Return the surface photo and the background photo as RGB arrays."""
    images = []
    for name in ("graf1.png", "building.jpg"):
        bgr = cv2.imread(str(photo_dir / name), cv2.IMREAD_COLOR)
        if bgr is None:
            raise SystemExit(f"{photo_dir / name} is missing; run the surface tests once first.")
        images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return images[0], images[1]


def surface_corners_px(index: int, frame_count: int, leave: bool = False) -> np.ndarray:
    """Return the photo's corners on frame `index` in pixels, in the order TL, TR, BR, BL.

    The photo moves, turns, scales and tilts smoothly. With `leave`, it also slides out past
    the right edge from frame 70, is fully out of view on frames 100 to 156 and is back in
    place by frame 190.
    """
    t = index / (frame_count - 1)
    cx = WIDTH * (0.5 + 0.15 * math.sin(2 * math.pi * 1.2 * t))
    cy = HEIGHT * (0.5 + 0.07 * math.sin(2 * math.pi * 0.8 * t + 0.5))
    if leave and 70 <= index <= 190:
        cx += 1.35 * WIDTH * (1 - math.cos(2 * math.pi * (index - 70) / 120)) / 2
    half_width = 0.17 * WIDTH * (1 + 0.12 * math.sin(2 * math.pi * 0.6 * t + 1.0))
    half_height = 0.8 * half_width
    angle = math.radians(10) * math.sin(2 * math.pi * 0.7 * t)

    base = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
    base *= [half_width, half_height]
    phases = np.array([0.0, 1.3, 2.9, 4.4])
    tilt = (
        0.03
        * WIDTH
        * np.stack(
            [np.sin(2 * math.pi * 0.9 * t + phases), np.cos(2 * math.pi * 0.7 * t + 2 * phases)],
            axis=1,
        )
    )
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return (base + tilt) @ rotation.T + [cx, cy]


def render_frames(
    photo: np.ndarray, background: np.ndarray, frame_count: int, leave: bool = False
) -> Iterator[np.ndarray]:
    """Yield RGB frames of the photo warped onto a darker, blurred, panning background."""
    cover = cv2.resize(background, (WIDTH + 120, HEIGHT + 80), interpolation=cv2.INTER_AREA)
    cover = cv2.GaussianBlur(cover, (0, 0), 1.5)
    cover = (cover * 0.6).astype(np.uint8)
    photo_h, photo_w = photo.shape[:2]
    photo_corners = np.array(
        [
            [-0.5, -0.5],
            [photo_w - 0.5, -0.5],
            [photo_w - 0.5, photo_h - 0.5],
            [-0.5, photo_h - 0.5],
        ],
        dtype=np.float32,
    )
    for index in range(frame_count):
        left, top = round(0.4 * index) % 120, round(0.15 * index) % 80
        frame = cover[top : top + HEIGHT, left : left + WIDTH].copy()
        corners = surface_corners_px(index, frame_count, leave).astype(np.float32)
        homography = cv2.getPerspectiveTransform(photo_corners, corners)
        cv2.warpPerspective(
            photo,
            homography,
            (WIDTH, HEIGHT),
            dst=frame,
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_TRANSPARENT,
        )
        yield frame


def write_video(path: Path, frames: Iterator[np.ndarray]) -> None:
    """Encode RGB frames as H.264 (CRF 18, yuv420p, a keyframe every 32 frames)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.gop_size = 32
        stream.options = {"crf": "18", "preset": "superfast"}
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


class DecodedVideo:
    """Frame source over a video file that seeks to the keyframe before each new range.

    `read_s` accumulates the time spent in `read`, so that decoding time can be subtracted
    from tracking time.
    """

    def __init__(self, path: Path) -> None:
        self.container = av.open(str(path))
        self.stream = self.container.streams.video[0]
        pts = sorted(
            p.pts for p in self.container.demux(self.stream) if p.pts is not None and p.size > 0
        )
        self.pts = pts
        self.index_of_pts = {value: i for i, value in enumerate(pts)}
        self.frame_count = len(pts)
        self.frame_size_wh = (self.stream.width, self.stream.height)
        time_base = float(self.stream.time_base)
        self.timestamps = (np.array(pts, dtype=np.float64) - pts[0]) * time_base
        self.next_index = -1
        self.decoded: Iterator[av.VideoFrame] | None = None
        self.read_s = 0.0

    def read(self, start: int, stop: int) -> list[np.ndarray]:
        began = time.perf_counter()
        if start != self.next_index or self.decoded is None:
            self.container.seek(self.pts[start], stream=self.stream, backward=True)
            self.decoded = self.container.decode(self.stream)
        frames = []
        for frame in self.decoded:
            index = self.index_of_pts[frame.pts]
            if index >= start:
                frames.append(frame.to_ndarray(format="rgb24"))
            if index == stop - 1:
                break
        self.next_index = stop
        self.read_s += time.perf_counter() - began
        return frames

    def close(self) -> None:
        self.container.close()


def decode_all_s(path: Path) -> tuple[float, int]:
    """Decode every frame to RGB once, in order, and return the seconds taken and the count."""
    began = time.perf_counter()
    count = 0
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frame.to_ndarray(format="rgb24")
            count += 1
    return time.perf_counter() - began, count


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def measure_once(
    path: Path, start: int, corners_norm: np.ndarray
) -> tuple[float, float, SurfaceTrack]:
    """Decode and track the video once, and return decode and track ms per frame and the track.

    Tracking time excludes the time the tracker's source spent reading frames.
    """
    decode_s, decoded_count = decode_all_s(path)
    source = DecodedVideo(path)
    began = time.perf_counter()
    track = track_surface(source, start, corners_norm)
    total_s = time.perf_counter() - began
    source.close()
    return (
        1000 * decode_s / decoded_count,
        1000 * (total_s - source.read_s) / source.frame_count,
        track,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=250, help="video length in frames")
    parser.add_argument("--start", type=int, default=120, help="frame the corners are marked on")
    parser.add_argument("--leave", action="store_true", help="let the photo leave and return")
    parser.add_argument(
        "--repeat", type=int, default=3, help="decode and track this many times, report medians"
    )
    args = parser.parse_args()

    photo, background = load_photos()
    marked = surface_corners_px(args.start, args.frames, args.leave)
    corners_norm = (marked + 0.5) / [WIDTH, HEIGHT]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "surface.mp4"
        write_video(path, render_frames(photo, background, args.frames, args.leave))
        runs = [measure_once(path, args.start, corners_norm) for _ in range(args.repeat)]

    decode_ms = float(np.median([run[0] for run in runs]))
    track_ms = float(np.median([run[1] for run in runs]))
    track = runs[-1][2]
    truth = np.stack([surface_corners_px(i, args.frames, args.leave) for i in range(args.frames)])
    estimate = track.corners_norm.astype(np.float64) * [WIDTH, HEIGHT] - 0.5
    errors = np.linalg.norm(estimate - truth, axis=2)[track.visible]

    command = " ".join(["PYTHONPATH=. python", *sys.argv])
    print(f"machine: nproc={os.cpu_count()}, CPU {cpu_model()}, OpenCV {cv2.__version__}")
    print(f"load average before the run: {os.getloadavg()[0]:.1f}")
    print(f"command: {command}")
    print(f"per run, decode ms/frame: {[round(run[0], 1) for run in runs]}")
    print(f"per run, track ms/frame: {[round(run[1], 1) for run in runs]}")
    print()
    print(
        "| video | frames | decode ms/frame | track ms/frame (reads excluded) | track/decode "
        "| visible | corner error median / max px |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {WIDTH}x{HEIGHT} H.264 CRF 18{' leaving' if args.leave else ''} | {args.frames} "
        f"| {decode_ms:.1f} | {track_ms:.1f} | {track_ms / decode_ms:.2f} "
        f"| {track.tracked_frames} | {np.median(errors):.2f} / {errors.max():.2f} |"
    )


if __name__ == "__main__":
    main()
