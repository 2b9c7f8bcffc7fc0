"""Decode video frames: sampled by presentation time for detection, or all of them in chunks
for surface tracking.

decord decodes batches fast, and it is used where its frame index (one entry per packet) can be
trusted: constant frame rate, one video stream, a codec other than VP8/VP9, and the frame
count of the probe. PyAV decodes everything else. Images are RGB uint8 arrays of shape
(height, width, 3), turned upright by the display rotation. The sample aspect ratio is not
applied: a non-square-pixel video yields its stored pixels, whose normalised coordinates equal
those of the displayed picture.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import av
import numpy as np

from mp4e.errors import Cancelled, CorruptMedia, InvalidParameter
from mp4e.vision.probe import VideoProbe, frame_timestamps, probe_video_with_timestamps

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.frame import VideoFrame
    from av.video.stream import VideoStream

logger = logging.getLogger(__name__)

Backend = Literal["auto", "decord", "pyav"]
Device = Literal["cpu", "cuda"]

BATCH_MAX_BYTES = 32 * 2**20
"""Upper bound on the RGB bytes of one decord batch."""

BATCH_MAX_FRAMES = 32
"""Upper bound on the frames of one decord batch.

A batch read cannot be interrupted, so this bounds how long a cancel waits (32 frames decode
in well under a second at the 180-290 frames/s measured on 2 cores), and with
BATCH_MAX_BYTES how much memory a batch holds.
"""

MAX_SAMPLE_FPS = 1000.0

STOP_CHECK_INTERVAL_FRAMES = 32
"""PyAV decodes this many frames at most between two `should_stop` calls."""

SEQUENTIAL_READ_MAX_GAP = 64
"""A read this many frames ahead of the decoder continues decoding instead of seeking."""

TIME_TOLERANCE_S = 1e-6
"""Slack for comparing frame times with sampling targets (float rounding only)."""

TIME_MATCH_TOLERANCE_S = 5e-4
"""Largest difference at which a decoded frame's time identifies a probed frame."""

_DECORD_UNSUITABLE_CODECS = frozenset({"vp8", "vp9"})
_DECORD_LOG_PREFIX = re.compile(r"^\[[0-9:]+\] \S+:[0-9]+: ")


@dataclass(frozen=True)
class SampledFrame:
    """One decoded frame.

    `index` is the frame's position in the decoded presentation-order sequence (the index into
    `frame_timestamps`), `time_s` its presentation time after the first frame, and `image` an
    RGB uint8 array (height, width, 3) in display orientation. The sample aspect ratio is not
    applied, which leaves normalised coordinates unchanged.
    """

    index: int
    time_s: float
    image: np.ndarray


def sample_indices(timestamps: np.ndarray, fps: float) -> np.ndarray:
    """Return the sorted, distinct frame indices that sample the video at `fps`.

    The targets are the times k / fps for k = 0, 1, ... up to the last frame's time. Each
    target takes the last frame whose time is at or before it, so a variable frame rate is
    sampled by time, not by frame count. `timestamps` are seconds after the first frame,
    sorted (see `frame_timestamps`).
    """
    _check_fps(fps)
    times = np.asarray(timestamps, dtype=np.float64)
    if times.ndim != 1:
        raise InvalidParameter(
            f"Timestamps must be a 1-D array; got shape {times.shape}.", field="timestamps"
        )
    if times.size == 0:
        return np.empty(0, dtype=np.int64)

    last_s = float(times[-1])
    target_count = math.floor((last_s + TIME_TOLERANCE_S) * fps) + 2
    targets = np.arange(target_count, dtype=np.float64) / fps
    targets = targets[targets <= last_s + TIME_TOLERANCE_S]
    indices = np.searchsorted(times, targets + TIME_TOLERANCE_S, side="right") - 1
    return np.unique(indices[indices >= 0]).astype(np.int64)


