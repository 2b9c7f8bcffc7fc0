"""Shared fixtures: real servers (SQLite, or PostgreSQL + Redis with a separate Dramatiq
worker), API keys made with the real CLI, and small videos made with ffmpeg."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
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
    """Return a function polling a predicate until it holds or a timeout passes."""
    return _wait_for
