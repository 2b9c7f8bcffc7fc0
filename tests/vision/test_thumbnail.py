from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from mp4e.errors import InvalidParameter
from mp4e.vision.probe import probe_video
from mp4e.vision.thumbnail import write_thumbnail


def _read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"{path} is not a readable image"
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _closest_frame(image: np.ndarray, frames: np.ndarray) -> int:
    differences = np.abs(frames.astype(np.int16) - image.astype(np.int16)).mean(axis=(1, 2, 3))
    return int(np.argmin(differences))


def test_write_thumbnail_defaults_to_tenth_of_duration(
    tmp_path: Path, cfr_mp4: Path, ffmpeg_frames: Callable[..., np.ndarray]
) -> None:
    out_path = tmp_path / "thumb.jpg"

    write_thumbnail(cfr_mp4, out_path)

    image = _read_rgb(out_path)
    assert image.shape == (120, 160, 3)
    assert _closest_frame(image, ffmpeg_frames(cfr_mp4)) == 5


@pytest.mark.parametrize(
    ("time_s", "expected_index"),
    [
        pytest.param(1.0, 25, id="inside"),
        pytest.param(-3.0, 0, id="before-start"),
        pytest.param(100.0, 69, id="past-end"),
        pytest.param(3.95, 69, id="during-last-frame"),
        pytest.param(2.15, 51, id="between-slow-frames"),
    ],
)
def test_write_thumbnail_picks_frame_shown_at_time(
    tmp_path: Path,
    vfr_mp4: Path,
    ffmpeg_frames: Callable[..., np.ndarray],
    time_s: float,
    expected_index: int,
) -> None:
    out_path = tmp_path / "thumb.jpg"

    write_thumbnail(vfr_mp4, out_path, time_s=time_s)

    assert _closest_frame(_read_rgb(out_path), ffmpeg_frames(vfr_mp4)) == expected_index


def test_write_thumbnail_one_frame_video(tmp_path: Path, one_frame_mp4: Path) -> None:
    out_path = tmp_path / "thumb.jpg"

    write_thumbnail(one_frame_mp4, out_path)

    assert _read_rgb(out_path).shape == (120, 160, 3)


def test_write_thumbnail_is_upright(
    tmp_path: Path, rotated_mp4: Callable[[int], Path], ffmpeg_frames: Callable[..., np.ndarray]
) -> None:
    path = rotated_mp4(90)
    out_path = tmp_path / "thumb.jpg"

    write_thumbnail(path, out_path, time_s=0.0)

    image = _read_rgb(out_path)
    assert image.shape == (160, 120, 3)
    assert _closest_frame(image, ffmpeg_frames(path)) == 0


def test_write_thumbnail_squares_pixels(tmp_path: Path, sar_mp4: Path) -> None:
    out_path = tmp_path / "thumb.jpg"

    write_thumbnail(sar_mp4, out_path)

    assert _read_rgb(out_path).shape == (120, 320, 3)


def test_write_thumbnail_caps_width(tmp_path: Path, cfr_mp4: Path) -> None:
    out_path = tmp_path / "thumb.jpg"

    write_thumbnail(cfr_mp4, out_path, max_width=80)

    assert _read_rgb(out_path).shape == (60, 80, 3)


def test_write_thumbnail_uses_given_probe(tmp_path: Path, live_webm: Path) -> None:
    out_path = tmp_path / "thumb.jpg"

    write_thumbnail(live_webm, out_path, probe=probe_video(live_webm))

    assert _read_rgb(out_path).shape == (120, 160, 3)


def test_write_thumbnail_replaces_file_without_leftovers(tmp_path: Path, cfr_mp4: Path) -> None:
    out_path = tmp_path / "thumb.jpg"
    out_path.write_bytes(b"old")

    write_thumbnail(cfr_mp4, out_path)

    assert [path.name for path in tmp_path.iterdir()] == ["thumb.jpg"]
    assert out_path.read_bytes()[:2] == b"\xff\xd8"


def test_write_thumbnail_rejects_tiny_width(tmp_path: Path, cfr_mp4: Path) -> None:
    with pytest.raises(InvalidParameter):
        write_thumbnail(cfr_mp4, tmp_path / "thumb.jpg", max_width=4)
