"""Small media files made with ffmpeg, and ffmpeg's own decoding as the reference.

The clips are 160x120 test patterns of at most 4 s, written once per session.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

FFMPEG_TIMEOUT_S = 60
VTEST_ENV = "MP4E_TEST_VTEST_AVI"


def _ffmpeg(*args: str, stdout_path: Path | None = None) -> None:
    command = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y", *args]
    if stdout_path is None:
        subprocess.run(command, check=True, timeout=FFMPEG_TIMEOUT_S)
        return
    with stdout_path.open("wb") as stdout:
        subprocess.run(command, check=True, timeout=FFMPEG_TIMEOUT_S, stdout=stdout)


def _pattern(seconds: float = 2, rate: int = 25) -> list[str]:
    return ["-f", "lavfi", "-i", f"testsrc2=size=160x120:rate={rate}:duration={seconds}"]


def _h264(*extra: str) -> list[str]:
    return ["-c:v", "libx264", "-pix_fmt", "yuv420p", *extra]


def _read_ppm_stream(data: bytes) -> np.ndarray:
    """Parse concatenated binary PPM (P6) images into an (N, H, W, 3) uint8 array."""
    frames = []
    offset = 0
    while offset < len(data):
        fields: list[bytes] = []
        while len(fields) < 4:
            while data[offset : offset + 1].isspace():
                offset += 1
            end = offset
            while not data[end : end + 1].isspace():
                end += 1
            fields.append(data[offset:end])
            offset = end
        offset += 1  # the single whitespace byte before the pixels
        width, height = int(fields[1]), int(fields[2])
        size = width * height * 3
        pixels = np.frombuffer(data, np.uint8, count=size, offset=offset)
        frames.append(pixels.reshape(height, width, 3))
        offset += size
    return np.stack(frames)


@pytest.fixture(scope="session")
def ffmpeg_frames() -> Callable[..., np.ndarray]:
    """Return a function that decodes every frame of a file with the ffmpeg CLI.

    Frames come out as RGB in display orientation (ffmpeg's autorotation), one per decoded
    frame. `autorotate=False` keeps the stored orientation.
    """

    def decode(path: Path, *, autorotate: bool = True) -> np.ndarray:
        rotation = [] if autorotate else ["-noautorotate"]
        command = [
            "ffmpeg", "-nostdin", "-hide_banner", "-v", "error", *rotation, "-i", str(path),
            "-map", "0:v:0", "-fps_mode", "passthrough",
            "-f", "image2pipe", "-c:v", "ppm", "-",
        ]  # fmt: skip
        result = subprocess.run(command, check=True, capture_output=True, timeout=60)
        return _read_ppm_stream(result.stdout)

    return decode


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        pytest.fail("ffmpeg and ffprobe must be on PATH")
    return tmp_path_factory.mktemp("vision-media")


@pytest.fixture(scope="session")
def cfr_mp4(media_dir: Path) -> Path:
    """2 s of H.264 at 25 fps (50 frames), B-frames, a keyframe every 25 frames."""
    path = media_dir / "cfr.mp4"
    _ffmpeg(*_pattern(), *_h264("-g", "25", "-bf", "2"), str(path))
    return path


@pytest.fixture(scope="session")
def vfr_mp4(media_dir: Path) -> Path:
    """50 frames at 25 fps, then 20 frames at 10 fps: 70 frames over 4 s."""
    path = media_dir / "vfr.mp4"
    timestamps_ms = "if(lt(N,50),N*40,2000+(N-50)*100)"
    _ffmpeg(
        *_pattern(seconds=3),
        "-frames:v", "70",
        "-vf", f"settb=1/1000,setpts='{timestamps_ms}'",
        "-fps_mode", "vfr", "-enc_time_base:v", "1/1000",
        *_h264("-g", "25"),
        str(path),
    )  # fmt: skip
    return path


@pytest.fixture(scope="session")
def live_webm(media_dir: Path) -> Path:
    """VP9 + Opus WebM written to a pipe, like a browser recorder: no duration in the header."""
    path = media_dir / "live.webm"
    _ffmpeg(
        *_pattern(),
        "-f", "lavfi", "-i", "sine=duration=2",
        "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8",
        "-c:a", "libopus", "-f", "webm", "pipe:1",
        stdout_path=path,
    )  # fmt: skip
    return path


@pytest.fixture(scope="session")
def vp8_webm(media_dir: Path) -> Path:
    path = media_dir / "vp8.webm"
    _ffmpeg(*_pattern(), "-c:v", "libvpx", "-deadline", "realtime", str(path))
    return path


@pytest.fixture(scope="session")
def live_h264_mkv(media_dir: Path) -> Path:
    """H.264 Matroska written to a pipe, which decord 0.6 rejects for lack of a duration."""
    path = media_dir / "live.mkv"
    _ffmpeg(*_pattern(), *_h264("-g", "25"), "-f", "matroska", "pipe:1", stdout_path=path)
    return path


@pytest.fixture(scope="session")
def rotated_mp4(media_dir: Path, cfr_mp4: Path) -> Callable[[int], Path]:
    """Return a function giving `cfr_mp4` remuxed with a `rotate` tag of the given degrees."""

    def make(rotate_tag: int) -> Path:
        path = media_dir / f"rotate-{rotate_tag}.mp4"
        if not path.exists():
            metadata = f"rotate={rotate_tag}"
            _ffmpeg("-i", str(cfr_mp4), "-c", "copy", "-metadata:s:v", metadata, str(path))
        return path

    return make


@pytest.fixture(scope="session")
def sar_mp4(media_dir: Path) -> Path:
    """160x120 stored pixels that are twice as wide as tall: displayed as 320x120."""
    path = media_dir / "sar.mp4"
    _ffmpeg(*_pattern(seconds=1), "-vf", "setsar=2", *_h264(), str(path))
    return path


@pytest.fixture(scope="session")
def one_frame_mp4(media_dir: Path) -> Path:
    path = media_dir / "one-frame.mp4"
    _ffmpeg(*_pattern(), "-frames:v", "1", *_h264(), str(path))
    return path


@pytest.fixture(scope="session")
def long_audio_mp4(media_dir: Path) -> Path:
    """1 s of video (25 frames) with 3 s of audio."""
    path = media_dir / "long-audio.mp4"
    _ffmpeg(
        *_pattern(seconds=1), "-f", "lavfi", "-i", "sine=duration=3",
        *_h264(), "-c:a", "aac", str(path),
    )  # fmt: skip
    return path


@pytest.fixture(scope="session")
def audio_m4a(media_dir: Path) -> Path:
    path = media_dir / "audio.m4a"
    _ffmpeg("-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", str(path))
    return path


@pytest.fixture(scope="session")
def still_png(media_dir: Path) -> Path:
    path = media_dir / "still.png"
    _ffmpeg(*_pattern(), "-frames:v", "1", str(path))
    return path


@pytest.fixture(scope="session")
def cover_art_m4a(media_dir: Path, audio_m4a: Path, still_png: Path) -> Path:
    """AAC audio with a JPEG cover picture (disposition attached_pic) and nothing else."""
    path = media_dir / "cover-art.m4a"
    _ffmpeg(
        "-i", str(audio_m4a), "-i", str(still_png), "-map", "0", "-map", "1",
        "-c:a", "copy", "-c:v", "mjpeg", "-disposition:v", "attached_pic", str(path),
    )  # fmt: skip
    return path


@pytest.fixture(scope="session")
def msmpeg4_avi(media_dir: Path) -> Path:
    """MS-MPEG4 v3 in AVI, the codec of OpenCV's vtest.avi: 2 s at 10 fps (20 frames)."""
    path = media_dir / "msmpeg4.avi"
    _ffmpeg(*_pattern(rate=10), "-c:v", "msmpeg4", str(path))
    return path


@pytest.fixture(scope="session")
def gapped_avi(media_dir: Path) -> Path:
    """MS-MPEG4 AVI with 20 frames at 10 fps, then 10 frames at 5 fps.

    AVI has no timestamps, so ffmpeg's muxer fills each gap with an empty chunk, which the
    header counts as a frame (39) though it decodes to nothing.
    """
    path = media_dir / "gapped.avi"
    _ffmpeg(
        *_pattern(seconds=3, rate=10),
        "-frames:v", "30", "-vf", "setpts='if(lt(N,20),N,20+(N-20)*2)'",
        "-fps_mode", "vfr", "-c:v", "msmpeg4",
        str(path),
    )  # fmt: skip
    return path


@pytest.fixture(scope="session")
def trimmed_mp4(media_dir: Path) -> Path:
    """A stream copy cut mid-GOP: its edit list marks the lead-in packets as discarded."""
    source = media_dir / "long-gop.mp4"
    _ffmpeg(*_pattern(), *_h264("-g", "250"), str(source))
    path = media_dir / "trimmed.mp4"
    _ffmpeg("-ss", "0.5", "-i", str(source), "-t", "1", "-c", "copy", str(path))
    return path


@pytest.fixture(scope="session")
def faststart_mp4(media_dir: Path) -> Path:
    """H.264 MP4 with its index (moov) before the media data, 50 frames in one GOP."""
    path = media_dir / "faststart.mp4"
    _ffmpeg(*_pattern(), *_h264("-g", "250", "-movflags", "+faststart"), str(path))
    return path


@pytest.fixture(scope="session")
def missing_moov_mp4(media_dir: Path, cfr_mp4: Path) -> Path:
    """The first half of an MP4 whose index (moov) sits at the end, so the index is lost."""
    path = media_dir / "missing-moov.mp4"
    data = cfr_mp4.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture(scope="session")
def truncated_mp4(media_dir: Path, faststart_mp4: Path) -> Path:
    """A fast-start MP4 cut after a third: the index is whole, the media data is not."""
    path = media_dir / "truncated.mp4"
    data = faststart_mp4.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


@pytest.fixture(scope="session")
def bad_first_frame_mp4(media_dir: Path, faststart_mp4: Path) -> Path:
    """A fast-start MP4 whose first frame's bytes are overwritten with garbage."""
    path = media_dir / "bad-first-frame.mp4"
    data = bytearray(faststart_mp4.read_bytes())
    media_start = data.index(b"mdat") + 4
    data[media_start : media_start + 2000] = b"\xab" * 2000
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="session")
def vtest_avi() -> Path:
    """OpenCV's vtest.avi (Debian package opencv-doc), located by MP4E_TEST_VTEST_AVI."""
    location = os.environ.get(VTEST_ENV)
    if not location or not Path(location).is_file():
        pytest.skip(f"set {VTEST_ENV} to the path of OpenCV's vtest.avi")
    return Path(location)
