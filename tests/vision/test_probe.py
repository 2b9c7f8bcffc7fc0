from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mp4e.errors import CorruptMedia, EmptyFile, NoVideoStream, UnsupportedMedia
from mp4e.vision.probe import (
    frame_timestamps,
    probe_video,
    probe_video_with_timestamps,
    validate_media,
)


def _ffprobe_json(path: Path, *args: str) -> dict:
    command = ["ffprobe", "-v", "error", "-print_format", "json", *args, str(path)]
    result = subprocess.run(command, check=True, capture_output=True, text=True, timeout=60)
    return json.loads(result.stdout)


def _copy_as(source: Path, directory: Path, name: str) -> Path:
    target = directory / name
    shutil.copyfile(source, target)
    return target


@pytest.mark.parametrize(
    "fixture",
    [
        pytest.param("cfr_mp4", id="h264-mp4"),
        pytest.param("vfr_mp4", id="variable-rate"),
        pytest.param("live_webm", id="live-webm"),
        pytest.param("msmpeg4_avi", id="msmpeg4-avi"),
        pytest.param("one_frame_mp4", id="one-frame"),
        pytest.param("trimmed_mp4", id="edit-list"),
        pytest.param("long_audio_mp4", id="long-audio"),
    ],
)
def test_validate_media_accepts_video(fixture: str, request: pytest.FixtureRequest) -> None:
    path: Path = request.getfixturevalue(fixture)

    validate_media(path)


def test_validate_media_rejects_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.touch()

    with pytest.raises(EmptyFile):
        validate_media(path)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        pytest.param("noise.mp4", os.urandom(64 * 1024), id="random-bytes"),
        pytest.param("noise.mp3", os.urandom(64 * 1024), id="random-bytes-named-mp3"),
        pytest.param("notes.txt", b"The quick brown fox.\n" * 200, id="text-named-txt"),
        pytest.param("notes.mp4", b"The quick brown fox.\n" * 200, id="text-named-mp4"),
    ],
)
def test_validate_media_rejects_non_media(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)

    with pytest.raises(CorruptMedia) as caught:
        validate_media(path)

    assert caught.value.details["reason"]


def test_validate_media_rejects_audio_only(audio_m4a: Path) -> None:
    with pytest.raises(NoVideoStream) as caught:
        validate_media(audio_m4a)

    assert caught.value.message == "The file has no video stream (found: audio)."


def test_validate_media_rejects_cover_art_only(cover_art_m4a: Path) -> None:
    with pytest.raises(NoVideoStream) as caught:
        validate_media(cover_art_m4a)

    assert caught.value.details["found"] == "audio, cover art"


def test_validate_media_rejects_missing_moov(missing_moov_mp4: Path) -> None:
    with pytest.raises(CorruptMedia) as caught:
        validate_media(missing_moov_mp4)

    assert "moov atom not found" in caught.value.details["reason"]


def test_validate_media_rejects_undecodable_first_frame(bad_first_frame_mp4: Path) -> None:
    with pytest.raises(CorruptMedia) as caught:
        validate_media(bad_first_frame_mp4)

    assert caught.value.message == "The first video frame cannot be decoded."


def test_validate_media_rejects_still_image(still_png: Path) -> None:
    with pytest.raises(UnsupportedMedia):
        validate_media(still_png)


def test_validate_media_judges_content_not_name(
    tmp_path: Path, cfr_mp4: Path, audio_m4a: Path
) -> None:
    video_named_text = _copy_as(cfr_mp4, tmp_path, "clip.txt")
    audio_named_video = _copy_as(audio_m4a, tmp_path, "clip.mp4")

    validate_media(video_named_text)
    with pytest.raises(NoVideoStream):
        validate_media(audio_named_video)


def test_probe_video_constant_rate_h264(cfr_mp4: Path) -> None:
    probe = probe_video(cfr_mp4)

    assert probe.container.split(",")[0] == "mov"
    assert probe.video_codec == "h264"
    assert (probe.width, probe.height) == (160, 120)
    assert (probe.coded_width, probe.coded_height) == (160, 120)
    assert probe.rotation_deg == 0
    assert probe.sample_aspect_ratio == 1.0
    assert probe.frame_count == 50
    assert probe.frame_count_source == "packets"
    assert probe.duration_s == pytest.approx(2.0)
    assert probe.fps == pytest.approx(25.0)
    assert probe.nominal_fps == pytest.approx(25.0)
    assert not probe.variable_frame_rate
    assert not probe.has_audio
    assert probe.size_bytes == cfr_mp4.stat().st_size
    assert probe.start_time_s == 0.0


def test_probe_video_variable_frame_rate(vfr_mp4: Path) -> None:
    probe = probe_video(vfr_mp4)

    assert probe.frame_count == 70
    assert probe.duration_s == pytest.approx(4.0)
    assert probe.fps == pytest.approx(70 / probe.duration_s)
    assert probe.variable_frame_rate


def test_frame_timestamps_variable_frame_rate(vfr_mp4: Path) -> None:
    expected = np.concatenate([np.arange(50) / 25, 2 + np.arange(20) / 10])

    timestamps = frame_timestamps(vfr_mp4)

    assert timestamps.dtype == np.float64
    np.testing.assert_allclose(timestamps, expected, atol=1e-9)


