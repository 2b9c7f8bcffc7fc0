"""Shared fixtures: real servers (SQLite, or PostgreSQL + Redis with a separate Dramatiq
worker), API keys made with the real CLI, and small videos made with ffmpeg."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest

POSTGRES_ADMIN_URL = os.environ.get(
    "MP4E_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_TEST_URL = os.environ.get("MP4E_TEST_REDIS", "redis://127.0.0.1:6379/15")
BACKENDS = [b for b in os.environ.get("MP4E_TEST_BACKENDS", "sqlite,postgres").split(",") if b]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _postgres_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class Server:
    """A running `mp4e serve` (and `mp4e worker` with Redis) for one backend."""

    backend: str
    base_url: str
    env: dict[str, str]
    data_dir: Path
    database_url: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    log_dir: Path | None = None

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mp4e.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    def create_key(self, *scopes: str, account: str | None = None, name: str = "test") -> str:
        args = ["keys", "create", "--name", name]
        if account:
            args += ["--account", account]
        for scope in scopes:
            args += ["--scope", scope]
        result = self.cli(*args)
        return result.stdout.strip().splitlines()[-1]

    def client(self, key: str | None = None, **kwargs: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=60, **kwargs)  # type: ignore[arg-type]

    def start_worker(self) -> subprocess.Popen[bytes]:
        assert self.log_dir is not None
        with (self.log_dir / f"worker-{len(self.processes)}.log").open("ab") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "mp4e.cli", "worker", "--threads", "2"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.processes.append(worker)
        return worker


def _wait_ready(base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mp4e serve exited early:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"mp4e serve did not become ready:\n{log.read_text()[-4000:]}")


def start_server(backend: str, root: Path, overrides: dict[str, str] | None = None) -> Server:
    """Start `mp4e serve` (plus one `mp4e worker` with Redis) on a fresh database."""
    data_dir = root / "data"
    log_dir = root / "logs"
    data_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MP4E_")}
    env.update(
        MP4E_DATA_DIR=str(data_dir),
        MP4E_SECRET_KEY=secrets.token_hex(16),
        MP4E_RATE_LIMIT_REQUESTS="100000",
        MP4E_JOB_LEASE_S="4",
        MP4E_LOG_LEVEL="INFO",
    )
    models_dir = Path(
        os.environ.get("MP4E_TEST_MODELS_DIR", Path(__file__).parents[1] / "var" / "models")
    )
    if models_dir.is_dir():
        (data_dir / "models").symlink_to(models_dir.resolve(), target_is_directory=True)
    if backend == "postgres":
        if not _postgres_reachable():
            pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432 (.ci/run starts it)")
        database_name = f"mp4e_test_{secrets.token_hex(4)}"
        subprocess.run(
            ["psql", POSTGRES_ADMIN_URL, "-q", "-c", f"CREATE DATABASE {database_name}"],
            check=True,
            capture_output=True,
        )
        base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace(
            "postgresql://", "postgresql+asyncpg://"
        )
        env["MP4E_DATABASE_URL"] = f"{base}/{database_name}"
        env["MP4E_REDIS_URL"] = REDIS_TEST_URL
        # Each server gets its own queue, channels and budgets, so that servers started by
        # other tests (or other test runs) never take its jobs.
        env["MP4E_REDIS_NAMESPACE"] = f"mp4e-test-{database_name}"
        env["MP4E_TEST_DATABASE_NAME"] = database_name
    env.update(overrides or {})
    port = _free_port()
    env.setdefault("MP4E_PUBLIC_URL", f"http://127.0.0.1:{port}")
    instance = Server(
        backend=backend,
        base_url=f"http://127.0.0.1:{port}",
        env=env,
        data_dir=data_dir,
        database_url=env.get("MP4E_DATABASE_URL", f"sqlite+aiosqlite:///{data_dir / 'mp4e.db'}"),
        log_dir=log_dir,
    )
    log_path = log_dir / "serve.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "mp4e.cli", "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    instance.processes.append(process)
    try:
        _wait_ready(instance.base_url, process, log_path)
        if backend == "postgres":
            instance.start_worker()
    except BaseException:
        stop_server(instance)
        raise
    return instance


def stop_server(instance: Server) -> None:
    for child in instance.processes:
        if child.poll() is None:
            child.terminate()
    for child in instance.processes:
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    database_name = instance.env.get("MP4E_TEST_DATABASE_NAME")
    if database_name:
        subprocess.run(
            [
                "psql",
                POSTGRES_ADMIN_URL,
                "-q",
                "-c",
                f"DROP DATABASE IF EXISTS {database_name} WITH (FORCE)",
            ],
            check=False,
            capture_output=True,
        )


@pytest.fixture(scope="session", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One server per backend for the whole session; tests use their own accounts or videos."""
    backend: str = request.param
    if backend == "postgres" and _postgres_reachable():
        import redis

        redis.Redis.from_url(REDIS_TEST_URL).flushdb()
    instance = start_server(backend, tmp_path_factory.mktemp(f"server-{backend}"))
    try:
        yield instance
    finally:
        stop_server(instance)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start extra servers with settings overrides; stopped after the test."""
    started: list[Server] = []

    def start(backend: str = "sqlite", **overrides: str) -> Server:
        instance = start_server(backend, tmp_path / f"server-{len(started)}", overrides)
        started.append(instance)
        return instance

    yield start
    for instance in started:
        stop_server(instance)


@pytest.fixture(scope="session")
def admin_key(server: Server) -> str:
    return server.create_key("*", account="acme", name="admin")


@pytest.fixture
def api(server: Server, admin_key: str) -> Iterator[httpx.Client]:
    with server.client(admin_key) as client:
        yield client


def _make_video(
    path: Path,
    *,
    seconds: float = 1.0,
    size: str = "160x120",
    rate: int = 10,
    extra: list[str] | None = None,
) -> Path:
    """Write a small H.264 test pattern video with ffmpeg."""
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size={size}:rate={rate}:duration={seconds}",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            *(extra or []),
            str(path),
        ],
        check=True,
        timeout=120,
    )
    return path


@pytest.fixture(scope="session")
def sample_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg is not installed; scripts/install installs it")
    return _make_video(tmp_path_factory.mktemp("media") / "sample.mp4")


@pytest.fixture(scope="session")
def make_video() -> Callable[..., Path]:
    """Return a function writing a small H.264 test-pattern video with ffmpeg."""
    return _make_video


def _wait_for(predicate, timeout_s: float = 60, interval_s: float = 0.2):  # type: ignore[no-untyped-def]
    """Poll `predicate` until it returns a truthy value; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"Condition not met within {timeout_s} s; last value: {last!r}")