class _SamplingClock:
    """Select frames at `fps` while decoding, with the same arithmetic as `sample_indices`."""

    def __init__(self, fps: float) -> None:
        self._fps = fps
        self._next_target = 0

    def takes(self, next_time_s: float) -> bool:
        """Tell whether the current frame is selected, given the time of the frame after it.

        Consumes the targets before `next_time_s`. Targets before the current frame were
        consumed by earlier frames, so any target consumed here selects the current frame.
        """
        first_target = self._next_target
        while self._next_target / self._fps + TIME_TOLERANCE_S < next_time_s:
            self._next_target += 1
        return self._next_target > first_target

    def takes_last(self, time_s: float) -> bool:
        """Tell whether the last frame, at `time_s`, is selected."""
        return self._next_target / self._fps <= time_s + TIME_TOLERANCE_S


def iter_sampled_frames(
    path: Path,
    fps: float,
    *,
    backend: Backend = "auto",
    device: Device = "cpu",
    should_stop: Callable[[], bool] | None = None,
    probe: VideoProbe | None = None,
) -> FrameSampler:
    """Decode the frames of `path` sampled at `fps` by presentation time.

    Returns a `FrameSampler`, an iterator of `SampledFrame` whose `backend_used` names the
    decoder that ran. With `backend="auto"`, decord decodes unless the frame rate is variable, the
    codec is VP8 or VP9, or decord fails; then PyAV does, and a WARNING names the reason.
    `device="cuda"` asks decord for the GPU and falls back to the CPU with a WARNING when
    decord has no CUDA support. PyAV always decodes on the CPU. `should_stop` is called
    between frames, and `Cancelled` is raised when it returns True. Pass the file's `probe`
    to skip probing the header.
    """
    return FrameSampler(
        path, fps, backend=backend, device=device, should_stop=should_stop, probe=probe
    )


