"""Fixtures for REST tests: files that are not usable video, each made for real."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True, timeout=120)


@pytest.fixture(scope="session")
def bad_media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Files that must be rejected at upload, keyed by the case name."""
    root = tmp_path_factory.mktemp("bad-media")
    files: dict[str, Path] = {}

    empty = root / "empty.mp4"
    empty.write_bytes(b"")
    files["empty"] = empty

    audio = root / "audio_only.mp4"
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", str(audio))
    files["audio_only"] = audio

    cover = root / "cover.jpg"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x64:duration=1", "-frames:v", "1", str(cover))
    cover_art = root / "cover_art.m4a"
    _ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "sine=duration=1",
        "-i",
        str(cover),
        "-map",
        "0",
        "-map",
        "1",
        "-c:a",
        "aac",
        "-c:v",
        "mjpeg",
        "-disposition:v:0",
        "attached_pic",
        str(cover_art),
    )
    files["cover_art_only"] = cover_art

    text = root / "notes.mp4"
    text.write_text("This is a text file with a video file name.\n" * 50)
    files["text_named_mp4"] = text

    full = root / "moov_last.mp4"
    _ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=160x120:rate=10:duration=2",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        str(full),
    )
    data = full.read_bytes()
    moov_at = data.rfind(b"moov") - 4
    assert moov_at > data.find(b"mdat"), "ffmpeg wrote moov before mdat; the cut would keep it"
    truncated = root / "truncated.mp4"
    truncated.write_bytes(data[:moov_at])
    files["index_missing"] = truncated
    return files


@pytest.fixture
def fresh_key(server) -> Callable[..., str]:  # type: ignore[no-untyped-def]
    """Create a key on a new account, so a test sees only its own videos."""
    counter = iter(range(1_000_000))

    def create(*scopes: str) -> str:
        import secrets

        return server.create_key(
            *(scopes or ("*",)), account=f"acct-{secrets.token_hex(4)}-{next(counter)}"
        )

    return create