@pytest.fixture(scope="session")
def wait_for() -> Callable[..., object]:
    """Return a function polling a predicate until it is true or a timeout passes."""
    return _wait_for


# Small media files made with ffmpeg (160x120 test patterns of at most 4 s, written once per
# session), and ffmpeg's own decoding as the reference.

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
    """OpenCV's vtest.avi (Debian package opencv-doc): MP4E_TEST_VTEST_AVI, or the copy that
    scripts/fetch_samples puts in var/samples."""
    default = Path(__file__).parents[1] / "var" / "samples" / "vtest.avi"
    location = Path(os.environ.get(VTEST_ENV) or default)
    if not location.is_file():
        pytest.skip(f"{location} is missing; run scripts/fetch_samples or set {VTEST_ENV}")
    return location


# Real photos (Debian package opencv-doc) for the synthetic surface-tracking scenes.

PHOTO_CACHE = Path.home() / ".cache" / "mp4e-test-data"
PHOTO_NAMES = ("graf1.png", "building.jpg")
PHOTO_DIR_IN_PACKAGE = "./usr/share/doc/opencv-doc/examples/data/"


@pytest.fixture(scope="session")
def photo_dir() -> Path:
    """Return a folder with graf1.png and building.jpg, fetched once from opencv-doc."""
    if all((PHOTO_CACHE / name).is_file() for name in PHOTO_NAMES):
        return PHOTO_CACHE

    missing_tools = [tool for tool in ("apt-get", "dpkg-deb") if shutil.which(tool) is None]
    if missing_tools:
        pytest.skip(
            "The test photos come from the Debian package opencv-doc, but these tools "
            f"are not on PATH: {', '.join(missing_tools)}."
        )
    with tempfile.TemporaryDirectory() as tmp:
        download = subprocess.run(
            ["apt-get", "download", "opencv-doc"],
            cwd=tmp,
            capture_output=True,
            text=True,
            check=False,
        )
        packages = list(Path(tmp).glob("opencv-doc_*.deb"))
        if download.returncode != 0 or not packages:
            pytest.skip(
                "The test photos come from the Debian package opencv-doc, and "
                f"`apt-get download opencv-doc` failed: {download.stderr.strip()[-300:]}"
            )
        _extract_photos(packages[0], PHOTO_CACHE)
    return PHOTO_CACHE


def _extract_photos(package: Path, target: Path) -> None:
    names_by_member = {PHOTO_DIR_IN_PACKAGE + name: name for name in PHOTO_NAMES}
    target.mkdir(parents=True, exist_ok=True)
    with subprocess.Popen(
        ["dpkg-deb", "--fsys-tarfile", str(package)], stdout=subprocess.PIPE
    ) as dpkg:
        assert dpkg.stdout is not None
        with tarfile.open(fileobj=dpkg.stdout, mode="r|*") as archive:
            for member in archive:
                if member.name not in names_by_member or not member.isfile():
                    continue
                data = archive.extractfile(member)
                assert data is not None
                partial = target / f"{names_by_member[member.name]}.partial"
                with partial.open("wb") as out:
                    shutil.copyfileobj(data, out)
                os.replace(partial, target / names_by_member[member.name])
        dpkg.stdout.read()
    missing = [name for name in PHOTO_NAMES if not (target / name).is_file()]
    assert not missing, f"opencv-doc did not contain {missing}"
