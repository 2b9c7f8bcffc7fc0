"""Validate and probe uploaded media files with ffprobe.

`validate_media` is the quick check run inside the upload request: one ffprobe call on the
header and one ffmpeg call that decodes the first video frame. `probe_video` and
`frame_timestamps` run in background jobs and read every packet of the video stream.

How frames are counted: a demux-only packet scan (no decoding) is fast, and in MP4/MOV,
Matroska/WebM and AVI each packet of the codecs in `_ONE_FRAME_PER_PACKET` decodes to exactly
one frame. The scan drops packets that ffmpeg flags as discarded (MP4 edit lists) and empty
packets, which decode to nothing. Any other codec or container gets a full decode count,
because there packets and frames can differ. MPEG-4 Part 2 in AVI packs two frames into one
packet and adds placeholder packets. VP8 can store invisible alt-ref frames as packets of their
own. MPEG-TS can carry each field of an interlaced frame as a packet.

ffmpeg probes the format by content and by file extension, so every call goes through a
symlink without an extension: the result depends on the bytes alone.
"""

from __future__ import annotations

import json
import logging
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mp4e.errors import CorruptMedia, EmptyFile, NoVideoStream, UnsupportedMedia

logger = logging.getLogger(__name__)

HEADER_TIMEOUT_S = 30.0
"""Limit for the header probe and for the first-frame decode, both run in the upload request."""

SCAN_TIMEOUT_BASE_S = 120.0
SCAN_TIMEOUT_S_PER_GIB = 120.0
"""Limits for a full packet or frame scan: the base plus this much per GiB of file (an
estimate that allows a slow disk, not a measured rate)."""

MIN_PROBE_SCORE = 25
"""ffmpeg's AVPROBE_SCORE_RETRY: below it a format guess is too weak to trust."""

FIRST_FRAME_MAX_INPUT_S = 20
"""Seconds of input that ffmpeg may read to find the first decodable video frame."""

MAX_REASON_CHARS = 2000

_ONE_FRAME_PER_PACKET = frozenset(
    {"h264", "hevc", "av1", "vp9", "mjpeg", "prores", "msmpeg4v1", "msmpeg4v2", "msmpeg4v3"}
)
_SAMPLE_PER_FRAME_CONTAINERS = ("mov", "matroska", "avi")
_STILL_IMAGE_FORMATS = ("image2", "tty")
"""Demuxers for single pictures and text. The `*_pipe` image demuxers are matched by suffix."""

_STREAM_KINDS = {
    "audio": "audio",
    "subtitle": "subtitles",
    "data": "data",
    "attachment": "attachment",
}

_TIMESTAMP_TOLERANCE_S = 1e-6


@dataclass(frozen=True)
class VideoProbe:
    """Facts about the video stream of a media file, as `probe_video` measured them.

    `width` and `height` are the displayed size: the stored frame scaled by the sample aspect
    ratio, then turned by `rotation_deg`. `coded_width` and `coded_height` are the size of the
    decoded frames before both. Times are in seconds. `duration_s` spans the video stream from
    the first frame's presentation time to the end of the last frame, so a longer audio track
    does not count. `start_time_s` is the first frame's presentation time on the file's
    timeline. `fps` is `frame_count / duration_s`, and `nominal_fps` is ffprobe's
    `r_frame_rate` (None when unknown).
    """

    container: str
    video_codec: str
    video_stream_index: int
    video_stream_count: int
    width: int
    height: int
    coded_width: int
    coded_height: int
    rotation_deg: int
    sample_aspect_ratio: float
    duration_s: float
    frame_count: int
    frame_count_source: Literal["packets", "decoded_frames"]
    fps: float
    nominal_fps: float | None
    variable_frame_rate: bool
    has_audio: bool
    size_bytes: int
    start_time_s: float

    @property
    def frame_size_wh(self) -> tuple[int, int]:
        """Size of decoded frames turned by `rotation_deg`, without the sample aspect ratio."""
        if self.rotation_deg in (90, 270):
            return self.coded_height, self.coded_width
        return self.coded_width, self.coded_height


@dataclass(frozen=True)
class _Header:
    format: dict[str, Any]
    streams: list[dict[str, Any]]
    video: dict[str, Any]
    size_bytes: int


