"""Write a JPEG thumbnail of a video with ffmpeg."""

from __future__ import annotations

import logging
import os
import subprocess
import uuid
from pathlib import Path

import numpy as np

from mp4e.errors import CorruptMedia, InvalidParameter
from mp4e.vision.probe import VideoProbe, frame_timestamps, probe_video_with_timestamps

logger = logging.getLogger(__name__)

THUMBNAIL_TIMEOUT_S = 60.0
DEFAULT_POSITION = 0.1
"""Default thumbnail time as a fraction of the duration, past fade-ins and black openings."""

JPEG_QUALITY = 3
"""ffmpeg's `-q:v` for MJPEG: 2 (best) to 31 (worst)."""

SEEK_MARGIN_S = 0.001
"""ffmpeg's `-ss` drops frames that start before it, so seeks aim this far before a frame."""


def write_thumbnail(
    path: Path,
    out_path: Path,
    *,
    time_s: float | None = None,
    max_width: int = 640,
    probe: VideoProbe | None = None,
) -> None:
    """Write a JPEG of the frame at `time_s` (default: 10 % of the duration) to `out_path`.

    The picture is upright (ffmpeg applies the display rotation), has square pixels, and is
    at most `max_width` pixels wide. The frame is the one displayed at `time_s` seconds after
    the first frame, with `time_s` clamped into the video, so a 1-frame video works. The JPEG is
    written to a temporary file beside `out_path` and renamed, so readers never see part of
    it. The directory of `out_path` must exist. Pass the file's `probe` to skip probing.
    Raises `InvalidParameter` for a `max_width` below 16 and `CorruptMedia` when ffmpeg
    cannot produce a frame.
    """
    if max_width < 16:
        raise InvalidParameter(
            f"Thumbnail width must be at least 16 pixels; got {max_width}.",
            field="max_width",
            details={"value": max_width},
        )
    if probe is None:
        probe, timestamps = probe_video_with_timestamps(path)
    else:
        timestamps = frame_timestamps(path, probe=probe)
    position_s = _frame_start_s(time_s, probe, timestamps)

    temporary = out_path.with_name(f".{out_path.name}.{uuid.uuid4().hex}.tmp")
    try:
        if not _extract_frame(path, temporary, position_s, max_width, probe):
            logger.warning("No frame at %.3f s in %s; using the first frame", position_s, path)
            if not _extract_frame(path, temporary, 0.0, max_width, probe):
                raise CorruptMedia(
                    "ffmpeg could not extract a thumbnail frame.", details={"path": str(path)}
                )
        os.replace(temporary, out_path)
    finally:
        temporary.unlink(missing_ok=True)


def _frame_start_s(time_s: float | None, probe: VideoProbe, timestamps: np.ndarray) -> float:
    """Return the seek time for the frame displayed at `time_s`, clamped into the video."""
    if time_s is None:
        time_s = DEFAULT_POSITION * probe.duration_s
    clamped_s = min(max(time_s, 0.0), float(timestamps[-1]))
    index = max(int(np.searchsorted(timestamps, clamped_s, side="right")) - 1, 0)
    return max(float(timestamps[index]) - SEEK_MARGIN_S, 0.0)


def _extract_frame(
    path: Path, out_path: Path, time_s: float, max_width: int, probe: VideoProbe
) -> bool:
    """Write one JPEG frame at `time_s`, and return False when ffmpeg produced no frame."""
    # Square the pixels first (iw*sar), then cap the width keeping an even height.
    video_filter = (
        f"scale=w='trunc(iw*sar/2)*2':h='trunc(ih/2)*2',setsar=1,scale=w='min(iw,{max_width})':h=-2"
    )
    command = [
        "ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y",
        "-ss", f"{time_s:.6f}", "-i", str(path),
        "-map", f"0:{probe.video_stream_index}", "-frames:v", "1", "-vf", video_filter,
        "-c:v", "mjpeg", "-q:v", str(JPEG_QUALITY), "-f", "image2", "-update", "1",
        str(out_path),
    ]  # fmt: skip
    try:
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=THUMBNAIL_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CorruptMedia(
            f"Writing the thumbnail timed out after {THUMBNAIL_TIMEOUT_S:.0f} s.",
            details={"timeout_s": THUMBNAIL_TIMEOUT_S},
        ) from exc

    if result.returncode != 0:
        raise CorruptMedia(
            "ffmpeg failed to write the thumbnail.",
            details={"reason": result.stderr.strip()[:2000]},
        )
    return out_path.exists() and out_path.stat().st_size > 0
