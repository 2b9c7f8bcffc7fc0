"""Benchmark the API server: upload memory and GET /api/videos/:id throughput.

Measured in one run on this machine, against a baseline taken in the same run:

1. Upload memory: the peak RSS (VmHWM) of `mp4e serve` before and after a 600 MiB upload.
   The file is a real MP4 followed by a large `free` box, so it passes the content check.
2. Throughput: requests per second of `GET /api/videos/:id` on `mp4e serve`, divided by the
   requests per second of a bare Starlette endpoint returning the same JSON from memory,
   both run by uvicorn with the same settings and loaded by the same `wrk` command.

Usage: .venv/bin/python scripts/bench_api.py [--upload-mib 600] [--duration-s 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
BARE_APP = """
import json, os
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

BODY = open(os.environ["BENCH_BODY"], "rb").read()

async def video(request):
    return Response(BODY, media_type="application/json")

app = Starlette(routes=[Route("/api/videos/{video_id}", video)])
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_up(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def peak_rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    assert match is not None
    return int(match.group(1)) * 1024


def current_rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert match is not None
    return int(match.group(1)) * 1024


def make_padded_mp4(path: Path, size_bytes: int) -> None:
    """Write a small real MP4 (moov first) followed by a `free` box up to `size_bytes`."""
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
            "testsrc2=size=320x240:rate=25:duration=2",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-movflags",
            "+faststart",
            str(path),
        ],
        check=True,
    )
    small = path.stat().st_size
    pad = size_bytes - small
    with path.open("ab") as handle:
        handle.write(struct.pack(">I4sQ", 1, b"free", pad))
        handle.truncate(small + pad)


def run_wrk(url: str, key: str | None, duration_s: int, connections: int) -> float:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration_s}s", "--latency"]
    if key:
        command += ["-H", f"Authorization: Bearer {key}"]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    assert match is not None, output
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        raise RuntimeError(f"{non_2xx.group(1)} failed responses from {url}:\n{output}")
    return float(match.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upload-mib", type=int, default=600, help="Upload size in MiB.")
    parser.add_argument("--duration-s", type=int, default=10, help="Length of each wrk run.")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections.")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is required: apt-get install wrk", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="mp4e-bench-api-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MP4E_")}
    port = free_port()
    env.update(
        MP4E_DATA_DIR=str(work / "data"),
        MP4E_SECRET_KEY=secrets.token_hex(16),
        MP4E_RATE_LIMIT_REQUESTS="100000000",
        MP4E_PUBLIC_URL=f"http://127.0.0.1:{port}",
        MP4E_LOG_LEVEL="WARNING",
    )
    mp4e = [sys.executable, "-m", "mp4e.cli"]
    key = (
        subprocess.run(
            [*mp4e, "keys", "create", "--name", "bench"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    server = subprocess.Popen([*mp4e, "serve", "--port", str(port)], env=env)
    bare = None
    try:
        base = f"http://127.0.0.1:{port}"
        wait_up(f"{base}/healthz")
        headers = {"Authorization": f"Bearer {key}"}

        upload_path = work / "upload.mp4"
        make_padded_mp4(upload_path, args.upload_mib * 1024 * 1024)
        time.sleep(1)
        peak_before = peak_rss_bytes(server.pid)
        rss_before = current_rss_bytes(server.pid)
        started = time.monotonic()
        with upload_path.open("rb") as handle:
            response = httpx.post(
                f"{base}/api/videos/upload",
                headers=headers,
                files={"file": ("upload.mp4", handle)},
                timeout=600,
            )
        upload_s = time.monotonic() - started
        response.raise_for_status()
        peak_after = peak_rss_bytes(server.pid)
        video_id = response.json()["id"]
        upload_path.unlink()

        deadline = time.monotonic() + 120
        while (
            httpx.get(f"{base}/api/videos/{video_id}", headers=headers).json()["status"] != "ready"
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("the uploaded video was not ingested in time")
            time.sleep(0.5)
        body = httpx.get(f"{base}/api/videos/{video_id}", headers=headers).content
        body_path = work / "body.json"
        body_path.write_bytes(body)

        ours = run_wrk(f"{base}/api/videos/{video_id}", key, args.duration_s, args.connections)

        bare_port = free_port()
        (work / "bare_app.py").write_text(BARE_APP)
        bare_env = dict(env, BENCH_BODY=str(body_path), PYTHONPATH=str(work))
        bare = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bare_app:app",
                "--port",
                str(bare_port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            env=bare_env,
        )
        wait_up(f"http://127.0.0.1:{bare_port}/api/videos/x")
        baseline = run_wrk(
            f"http://127.0.0.1:{bare_port}/api/videos/{video_id}",
            None,
            args.duration_s,
            args.connections,
        )
    finally:
        for process in (server, bare):
            if process is not None:
                process.terminate()
                process.wait(timeout=20)
        shutil.rmtree(work, ignore_errors=True)

    growth_mb = (peak_after - peak_before) / 1e6
    ratio = ours / baseline
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    result = {
        "upload_mib": args.upload_mib,
        "upload_s": round(upload_s, 2),
        "rss_before_mb": round(rss_before / 1e6, 1),
        "peak_rss_before_mb": round(peak_before / 1e6, 1),
        "peak_rss_after_mb": round(peak_after / 1e6, 1),
        "peak_rss_growth_mb": round(growth_mb, 1),
        "get_video_rps": round(ours, 1),
        "bare_starlette_rps": round(baseline, 1),
        "rps_ratio": round(ratio, 3),
        "json_bytes": len(body),
        "machine": f"{os.cpu_count()} CPUs, {cpu}",
    }
    print(json.dumps(result, indent=2))
    print(
        f"\nupload peak RSS growth {growth_mb:.1f} MB (target < 50 MB): "
        f"{'PASS' if growth_mb < 50 else 'FAIL'}"
    )
    print(
        f"GET /api/videos/:id at {ratio:.2f}x bare Starlette (target >= 0.5): "
        f"{'PASS' if ratio >= 0.5 else 'FAIL'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