@dataclass(frozen=True)
class _FrameTable:
    """Presentation times of the frames in stream ticks, sorted, and how they were found."""

    pts: np.ndarray
    last_duration: int | None
    time_base: Fraction
    source: Literal["packets", "decoded_frames"]
    packets_read: int


def validate_media(path: Path) -> None:
    """Check by content that `path` is a media file with a decodable video stream.

    Reads the header and decodes the first video frame, so the time does not grow with the
    file size. Raises:

    - `EmptyFile` for a file of 0 bytes,
    - `NoVideoStream` for media without a video stream (audio only, cover art only),
    - `UnsupportedMedia` for still images and unknown codecs,
    - `CorruptMedia` for anything that is not readable media or whose first frame does not
      decode.

    `OSError` from a missing file propagates.
    """
    with _content_only_name(path) as name:
        header = _read_header(path, name)
        _decode_first_frame(name, header.video)


def probe_video(path: Path) -> VideoProbe:
    """Probe `path` and return its `VideoProbe` (see `probe_video_with_timestamps`)."""
    probe, _ = probe_video_with_timestamps(path)
    return probe


def frame_timestamps(path: Path, *, probe: VideoProbe | None = None) -> np.ndarray:
    """Return the presentation time of every frame, in seconds after the first frame.

    The float64 array is sorted and has one entry per decoded frame, in presentation order.
    Pass the file's `probe` to skip the header probe. The frame scan runs either way.
    """
    if probe is None:
        return probe_video_with_timestamps(path)[1]

    with _content_only_name(path) as name:
        table, _ = _scan_frames(name, probe.video_stream_index, _use_decode_count(probe))
    return _relative_seconds(table)


def probe_video_with_timestamps(path: Path) -> tuple[VideoProbe, np.ndarray]:
    """Probe `path` and return its `VideoProbe` and its `frame_timestamps` from one scan.

    Raises the errors of `validate_media`, and `CorruptMedia` when the file is truncated: its
    index lists more frames than can be read.
    """
    with _content_only_name(path) as name:
        header = _read_header(path, name)
        _decode_first_frame(name, header.video)
        container = str(header.format.get("format_name", ""))
        codec = str(header.video.get("codec_name", ""))
        decode_count = _needs_decode_count(container, codec)
        table, reason = _scan_frames(name, int(header.video["index"]), decode_count)

    if reason:
        logger.warning("Reading %s reported: %s", path, reason.splitlines()[0])
    _check_not_truncated(header.video, table, reason)
    probe = _build_probe(header, table)
    logger.debug(
        "Probed %s: %d frames in %.3f s (%s), %dx%d",
        path,
        probe.frame_count,
        probe.duration_s,
        probe.frame_count_source,
        probe.width,
        probe.height,
    )
    return probe, _relative_seconds(table)


def _needs_decode_count(container: str, codec: str) -> bool:
    formats = container.split(",")
    trusted_container = any(name in formats for name in _SAMPLE_PER_FRAME_CONTAINERS)
    return not (trusted_container and codec in _ONE_FRAME_PER_PACKET)


def _use_decode_count(probe: VideoProbe) -> bool:
    return probe.frame_count_source == "decoded_frames"


# --- ffprobe calls -------------------------------------------------------------------------


@contextmanager
def _content_only_name(path: Path) -> Iterator[str]:
    """Yield a symlink to `path` named without an extension, so ffmpeg probes bytes only."""
    with tempfile.TemporaryDirectory(prefix="mp4e-probe-") as directory:
        link = Path(directory) / "input"
        link.symlink_to(path.resolve())
        yield str(link)


def _run_ffprobe(args: list[str], name: str, timeout_s: float) -> tuple[int, str, str]:
    command = ["ffprobe", "-hide_banner", "-v", "error", *args, name]
    try:
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CorruptMedia(
            f"Reading the file timed out after {timeout_s:.0f} s.",
            details={"reason": "ffprobe timed out", "timeout_s": timeout_s},
        ) from exc
    reason = result.stderr.replace(name, "input").strip()[:MAX_REASON_CHARS]
    return result.returncode, result.stdout, reason