class FrameSampler:
    """Iterator of `SampledFrame` for one video and one sampling rate.

    `backend_used` is "decord" or "pyav". It changes to "pyav" if decord fails partway, and
    `fallback_reason` then contains the reason. Close it (or use it as a context manager) to
    release the decoder before the iteration ends.
    """

    def __init__(
        self,
        path: Path,
        fps: float,
        *,
        backend: Backend = "auto",
        device: Device = "cpu",
        should_stop: Callable[[], bool] | None = None,
        probe: VideoProbe | None = None,
    ) -> None:
        _check_fps(fps)
        _check_choice("backend", backend, ("auto", "decord", "pyav"))
        _check_choice("device", device, ("cpu", "cuda"))
        self.path = Path(path)
        self.fps = float(fps)
        self._should_stop = should_stop
        self._timestamps: np.ndarray | None = None
        if probe is None:
            probe, self._timestamps = probe_video_with_timestamps(self.path)
        self.probe = probe

        self._decord, self.fallback_reason = _DecordReader.open_for(
            self.path, probe, backend, device
        )
        self.backend_used: Literal["decord", "pyav"] = "decord" if self._decord else "pyav"
        self._frames = self._generate()

    def __iter__(self) -> FrameSampler:
        return self

    def __next__(self) -> SampledFrame:
        return next(self._frames)

    def __enter__(self) -> FrameSampler:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop decoding and release the decoder."""
        self._frames.close()
        self._decord = None

    def _generate(self) -> Generator[SampledFrame, None, None]:
        try:
            yield from self._frames_with_fallback()
        finally:
            self._decord = None

    def _frames_with_fallback(self) -> Iterator[SampledFrame]:
        last_index = -1
        if self._decord is not None:
            try:
                for frame in self._decord_frames(self._decord):
                    last_index = frame.index
                    yield frame
                return
            except _DecordReader.errors() as exc:
                if not self._decord.may_fall_back:
                    raise CorruptMedia(
                        "decord failed to decode the video.", details={"reason": str(exc)}
                    ) from exc
                self.fallback_reason = f"decord failed: {_first_line(exc)}"
                logger.warning(
                    "Decoding %s with PyAV instead of decord from frame %d: %s",
                    self.path, last_index + 1, self.fallback_reason,
                )  # fmt: skip
                self.backend_used = "pyav"
                self._decord = None
        yield from self._pyav_frames(after_index=last_index)

    def _decord_frames(self, reader: _DecordReader) -> Iterator[SampledFrame]:
        if self._timestamps is None:
            self._timestamps = frame_timestamps(self.path, probe=self.probe)
        timestamps = self._timestamps
        indices = sample_indices(timestamps, self.fps)
        width, height = self.probe.frame_size_wh
        batch_size = max(1, min(BATCH_MAX_FRAMES, BATCH_MAX_BYTES // (width * height * 3)))

        for batch_start in range(0, indices.size, batch_size):
            batch = indices[batch_start : batch_start + batch_size]
            self._raise_if_stopped()
            images = reader.read(batch.tolist())
            for index, image in zip(batch.tolist(), images, strict=True):
                self._raise_if_stopped()
                yield SampledFrame(index, float(timestamps[index]), image)

    def _pyav_frames(self, *, after_index: int) -> Iterator[SampledFrame]:
        """Decode every frame and yield those the clock selects, skipping up to `after_index`.

        A frame is selected only once the next frame's time is known, so one decoded frame
        waits in `pending`.
        """
        clock = _SamplingClock(self.fps)
        pending: tuple[int, float, VideoFrame] | None = None
        with _PyAVDecoder(self.path, self.probe) as decoder:
            for index, time_s, frame in decoder.timed_frames():
                if index % STOP_CHECK_INTERVAL_FRAMES == 0:
                    self._raise_if_stopped()
                # The clock must consume its targets even for frames that are skipped.
                selected = pending is not None and clock.takes(time_s)
                if selected and pending is not None and pending[0] > after_index:
                    self._raise_if_stopped()
                    yield decoder.finish(pending)
                pending = (index, time_s, frame)

            if pending is not None and clock.takes_last(pending[1]) and pending[0] > after_index:
                self._raise_if_stopped()
                yield decoder.finish(pending)

    def _raise_if_stopped(self) -> None:
        if self._should_stop is not None and self._should_stop():
            raise Cancelled("Frame decoding was cancelled.")


class VideoFrameSource:
    """All frames of a video, read in chunks by index, for the surface tracker.

    `frame_count`, `timestamps` (seconds after the first frame) and `frame_size_wh` (decoded
    size turned by the display rotation, without the sample aspect ratio) describe the
    frames that `read` returns. decord serves reads when it suits the video (see
    `iter_sampled_frames`); otherwise PyAV seeks to the keyframe before a chunk and decodes
    forward. Not thread-safe.
    """

    def __init__(
        self,
        path: Path,
        probe: VideoProbe | None = None,
        *,
        backend: Backend = "auto",
        device: Device = "cpu",
    ) -> None:
        _check_choice("backend", backend, ("auto", "decord", "pyav"))
        _check_choice("device", device, ("cpu", "cuda"))
        self.path = Path(path)
        if probe is None:
            probe, timestamps = probe_video_with_timestamps(self.path)
        else:
            timestamps = frame_timestamps(self.path, probe=probe)
        self.probe = probe
        self.timestamps = timestamps
        self.frame_count = int(timestamps.size)
        self.frame_size_wh = probe.frame_size_wh

        self._decord, self.fallback_reason = _DecordReader.open_for(
            self.path, probe, backend, device
        )
        self.backend_used: Literal["decord", "pyav"] = "decord" if self._decord else "pyav"
        self._pyav: _PyAVFrameReader | None = None

    def read(self, start: int, stop: int) -> list[np.ndarray]:
        """Return the RGB frames with indices in [start, stop), in display orientation.

        Raises `InvalidParameter` for a range outside 0..frame_count and `CorruptMedia` when
        the frames cannot be decoded.
        """
        self._check_range(start, stop)
        if start == stop:
            return []

        if self._decord is not None:
            try:
                return self._decord.read(list(range(start, stop)))
            except _DecordReader.errors() as exc:
                if not self._decord.may_fall_back:
                    raise CorruptMedia(
                        "decord failed to decode the video.", details={"reason": str(exc)}
                    ) from exc
                self._switch_to_pyav(f"decord failed: {_first_line(exc)}")
        return self._pyav_reader().read(start, stop)

    def close(self) -> None:
        """Release the decoders."""
        self._decord = None
        if self._pyav is not None:
            self._pyav.close()
            self._pyav = None

    def __enter__(self) -> VideoFrameSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _check_range(self, start: int, stop: int) -> None:
        if not 0 <= start <= stop <= self.frame_count:
            raise InvalidParameter(
                f"Frame range [{start}, {stop}) is outside 0..{self.frame_count}.",
                field="start",
                details={"start": start, "stop": stop, "frame_count": self.frame_count},
            )

    def _switch_to_pyav(self, reason: str) -> None:
        logger.warning("Decoding %s with PyAV instead of decord: %s", self.path, reason)
        self.fallback_reason = reason
        self.backend_used = "pyav"
        self._decord = None

    def _pyav_reader(self) -> _PyAVFrameReader:
        if self._pyav is None:
            self._pyav = _PyAVFrameReader(self.path, self.probe, self.timestamps)
        return self._pyav


# --- decord --------------------------------------------------------------------------------


class _DecordOutputError(Exception):
    """Raised when decord returns frames of an unexpected shape."""


class _DecordReader:
    """A decord `VideoReader` whose frames come out in display orientation."""

    def __init__(self, reader: Any, probe: VideoProbe, *, on_gpu: bool, may_fall_back: bool):
        self._reader = reader
        self._probe = probe
        self._on_gpu = on_gpu
        self.may_fall_back = may_fall_back

    @staticmethod
    def errors() -> tuple[type[BaseException], ...]:
        from decord import DECORDError

        return (DECORDError, RuntimeError, _DecordOutputError)

    @classmethod
    def open_for(
        cls, path: Path, probe: VideoProbe, backend: Backend, device: Device
    ) -> tuple[_DecordReader | None, str | None]:
        """Open decord for `path`, or return None and the reason to decode with PyAV.

        The reason is None when PyAV was requested. A forced `backend="decord"` raises
        `CorruptMedia` instead of returning None.
        """
        if backend == "pyav":
            return None, None

        reason = _decord_unsuitable_reason(probe) if backend == "auto" else None
        reader = None
        if reason is None:
            try:
                reader = cls._open(path, probe, device, may_fall_back=backend == "auto")
            except ImportError as exc:
                if backend == "decord":
                    raise
                reason = f"decord is not installed ({exc})"
            except cls.errors() as exc:
                if backend == "decord":
                    raise CorruptMedia(
                        "decord cannot open the video.", details={"reason": str(exc)}
                    ) from exc
                reason = f"decord cannot open the file: {_first_line(exc)}"
        if reader is not None and backend == "auto" and reader.frame_count != probe.frame_count:
            reason = f"decord counts {reader.frame_count} frames, the probe {probe.frame_count}"
            reader = None

        if reason is not None:
            logger.warning("Decoding %s with PyAV instead of decord: %s", path, reason)
        return reader, reason

    @classmethod
    def _open(
        cls, path: Path, probe: VideoProbe, device: Device, *, may_fall_back: bool
    ) -> _DecordReader:
        import decord

        if device == "cuda":
            try:
                reader = decord.VideoReader(str(path), ctx=decord.gpu(0))
                return cls(reader, probe, on_gpu=True, may_fall_back=may_fall_back)
            except decord.DECORDError as exc:
                logger.warning(
                    "decord cannot decode on the GPU (%s); decoding %s on the CPU",
                    _first_line(exc), path,
                )  # fmt: skip
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0))
        return cls(reader, probe, on_gpu=False, may_fall_back=may_fall_back)

    @property
    def frame_count(self) -> int:
        return len(self._reader)

    def read(self, indices: list[int]) -> list[np.ndarray]:
        """Decode the frames at `indices` and return one RGB copy per frame."""
        batch = self._reader.get_batch(indices).asnumpy()
        if self._on_gpu:
            # NOTE: decord's source turns frames by the display rotation only on the CPU, so GPU
            # frames are turned here. This path is untested because PyPI's decord has no CUDA.
            images = [_rotate(image, self._probe.rotation_deg) for image in batch]
        else:
            images = [np.array(image) for image in batch]

        width, height = self._probe.frame_size_wh
        for image in images:
            if image.shape != (height, width, 3):
                raise _DecordOutputError(
                    f"decord returned a frame of shape {image.shape}, expected {(height, width, 3)}"
                )
        return images


def _decord_unsuitable_reason(probe: VideoProbe) -> str | None:
    if probe.variable_frame_rate:
        return "the frame rate is variable"
    if probe.video_codec in _DECORD_UNSUITABLE_CODECS:
        return f"decord mishandles {probe.video_codec.upper()} WebM from browsers"
    if probe.video_stream_count > 1:
        return f"the file has {probe.video_stream_count} video streams and decord picks its own"
    return None


# --- PyAV ----------------------------------------------------------------------------------


class _PyAVDecoder:
    """A PyAV container that decodes one video stream in presentation order."""

    def __init__(self, path: Path, probe: VideoProbe) -> None:
        self._path = path
        self._rotation_deg = probe.rotation_deg
        try:
            self._container: InputContainer = av.open(str(path))
        except (av.FFmpegError, OSError) as exc:
            raise CorruptMedia("PyAV cannot open the video.", details={"reason": str(exc)}) from exc
        streams = self._container.streams
        index = probe.video_stream_index
        stream = streams[index] if index < len(streams) else None
        if not isinstance(stream, av.VideoStream):
            self._container.close()
            raise CorruptMedia(
                f"PyAV finds no video stream at index {index}, where ffprobe found one.",
                details={"stream_index": index},
            )
        self._stream: VideoStream = stream
        self._stream.codec_context.thread_type = "AUTO"
        time_base = self._stream.time_base
        if time_base is None or time_base <= 0:
            self._container.close()
            raise CorruptMedia("The video stream has no valid time base.")
        self._time_base: Fraction = time_base
        self.first_pts: int | None = None

    def __enter__(self) -> _PyAVDecoder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def frames(self) -> Generator[VideoFrame, None, None]:
        """Decode from the current position to the end of the stream."""
        skipped = 0
        try:
            for packet in self._container.demux(self._stream):
                if packet.size == 0:
                    continue  # an empty packet would end the decoder's input early
                try:
                    yield from packet.decode()
                except av.InvalidDataError as exc:
                    skipped += 1
                    if skipped == 1:
                        logger.warning("Skipping undecodable packets in %s: %s", self._path, exc)
            yield from self._stream.codec_context.decode(None)
        except av.EOFError:
            return
        except av.FFmpegError as exc:
            raise CorruptMedia(
                "The video stream cannot be decoded.", details={"reason": str(exc)}
            ) from exc

    def timed_frames(self) -> Iterator[tuple[int, float, VideoFrame]]:
        """Decode from the start and yield (index, seconds after the first frame, frame)."""
        previous_s = 0.0
        for index, frame in enumerate(self.frames()):
            time_s = self.relative_time_s(frame)
            time_s = previous_s if time_s is None else max(time_s, previous_s)
            previous_s = time_s
            yield index, time_s, frame

    def relative_time_s(self, frame: VideoFrame) -> float | None:
        """Return the frame's time after the first frame, as `frame_timestamps` computes it.

        The first frame passed in sets the time origin, so decoding must start at the first
        frame of the stream.
        """
        pts = frame.pts if frame.pts is not None else frame.dts
        if pts is None:
            return None
        if self.first_pts is None:
            self.first_pts = pts
        ticks = float(pts - self.first_pts)
        return ticks * self._time_base.numerator / self._time_base.denominator

    def seek_s(self, time_s: float) -> None:
        """Seek to the keyframe at or before `time_s` seconds after the first frame.

        The first frame must have been decoded, because times count from it.
        """
        assert self.first_pts is not None
        ticks = math.floor(time_s * self._time_base.denominator / self._time_base.numerator)
        offset = self.first_pts + ticks
        try:
            self._container.seek(offset, stream=self._stream, backward=True, any_frame=False)
        except av.FFmpegError as exc:
            raise CorruptMedia(
                "Seeking in the video failed.", details={"reason": str(exc)}
            ) from exc
        self._stream.codec_context.flush_buffers()

    def to_rgb(self, frame: VideoFrame) -> np.ndarray:
        return _rotate(frame.to_ndarray(format="rgb24"), self._rotation_deg)

    def finish(self, sampled: tuple[int, float, VideoFrame]) -> SampledFrame:
        index, time_s, frame = sampled
        return SampledFrame(index, time_s, self.to_rgb(frame))


class _PyAVFrameReader:
    """Random-access reads over PyAV: seek to a keyframe, then decode forward."""

    def __init__(self, path: Path, probe: VideoProbe, timestamps: np.ndarray) -> None:
        self._path = path
        self._probe = probe
        self._timestamps = timestamps
        self._decoder = _PyAVDecoder(path, probe)
        self._frames = self._frames_from_start()
        self._next_index = 0

    def close(self) -> None:
        self._frames.close()
        self._decoder.close()

    def read(self, start: int, stop: int) -> list[np.ndarray]:
        gap = start - self._next_index
        if not 0 <= gap <= SEQUENTIAL_READ_MAX_GAP:
            self._seek(start)

        images: list[np.ndarray] = []
        while self._next_index < stop:
            item = next(self._frames, None)
            if item is None:
                raise CorruptMedia(
                    f"The video ended after frame {self._next_index - 1}; frames up to "
                    f"{stop - 1} were expected.",
                    details={"start": start, "stop": stop, "decoded": self._next_index},
                )
            index, frame = item
            self._next_index = index + 1
            if start <= index < stop:
                images.append(self._decoder.to_rgb(frame))
        return images

    def _frames_from_start(self) -> Generator[tuple[int, VideoFrame], None, None]:
        """Decode the first frame now, which fixes the time origin, and return all frames."""
        frames = self._decoder.frames()
        first = next(frames, None)
        if first is None:
            raise CorruptMedia(
                "The video has no decodable frame.", details={"path": str(self._path)}
            )
        self._decoder.relative_time_s(first)
        return self._indexed(frames, 0, first)

    def _seek(self, start: int) -> None:
        """Position the decoder so that its next frame has an index at or before `start`."""
        self._frames.close()
        back_s = 0.0
        while True:
            target_s = float(self._timestamps[start]) - back_s
            if target_s <= 0:
                self._restart()
                return
            self._decoder.seek_s(target_s)
            frames = self._decoder.frames()
            first = next(frames, None)
            first_index = None if first is None else self._index_of(first)
            if first is None or first_index is None:
                frames.close()
                self._restart()
                return
            if first_index <= start:
                self._frames = self._indexed(frames, first_index, first)
                self._next_index = first_index
                return
            frames.close()
            back_s = max(1.0, 2 * back_s)

    def _restart(self) -> None:
        """Reopen the file and decode from its first frame."""
        self._decoder.close()
        self._decoder = _PyAVDecoder(self._path, self._probe)
        self._frames = self._frames_from_start()
        self._next_index = 0

    def _indexed(
        self, frames: Iterator[VideoFrame], first_index: int, first: VideoFrame
    ) -> Generator[tuple[int, VideoFrame], None, None]:
        """Yield `first` with `first_index`, then number the following `frames`.

        A frame's index is found by its time in the probed timestamps, else it is one after
        the previous frame's.
        """
        previous = first_index
        yield first_index, first
        for frame in frames:
            index = self._index_of(frame)
            index = previous + 1 if index is None or index <= previous else index
            previous = index
            yield index, frame

    def _index_of(self, frame: VideoFrame) -> int | None:
        time_s = self._decoder.relative_time_s(frame)
        if time_s is None:
            return None
        position = int(np.searchsorted(self._timestamps, time_s - TIME_MATCH_TOLERANCE_S))
        if position == self._timestamps.size:
            return None
        if abs(float(self._timestamps[position]) - time_s) > TIME_MATCH_TOLERANCE_S:
            return None
        return position


# --- shared --------------------------------------------------------------------------------


def _rotate(image: np.ndarray, rotation_deg: int) -> np.ndarray:
    """Turn an image clockwise by `rotation_deg` (a multiple of 90)."""
    if rotation_deg % 360 == 0:
        return np.ascontiguousarray(image)
    return np.ascontiguousarray(np.rot90(image, k=-(rotation_deg // 90)))


def _check_fps(fps: float) -> None:
    if not isinstance(fps, int | float) or not math.isfinite(fps) or not 0 < fps <= MAX_SAMPLE_FPS:
        raise InvalidParameter(
            f"Sampling rate must be a number in (0, {MAX_SAMPLE_FPS:g}] frames per second; "
            f"got {fps!r}.",
            field="fps",
            details={"value": repr(fps)},
        )


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InvalidParameter(
            f"Unknown {name} {value!r}; expected one of {', '.join(allowed)}.",
            field=name,
            details={"value": value, "allowed": list(allowed)},
        )


def _first_line(exc: BaseException) -> str:
    """Return the first line of an error message, without decord's time and source prefix."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return _DECORD_LOG_PREFIX.sub("", line)
