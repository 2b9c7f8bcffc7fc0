from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mp4e.errors import Cancelled, InvalidParameter
from mp4e.vision.decode import (
    VideoFrameSource,
    iter_sampled_frames,
    sample_indices,
)
from mp4e.vision.probe import frame_timestamps, probe_video

VFR_TIMESTAMPS = np.concatenate([np.arange(50) / 25, 2 + np.arange(20) / 10])
VFR_AT_5_FPS = [*range(0, 50, 5), *range(50, 70, 2)]
"""Below 2 s a target every 0.2 s hits every 5th frame at 25 fps, above it every 2nd at 10 fps."""

MAX_MEAN_PIXEL_DIFFERENCE = 1.0


def _mean_difference(image: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(image.astype(np.int16) - reference.astype(np.int16)).mean())


@pytest.mark.parametrize(
    ("timestamps", "fps", "expected"),
    [
        pytest.param(np.arange(50) / 25, 5, list(range(0, 50, 5)), id="25fps-at-5"),
        pytest.param(np.arange(50) / 25, 25, list(range(50)), id="every-frame"),
        pytest.param(np.arange(50) / 25, 100, list(range(50)), id="faster-than-video"),
        pytest.param(np.arange(50) / 25, 0.5, [0], id="slower-than-clip"),
        pytest.param(np.array([0.0]), 5, [0], id="one-frame"),
        pytest.param(np.array([]), 5, [], id="no-frames"),
        pytest.param(VFR_TIMESTAMPS, 5, VFR_AT_5_FPS, id="variable-rate"),
        pytest.param(np.array([0.0, 0.5, 0.5, 1.0]), 2, [0, 2, 3], id="equal-times-take-last"),
    ],
)
def test_sample_indices_by_presentation_time(
    timestamps: np.ndarray, fps: float, expected: list[int]
) -> None:
    indices = sample_indices(timestamps, fps)

    assert indices.dtype == np.int64
    assert indices.tolist() == expected


@pytest.mark.parametrize(
    "fps",
    [
        pytest.param(0, id="zero"),
        pytest.param(-5, id="negative"),
        pytest.param(float("nan"), id="nan"),
        pytest.param(float("inf"), id="infinite"),
        pytest.param(5000, id="too-high"),
    ],
)
def test_sample_indices_rejects_invalid_fps(fps: float) -> None:
    with pytest.raises(InvalidParameter) as caught:
        sample_indices(np.arange(10) / 25, fps)

    assert caught.value.field == "fps"


def test_iter_sampled_frames_constant_rate_uses_decord(cfr_mp4: Path) -> None:
    sampler = iter_sampled_frames(cfr_mp4, 5)

    frames = list(sampler)

    assert sampler.backend_used == "decord"
    assert sampler.fallback_reason is None
    assert [frame.index for frame in frames] == list(range(0, 50, 5))


def test_iter_sampled_frames_variable_rate_uses_pyav(
    vfr_mp4: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="mp4e.vision.decode"):
        sampler = iter_sampled_frames(vfr_mp4, 5)
        frames = list(sampler)

    assert sampler.backend_used == "pyav"
    assert "variable" in (sampler.fallback_reason or "")
    assert "instead of decord" in caplog.text
    assert [frame.index for frame in frames] == VFR_AT_5_FPS
    times = [frame.time_s for frame in frames]
    np.testing.assert_allclose(times, VFR_TIMESTAMPS[VFR_AT_5_FPS], atol=1e-9)


def test_iter_sampled_frames_vp9_webm_uses_pyav(live_webm: Path) -> None:
    sampler = iter_sampled_frames(live_webm, 5)

    frames = list(sampler)

    assert sampler.backend_used == "pyav"
    assert "VP9" in (sampler.fallback_reason or "")
    assert [frame.index for frame in frames] == list(range(0, 50, 5))


def test_iter_sampled_frames_decord_error_uses_pyav(live_h264_mkv: Path) -> None:
    sampler = iter_sampled_frames(live_h264_mkv, 5)

    frames = list(sampler)

    assert sampler.backend_used == "pyav"
    assert "decord cannot open" in (sampler.fallback_reason or "")
    assert len(frames) == 10


@pytest.mark.parametrize(
    "fixture",
    [
        pytest.param("vfr_mp4", id="variable-rate"),
        pytest.param("live_webm", id="live-webm"),
        pytest.param("trimmed_mp4", id="edit-list"),
        pytest.param("gapped_avi", id="avi-skipped-frames"),
    ],
)
def test_iter_sampled_frames_pyav_matches_sample_indices(
    fixture: str, request: pytest.FixtureRequest, ffmpeg_frames: Callable[..., np.ndarray]
) -> None:
    path: Path = request.getfixturevalue(fixture)
    timestamps = frame_timestamps(path)
    reference = ffmpeg_frames(path)

    frames = list(iter_sampled_frames(path, 7, backend="pyav"))

    assert [frame.index for frame in frames] == sample_indices(timestamps, 7).tolist()
    for frame in frames:
        assert frame.time_s == timestamps[frame.index]
        assert _mean_difference(frame.image, reference[frame.index]) < MAX_MEAN_PIXEL_DIFFERENCE


def test_iter_sampled_frames_backends_agree(cfr_mp4: Path) -> None:
    decord_frames = list(iter_sampled_frames(cfr_mp4, 10, backend="decord"))
    pyav_frames = list(iter_sampled_frames(cfr_mp4, 10, backend="pyav"))

    assert [f.index for f in decord_frames] == [f.index for f in pyav_frames]
    assert [f.time_s for f in decord_frames] == [f.time_s for f in pyav_frames]
    for ours, theirs in zip(decord_frames, pyav_frames, strict=True):
        assert ours.image.shape == theirs.image.shape
        assert _mean_difference(ours.image, theirs.image) < MAX_MEAN_PIXEL_DIFFERENCE