def _read_header(path: Path, name: str) -> _Header:
    size_bytes = path.stat().st_size
    if size_bytes == 0:
        raise EmptyFile("The file is empty (0 bytes).")

    args = ["-print_format", "json", "-show_format", "-show_streams"]
    returncode, output, reason = _run_ffprobe(args, name, HEADER_TIMEOUT_S)
    if returncode != 0:
        raise CorruptMedia(
            "The file is not a readable media file, or it is truncated.",
            details={"reason": reason},
        )

    report = json.loads(output or "{}")
    media_format = report.get("format", {})
    streams = report.get("streams", [])
    _check_format(media_format, streams, reason)
    return _Header(media_format, streams, _choose_video_stream(streams), size_bytes)


def _check_format(media_format: dict[str, Any], streams: list[dict[str, Any]], reason: str) -> None:
    format_name = str(media_format.get("format_name", ""))
    score = int(media_format.get("probe_score", 0))
    if score < MIN_PROBE_SCORE or not streams:
        raise CorruptMedia(
            "The file is not a readable media file.",
            details={"reason": reason or f"weak format match ({format_name}, score {score})"},
        )
    if format_name in _STILL_IMAGE_FORMATS or format_name.endswith("_pipe"):
        raise UnsupportedMedia(
            f"The file is a still image or text ({format_name}), not a video.",
            details={"format": format_name},
        )