def test_frame_timestamps_with_probe_match_full_probe(vfr_mp4: Path) -> None:
    probe, expected = probe_video_with_timestamps(vfr_mp4)

    timestamps = frame_timestamps(vfr_mp4, probe=probe)

    np.testing.assert_array_equal(timestamps, expected)


def test_probe_video_live_webm_without_duration(live_webm: Path) -> None:
    header = _ffprobe_json(live_webm, "-show_format", "-show_streams")
    assert "duration" not in header["format"]
    assert all("duration" not in stream for stream in header["streams"])

    probe = probe_video(live_webm)

    assert probe.video_codec == "vp9"
    assert probe.frame_count == 50
    assert probe.duration_s == pytest.approx(2.0)
    assert probe.fps == pytest.approx(25.0)
    assert probe.has_audio


def test_probe_video_audio_longer_than_video(long_audio_mp4: Path) -> None:
    probe = probe_video(long_audio_mp4)

    assert probe.has_audio
    assert probe.frame_count == 25
    assert probe.duration_s == pytest.approx(1.0)
    assert probe.fps == pytest.approx(25.0)


def test_probe_video_one_frame(one_frame_mp4: Path) -> None:
    probe = probe_video(one_frame_mp4)

    assert probe.frame_count == 1
    assert probe.duration_s == pytest.approx(0.04)
    assert not probe.variable_frame_rate


@pytest.mark.parametrize("rotate_tag", [90, 270])
def test_probe_video_quarter_turn_swaps_size(
    rotate_tag: int, rotated_mp4: Callable[[int], Path]
) -> None:
    probe = probe_video(rotated_mp4(rotate_tag))

    assert probe.rotation_deg in (90, 270)
    assert (probe.width, probe.height) == (120, 160)
    assert (probe.coded_width, probe.coded_height) == (160, 120)
    assert probe.frame_size_wh == (120, 160)


def test_probe_video_half_turn_keeps_size(rotated_mp4: Callable[[int], Path]) -> None:
    probe = probe_video(rotated_mp4(180))

    assert probe.rotation_deg == 180
    assert (probe.width, probe.height) == (160, 120)


@pytest.mark.parametrize("rotate_tag", [90, 180, 270])
def test_probe_video_rotation_is_clockwise(
    rotate_tag: int,
    rotated_mp4: Callable[[int], Path],
    ffmpeg_frames: Callable[..., np.ndarray],
) -> None:
    path = rotated_mp4(rotate_tag)
    stored = ffmpeg_frames(path, autorotate=False)[0]
    displayed = ffmpeg_frames(path)[0]

    probe = probe_video(path)

    turned = np.rot90(stored, k=-probe.rotation_deg // 90)
    np.testing.assert_array_equal(turned, displayed)


def test_probe_video_sample_aspect_ratio(sar_mp4: Path) -> None:
    probe = probe_video(sar_mp4)

    assert probe.sample_aspect_ratio == 2.0
    assert (probe.width, probe.height) == (320, 120)
    assert (probe.coded_width, probe.coded_height) == (160, 120)
    assert probe.frame_size_wh == (160, 120)


def test_probe_video_msmpeg4_avi(msmpeg4_avi: Path) -> None:
    probe = probe_video(msmpeg4_avi)

    assert probe.container == "avi"
    assert probe.video_codec == "msmpeg4v3"
    assert probe.frame_count == 20
    assert probe.fps == pytest.approx(10.0)
    assert probe.duration_s == pytest.approx(2.0)


def test_probe_video_avi_with_skipped_frames(gapped_avi: Path) -> None:
    expected = np.concatenate([np.arange(20) / 10, 2 + np.arange(10) / 5])

    probe, timestamps = probe_video_with_timestamps(gapped_avi)

    assert probe.frame_count == 30
    assert probe.variable_frame_rate
    np.testing.assert_allclose(timestamps, expected, atol=1e-9)


def test_probe_video_counts_decoded_vp8_frames(vp8_webm: Path) -> None:
    probe = probe_video(vp8_webm)

    assert probe.frame_count_source == "decoded_frames"
    assert probe.frame_count == 50
    assert probe.duration_s == pytest.approx(2.0)


def test_probe_video_skips_discarded_packets(trimmed_mp4: Path) -> None:
    counts = _ffprobe_json(
        trimmed_mp4, "-count_frames", "-count_packets",
        "-show_entries", "stream=nb_read_frames,nb_read_packets",
    )["streams"][0]  # fmt: skip
    assert int(counts["nb_read_packets"]) > int(counts["nb_read_frames"])

    probe = probe_video(trimmed_mp4)

    assert probe.frame_count == int(counts["nb_read_frames"])


def test_probe_video_rejects_truncated_mp4(truncated_mp4: Path) -> None:
    validate_media(truncated_mp4)

    with pytest.raises(CorruptMedia) as caught:
        probe_video(truncated_mp4)

    assert caught.value.details["listed_frames"] == 50


def test_probe_video_rejects_audio_only(audio_m4a: Path) -> None:
    with pytest.raises(NoVideoStream):
        probe_video(audio_m4a)


@pytest.mark.slow
def test_probe_video_vtest_avi(vtest_avi: Path) -> None:
    probe = probe_video(vtest_avi)

    assert probe.video_codec == "msmpeg4v3"
    assert (probe.width, probe.height) == (768, 576)
    assert probe.frame_count == 795
    assert probe.fps == pytest.approx(10.0)
    assert probe.duration_s == pytest.approx(79.5)
    assert not probe.variable_frame_rate