@pytest.mark.parametrize("backend", ["decord", "pyav"])
@pytest.mark.parametrize("rotate_tag", [90, 180, 270])
def test_iter_sampled_frames_applies_rotation(
    backend: str,
    rotate_tag: int,
    rotated_mp4: Callable[[int], Path],
    ffmpeg_frames: Callable[..., np.ndarray],
) -> None:
    path = rotated_mp4(rotate_tag)
    reference = ffmpeg_frames(path)

    frames = list(iter_sampled_frames(path, 5, backend=backend))  # type: ignore[arg-type]

    expected_shape = (160, 120, 3) if rotate_tag in (90, 270) else (120, 160, 3)
    for frame in frames:
        assert frame.image.shape == expected_shape
        assert frame.image.dtype == np.uint8
        assert _mean_difference(frame.image, reference[frame.index]) < MAX_MEAN_PIXEL_DIFFERENCE


@pytest.mark.parametrize("fixture", ["cfr_mp4", "vfr_mp4"])
def test_iter_sampled_frames_should_stop_raises_cancelled(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    path: Path = request.getfixturevalue(fixture)
    received: list[int] = []
    sampler = iter_sampled_frames(path, 5, should_stop=lambda: len(received) >= 2)

    with pytest.raises(Cancelled):
        for frame in sampler:
            received.append(frame.index)

    assert received == [0, 5]


def test_iter_sampled_frames_cuda_falls_back_to_cpu(
    cfr_mp4: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="mp4e.vision.decode"):
        sampler = iter_sampled_frames(cfr_mp4, 5, device="cuda")
        frames = list(sampler)

    assert sampler.backend_used == "decord"
    assert "on the CPU" in caplog.text
    assert len(frames) == 10


def test_iter_sampled_frames_accepts_given_probe(vfr_mp4: Path) -> None:
    probe = probe_video(vfr_mp4)

    frames = list(iter_sampled_frames(vfr_mp4, 5, probe=probe))

    assert [frame.index for frame in frames] == VFR_AT_5_FPS


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        pytest.param("backend", "opencv", id="backend"),
        pytest.param("device", "tpu", id="device"),
    ],
)
def test_iter_sampled_frames_rejects_unknown_choice(
    cfr_mp4: Path, argument: str, value: str
) -> None:
    with pytest.raises(InvalidParameter) as caught:
        iter_sampled_frames(cfr_mp4, 5, **{argument: value})  # type: ignore[arg-type]

    assert caught.value.field == argument


@pytest.mark.parametrize(
    ("fixture", "backend"),
    [
        pytest.param("cfr_mp4", "decord", id="constant-rate"),
        pytest.param("vfr_mp4", "pyav", id="variable-rate"),
        pytest.param("live_webm", "pyav", id="live-webm"),
    ],
)
def test_video_frame_source_reads_backwards(
    fixture: str,
    backend: str,
    request: pytest.FixtureRequest,
    ffmpeg_frames: Callable[..., np.ndarray],
) -> None:
    path: Path = request.getfixturevalue(fixture)
    reference = ffmpeg_frames(path)

    with VideoFrameSource(path) as source:
        chunks = [
            (max(stop - 16, 0), stop, source.read(max(stop - 16, 0), stop))
            for stop in range(source.frame_count, 0, -16)
        ]

    assert source.backend_used == backend
    assert source.frame_count == len(reference)
    for start, stop, images in chunks:
        assert len(images) == stop - start
        for index, image in enumerate(images, start=start):
            assert _mean_difference(image, reference[index]) < MAX_MEAN_PIXEL_DIFFERENCE


def test_video_frame_source_pyav_random_reads(
    vfr_mp4: Path, ffmpeg_frames: Callable[..., np.ndarray]
) -> None:
    reference = ffmpeg_frames(vfr_mp4)
    ranges = [(66, 70), (0, 3), (30, 31), (31, 45), (10, 12), (26, 26), (50, 66), (69, 70)]

    with VideoFrameSource(vfr_mp4, backend="pyav") as source:
        reads = [(start, source.read(start, stop)) for start, stop in ranges]

    for (start, images), (_, stop) in zip(reads, ranges, strict=True):
        assert len(images) == stop - start
        for index, image in enumerate(images, start=start):
            assert _mean_difference(image, reference[index]) < MAX_MEAN_PIXEL_DIFFERENCE


def test_video_frame_source_describes_rotated_frames(
    rotated_mp4: Callable[[int], Path],
) -> None:
    path = rotated_mp4(90)

    with VideoFrameSource(path) as source:
        first = source.read(0, 1)[0]

    assert source.frame_size_wh == (120, 160)
    assert first.shape == (160, 120, 3)
    assert source.timestamps.shape == (50,)


@pytest.mark.parametrize(
    ("start", "stop"),
    [
        pytest.param(-1, 3, id="negative-start"),
        pytest.param(5, 4, id="reversed"),
        pytest.param(0, 51, id="past-end"),
    ],
)
def test_video_frame_source_rejects_range_outside_video(
    cfr_mp4: Path, start: int, stop: int
) -> None:
    with VideoFrameSource(cfr_mp4) as source, pytest.raises(InvalidParameter):
        source.read(start, stop)