def _choose_video_stream(streams: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the default video stream, else the first one. Cover art does not count."""
    videos = [
        stream
        for stream in streams
        if stream.get("codec_type") == "video"
        and not stream.get("disposition", {}).get("attached_pic", 0)
    ]
    if not videos:
        found = ", ".join(sorted({_stream_kind(stream) for stream in streams}))
        raise NoVideoStream(
            f"The file has no video stream (found: {found}).", details={"found": found}
        )

    defaults = [stream for stream in videos if stream.get("disposition", {}).get("default", 0)]
    video = (defaults or videos)[0]
    codec = video.get("codec_name")
    if not codec or codec == "none":
        tag = video.get("codec_tag_string", "unknown")
        raise UnsupportedMedia(
            f"The video codec (tag {tag}) is not supported.", details={"codec_tag": tag}
        )
    return video


def _stream_kind(stream: dict[str, Any]) -> str:
    kind = str(stream.get("codec_type", "unknown"))
    if kind == "video":
        return "cover art"
    return _STREAM_KINDS.get(kind, kind)


def _decode_first_frame(name: str, video: dict[str, Any]) -> None:
    """Raise `CorruptMedia` unless ffmpeg decodes a frame from the first seconds of video.

    ffmpeg stops at the first frame. Frames that an edit list discards are decoded on the way,
    and `FIRST_FRAME_MAX_INPUT_S` bounds the read when nothing decodes at all.
    """
    command = [
        "ffmpeg", "-nostdin", "-hide_banner", "-v", "error",
        "-t", str(FIRST_FRAME_MAX_INPUT_S), "-i", name,
        "-map", f"0:{video['index']}", "-frames:v", "1", "-f", "framemd5", "-",
    ]  # fmt: skip
    try:
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=HEADER_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CorruptMedia(
            f"Decoding the first video frame timed out after {HEADER_TIMEOUT_S:.0f} s.",
            details={"timeout_s": HEADER_TIMEOUT_S},
        ) from exc

    frame_lines = [line for line in result.stdout.splitlines() if line and line[0] != "#"]
    if not frame_lines:
        reason = result.stderr.replace(name, "input").strip()[:MAX_REASON_CHARS]
        raise CorruptMedia(
            "The first video frame cannot be decoded.", details={"reason": reason or None}
        )


def _scan_timeout_s(name: str) -> float:
    return SCAN_TIMEOUT_BASE_S + SCAN_TIMEOUT_S_PER_GIB * Path(name).stat().st_size / 2**30


def _scan_frames(name: str, stream_index: int, decode_count: bool) -> tuple[_FrameTable, str]:
    """Scan the stream and return its frame table and ffprobe's error output."""
    if decode_count:
        table, reason = _scan_decoded_frames(name, stream_index)
    else:
        table, reason = _scan_packets(name, stream_index)
    if table.pts.size == 0:
        raise CorruptMedia(
            "No video frame could be read from the file.", details={"reason": reason or None}
        )
    return table, reason


def _scan_packets(name: str, stream_index: int) -> tuple[_FrameTable, str]:
    args = [
        "-select_streams", str(stream_index),
        "-show_entries", "packet=pts,dts,duration,size,flags:stream=time_base",
        "-print_format", "json=compact=1",
    ]  # fmt: skip
    returncode, output, reason = _run_ffprobe(args, name, _scan_timeout_s(name))
    if returncode != 0:
        raise CorruptMedia("The video stream cannot be read.", details={"reason": reason})

    report = json.loads(output)
    packets = report.get("packets", [])
    time_base = _time_base(report)
    kept = [
        packet
        for packet in packets
        if "D" not in packet.get("flags", "") and int(packet.get("size", 0)) > 0
    ]
    if any("pts" not in packet and "dts" not in packet for packet in kept):
        logger.debug("Packets without timestamps; counting decoded frames instead")
        return _scan_decoded_frames(name, stream_index)

    kept.sort(key=lambda packet: int(packet.get("pts", packet.get("dts"))))
    pts = np.array([int(packet.get("pts", packet.get("dts"))) for packet in kept], dtype=np.int64)
    last_duration = int(kept[-1].get("duration", 0)) if kept else None
    return _FrameTable(pts, last_duration, time_base, "packets", len(packets)), reason


def _scan_decoded_frames(name: str, stream_index: int) -> tuple[_FrameTable, str]:
    args = [
        "-select_streams", str(stream_index),
        "-count_packets",
        "-show_entries",
        "frame=best_effort_timestamp,pkt_dts,pkt_duration,duration:stream=time_base,nb_read_packets",
        "-print_format", "json=compact=1",
    ]  # fmt: skip
    returncode, output, reason = _run_ffprobe(args, name, _scan_timeout_s(name))
    if returncode != 0:
        raise CorruptMedia("The video stream cannot be decoded.", details={"reason": reason})

    report = json.loads(output)
    frames = report.get("frames", [])
    times = [frame.get("best_effort_timestamp", frame.get("pkt_dts")) for frame in frames]
    pts = _fill_missing_times([None if t is None else int(t) for t in times])
    # Decoded frames come out in presentation order, but a damaged stream can step back.
    pts = np.maximum.accumulate(pts) if pts.size else pts
    last = frames[-1] if frames else {}
    last_duration = int(last.get("duration", last.get("pkt_duration", 0)))
    streams = report.get("streams", [{}])
    packets_read = int(streams[0].get("nb_read_packets", 0)) if streams else 0
    table = _FrameTable(pts, last_duration, _time_base(report), "decoded_frames", packets_read)
    return table, reason


def _fill_missing_times(times: list[int | None]) -> np.ndarray:
    """Give frames without a timestamp the previous frame's time (0 for the first)."""
    filled: list[int] = []
    for time in times:
        if time is None:
            # NOTE: such a frame shares the previous frame's time, so sampling by time never
            # selects the earlier one of the two. PyAV decoding assigns the same time.
            time = filled[-1] if filled else 0
        filled.append(time)
    return np.array(filled, dtype=np.int64)


def _time_base(report: dict[str, Any]) -> Fraction:
    streams = report.get("streams") or [{}]
    time_base = _fraction(streams[0].get("time_base"))
    if time_base is None or time_base <= 0:
        raise CorruptMedia("The video stream has no valid time base.")
    return time_base


# --- building the probe --------------------------------------------------------------------


def _check_not_truncated(video: dict[str, Any], table: _FrameTable, reason: str) -> None:
    """Raise `CorruptMedia` when reading failed before all indexed packets were read.

    Both conditions are needed: an MP4 edit list can leave indexed samples unread without any
    error, and a damaged frame can log an error in a complete file.
    """
    listed = _int_or_none(video.get("nb_frames"))
    packets_read = table.packets_read
    if reason and listed is not None and packets_read < listed:
        raise CorruptMedia(
            f"The file is truncated: its index lists {listed} video frames but only "
            f"{packets_read} can be read.",
            details={"listed_frames": listed, "read_packets": packets_read, "reason": reason},
        )


def _build_probe(header: _Header, table: _FrameTable) -> VideoProbe:
    video = header.video
    coded_width = int(video.get("width", 0))
    coded_height = int(video.get("height", 0))
    sample_aspect_ratio = _fraction(video.get("sample_aspect_ratio"))
    if sample_aspect_ratio is None or sample_aspect_ratio <= 0:
        sample_aspect_ratio = Fraction(1)
    rotation_deg = _rotation_deg(video)
    width, height = round(coded_width * sample_aspect_ratio), coded_height
    if rotation_deg in (90, 270):
        width, height = height, width

    nominal = _fraction(video.get("r_frame_rate"))
    if nominal is not None and nominal <= 0:
        nominal = None
    nominal_fps = float(nominal) if nominal is not None else None
    times_s = _relative_seconds(table)
    duration_s = _duration_s(table, nominal)
    frame_count = int(table.pts.size)
    fps = frame_count / duration_s if duration_s > 0 else (nominal_fps or 0.0)

    return VideoProbe(
        container=str(header.format.get("format_name", "")),
        video_codec=str(video.get("codec_name", "")),
        video_stream_index=int(video["index"]),
        video_stream_count=sum(s.get("codec_type") == "video" for s in header.streams),
        width=width,
        height=height,
        coded_width=coded_width,
        coded_height=coded_height,
        rotation_deg=rotation_deg,
        sample_aspect_ratio=float(sample_aspect_ratio),
        duration_s=duration_s,
        frame_count=frame_count,
        frame_count_source=table.source,
        fps=fps,
        nominal_fps=nominal_fps,
        variable_frame_rate=_is_variable_rate(times_s, table.time_base),
        has_audio=any(s.get("codec_type") == "audio" for s in header.streams),
        size_bytes=header.size_bytes,
        start_time_s=float(int(table.pts[0]) * table.time_base),
    )


def _relative_seconds(table: _FrameTable) -> np.ndarray:
    ticks = (table.pts - table.pts[0]).astype(np.float64)
    return ticks * table.time_base.numerator / table.time_base.denominator


def _duration_s(table: _FrameTable, nominal_rate: Fraction | None) -> float:
    """Return the span from the first frame to the end of the last one.

    The last frame lasts its packet duration when the container stores one. Otherwise it
    lasts as long as the interval before it, or one nominal frame period for a single frame.
    """
    pts = table.pts
    span = Fraction(int(pts[-1] - pts[0])) * table.time_base
    if table.last_duration:
        last = table.last_duration * table.time_base
    elif pts.size >= 2:
        last = int(pts[-1] - pts[-2]) * table.time_base
    elif nominal_rate is not None:
        last = 1 / nominal_rate
    else:
        last = Fraction(0)
    return float(span + last)


def _is_variable_rate(times_s: np.ndarray, time_base: Fraction) -> bool:
    """Tell whether frame intervals differ from their median by more than jitter.

    The tolerance is 10 % of the median interval. It grows by one time-base tick when ticks
    are shorter than half an interval, because rounding times to ticks makes intervals differ
    by up to one tick (the 33/34 ms steps of 30 fps Matroska). When a tick is a whole frame
    interval (AVI), a one-tick step is a skipped frame and counts as variable.
    """
    intervals = np.diff(times_s)
    if intervals.size < 2:
        return False
    median = float(np.median(intervals))
    tick_s = float(time_base)
    rounding_s = tick_s if tick_s < median / 2 else 0.0
    tolerance = 0.1 * median + rounding_s + _TIMESTAMP_TOLERANCE_S
    return bool(np.any(np.abs(intervals - median) > tolerance))


def _rotation_deg(video: dict[str, Any]) -> int:
    """Return the clockwise display rotation, rounded to a quarter turn.

    ffprobe reports a display matrix as a counterclockwise angle and a `rotate` tag as a
    clockwise one. The matrix wins when both exist.
    """
    for side_data in video.get("side_data_list", []):
        if "rotation" in side_data:
            return _quarter_turns(-float(side_data["rotation"]))
    tag = video.get("tags", {}).get("rotate")
    if tag is not None:
        try:
            return _quarter_turns(float(tag))
        except ValueError:
            logger.warning("Ignoring a rotate tag that is not a number: %r", tag)
    return 0


def _quarter_turns(degrees: float) -> int:
    # NOTE: angles between quarter turns (e.g. 45 degrees) are rounded to the nearest one.
    return round(degrees / 90.0) % 4 * 90


def _fraction(text: object) -> Fraction | None:
    if not isinstance(text, str):
        return None
    numerator, _, denominator = text.replace(":", "/").partition("/")
    try:
        if int(denominator or 1) == 0:
            return None
        return Fraction(int(numerator), int(denominator or 1))
    except ValueError:
        return None


def _int_or_none(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None
