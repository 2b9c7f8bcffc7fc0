"""`mp4e inspect FILE`: the embedded document on stdout, and exit status 0, 1 or 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from mp4e.vision.mp4box import embed_metadata

DOCUMENT = {"schemaVersion": "2.0", "layers": [{"id": "layer_main", "name": "Hauptebene"}]}


def _inspect(path: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MP4E_")}
    return subprocess.run(
        [sys.executable, "-m", "mp4e.cli", "inspect", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=env,
    )


@pytest.fixture(scope="module")
def plain_video(tmp_path_factory: pytest.TempPathFactory, make_video: Callable[..., Path]) -> Path:
    return make_video(tmp_path_factory.mktemp("inspect") / "plain.mp4", seconds=0.5)


def test_inspect_prints_embedded_document(plain_video: Path, tmp_path: Path) -> None:
    exported = tmp_path / "exported.mp4"
    embed_metadata(plain_video, exported, DOCUMENT)

    result = _inspect(exported)

    assert result.returncode == 0
    assert json.loads(result.stdout) == DOCUMENT
    assert '\n  "schemaVersion": "2.0"' in result.stdout
    assert result.stderr == ""


def test_inspect_file_without_metadata_exits_1(plain_video: Path) -> None:
    result = _inspect(plain_video)

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip() == f"No MP4E metadata in {plain_video}."


def test_inspect_webm_exits_1(tmp_path: Path) -> None:
    webm = tmp_path / "clip.webm"
    command = [
        "ffmpeg", "-nostdin", "-v", "error", "-y",
        "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=5:duration=0.4",
        "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", str(webm),
    ]  # fmt: skip
    subprocess.run(command, check=True, timeout=60)

    result = _inspect(webm)

    assert result.returncode == 1
    assert "No MP4E metadata" in result.stderr


def test_inspect_damaged_box_exits_2(plain_video: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.mp4"
    embed_metadata(plain_video, damaged, DOCUMENT)
    data = bytearray(damaged.read_bytes())
    data[-1] ^= 0xFF
    damaged.write_bytes(bytes(data))

    result = _inspect(damaged)

    assert result.returncode == 2
    assert result.stdout == ""
    assert "damaged" in result.stderr
    assert str(damaged) in result.stderr


@pytest.mark.parametrize(
    "case",
    [pytest.param("missing", id="missing-file"), pytest.param("directory", id="directory")],
)
def test_inspect_unreadable_path_exits_2(tmp_path: Path, case: str) -> None:
    path = tmp_path / "clip.mp4"
    if case == "directory":
        path.mkdir()

    result = _inspect(path)

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: cannot read {path}: ")
